"""`python -m app` is the `worldgate` command."""

import sys

from .cli import main

sys.exit(main())
