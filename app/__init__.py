"""The gateway: settings, the Starlette app and its x402 gate, routes, embedded services and the CLI.

The only package that imports the three domains (payments, adapters, ledger) and wires them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("worldgate")  # the installed distribution's, as pyproject.toml sets it
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"
