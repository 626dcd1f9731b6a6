"""The ledger's numbered SQL migrations (`NNNN_name.sql`), shipped in the wheel as package data.

A package only so that an installed worldgate carries them: `app.wiring.MIGRATIONS_DIR` reads them with
`importlib.resources`, and `ledger.migrate` applies them. No Python lives here.
"""
