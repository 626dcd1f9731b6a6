"""The asyncpg pool, with codecs set at connection init so no Decimal or float reaches the ledger.

`numeric` decodes to int: every ledger amount is numeric(78,0), and sums of them are integral too;
a non-integral value would be a bug and raises instead of being rounded.
"""

from __future__ import annotations

import json
from decimal import Decimal

import asyncpg

from .errors import translated

POOL_SIZE_MIN_DEFAULT = 2
POOL_SIZE_MAX_DEFAULT = 20
COMMAND_TIMEOUT_S_DEFAULT = 10.0


def _numeric_to_int(text: str) -> int:
    value = Decimal(text)
    if value != value.to_integral_value():
        raise ValueError(f"ledger numeric {text} is not an integer amount")
    return int(value)


async def _init(connection: asyncpg.Connection) -> None:
    await connection.set_type_codec("numeric", encoder=str, decoder=_numeric_to_int, schema="pg_catalog", format="text")
    for name in ("json", "jsonb"):
        await connection.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(
    dsn: str,
    *,
    size_min: int = POOL_SIZE_MIN_DEFAULT,
    size_max: int = POOL_SIZE_MAX_DEFAULT,
    command_timeout_s: float = COMMAND_TIMEOUT_S_DEFAULT,
) -> asyncpg.Pool:
    with translated():
        pool = await asyncpg.create_pool(
            dsn, min_size=size_min, max_size=size_max, init=_init, command_timeout=command_timeout_s
        )
    assert pool is not None
    return pool
