"""A named mutex across processes and hosts, held as a Postgres session advisory lock."""

from __future__ import annotations

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
                await connection.execute(queries["advisory_unlock"], name)
