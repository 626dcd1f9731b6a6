"""Apply numbered SQL migrations in order, each once, each in its own transaction.

Files are `NNNN_name.sql` in one directory: the `migrations` package's data (`app.wiring.MIGRATIONS_DIR`,
read through `importlib.resources`, so an installed wheel has them), or any directory path. Each applied
file is recorded in `schema_migrations` with its checksum; an applied file that later changes is refused
(migrations are immutable: add a new one instead). An advisory lock lets several workers start at once
without racing.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib.resources.abc import Traversable

import asyncpg

from .errors import LedgerError, translated

_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_LOCK_KEY = 0x776F726C64676174  # "worldgat": one advisory lock id for the migration runner


@dataclass(frozen=True)
class Migration:
    version: str
    path: Traversable  # a pathlib.Path when the directory is one
    checksum: str


def discover(directory: Traversable) -> list[Migration]:
    found = []
    for path in sorted(directory.iterdir(), key=lambda p: p.name):
        match = _FILE.match(path.name)
        if match:
            found.append(Migration(match.group(1), path, hashlib.sha256(path.read_bytes()).hexdigest()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise LedgerError(f"two migrations share a number in {directory}")
    return found


async def migrate(dsn: str, directory: Traversable) -> list[str]:
    """Apply what is missing; returns the file names applied now."""
    migrations = discover(directory)
    applied_now: list[str] = []
    with translated():
        connection = await asyncpg.connect(dsn)
    try:
        with translated():
            await connection.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {
                r["version"]: r for r in await connection.fetch("SELECT version, name, checksum FROM schema_migrations")
            }
        for migration in migrations:
            if migration.version in done:
                if done[migration.version]["checksum"] != migration.checksum:
                    raise LedgerError(
                        f"migration {migration.path.name} changed after it was applied; add a new migration instead"
                    )
                continue
            with translated():
                async with connection.transaction():
                    await connection.execute(migration.path.read_text(encoding="utf-8"))
                    await connection.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        migration.version,
                        migration.path.name,
                        migration.checksum,
                    )
            applied_now.append(migration.path.name)
    finally:
        with translated():
            await connection.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
            await connection.close()
    return applied_now
