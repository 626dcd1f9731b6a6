"""The gateway: settings, the Starlette app and its x402 gate, routes, embedded services and the CLI.

The only package that imports the three domains (payments, adapters, ledger) and wires them.
"""
