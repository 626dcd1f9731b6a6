"""`python -m app` is the `worldgate` command."""

import sys

from app.cli.operator import main

sys.exit(main())
