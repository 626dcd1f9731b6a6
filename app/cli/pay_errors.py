"""The paying client's errors and exit codes (`worldgate quote`, `worldgate pay`)."""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_NOT_PAID, EXIT_OVER_CAP = 0, 1, 2, 3


class CliError(Exception):
    """A short message for stderr and the exit code that goes with it; never a traceback."""

    def __init__(self, message: str, code: int = EXIT_NOT_PAID) -> None:
        super().__init__(message)
        self.code = code
