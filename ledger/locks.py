"""A named mutex across processes and hosts, held as a Postgres session advisory lock."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from .errors import translated
from .sql import queries


@asynccontextmanager
async def advisory_lock(pool: asyncpg.Pool, name: str) -> AsyncIterator[None]:
    with translated():
        async with pool.acquire() as connection:
            await connection.execute(queries["advisory_lock"], name)
            try:
                yield
            finally:
                # A lost connection took its session's lock with it: failing here would replace the body's
                # outcome (a broadcast that went out, say) with a ledger error.
                with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
                    await connection.execute(queries["advisory_unlock"], name)


@asynccontextmanager
async def try_advisory_lock(pool: asyncpg.Pool, name: str) -> AsyncIterator[bool]:
    """The lock if it is free (True), else False at once: for jobs that one process at a time should run."""
    with translated():
        async with pool.acquire() as connection:
            held = bool(await connection.fetchval(queries["advisory_try_lock"], name))
            try:
                yield held
            finally:
                if held:
                    await connection.execute(queries["advisory_unlock"], name)
