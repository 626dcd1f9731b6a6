"""Helpers shared by the ledger tests: a payment record, a payment settled through the real claims path,
and a database of its own for tests that read totals over everything (or tamper with it as superuser).

A test module uses the `fresh_pool` fixture by importing it under its function's name:
`from .ledger_helpers import fresh_pool_fixture  # noqa: F401` (the fixture is named `fresh_pool`, so an
argument of that name does not shadow the import).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

import ledger
from app.wiring import MIGRATIONS_DIR
from ledger import PaymentRecord, claims

from .services import Database


def record(key: str | None = None, **changes: object) -> PaymentRecord:
    fields: dict[str, object] = {
        "payment_key": key or f"test:{secrets.token_hex(16)}",
        "scheme_id": "v2-eip155-exact",
        "network": "eip155:84532",
        "asset": "0xasset",
        "payer": "0xpayer",
        "pay_to": "0xpayto",
        "amount_atomic": 1000,
        "route": "GET /v1/streams/{id}",
        "resource": "/v1/streams/static.capitals",
        "stream": "static.capitals",
        "settlement_mode": "sync",
        "valid_before": None,
    }
    fields.update(changes)
    return PaymentRecord(**fields)  # type: ignore[arg-type]


def postings_for(rec: PaymentRecord, gas: int | None = 7) -> list[ledger.Posting]:
    return ledger.settlement_postings(
        network=rec.network,
        asset=rec.asset,
        pay_to=rec.pay_to,
        revenue_account=rec.stream or rec.route,
        amount_atomic=rec.amount_atomic,
        relayer="0xrelayer",
        gas_cost_atomic=gas,
    )


async def settling_new(pool: asyncpg.Pool, rec: PaymentRecord) -> int:
    """A new payment claimed, verified, served and now settling (its hash written ahead)."""
    payment_id = await claims.claim(pool, rec)
    assert payment_id is not None
    for before, after in (("claimed", "verified"), ("verified", "served"), ("served", "settling")):
        assert await claims.advance(pool, payment_id, before, after)
    return payment_id


async def settle_new(pool: asyncpg.Pool, rec: PaymentRecord, gas: int | None = 7) -> int:
    payment_id = await settling_new(pool, rec)
    tx = "0x" + secrets.token_hex(32)
    await claims.settle(pool, payment_id, tx, postings_for(rec, gas), gas_cost_atomic=gas)
    return payment_id


@dataclass(frozen=True)
class FreshDatabase:
    name: str
    url: str  # as the suite's own database is reached
    admin_url: str  # the same database as the server's admin (superuser locally): to tamper with it
    pool: asyncpg.Pool


@contextlib.asynccontextmanager
async def fresh_database(database: Database) -> AsyncIterator[FreshDatabase]:
    """A new, migrated database on the suite's server, dropped on the way out."""
    name = f"wg_ledger_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(database.admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = database.url.replace(database.name, name)
    admin_url = urlunsplit(urlsplit(database.admin_url)._replace(path=f"/{name}"))
    try:
        await ledger.migrate(url, MIGRATIONS_DIR)
        pool = await ledger.create_pool(url, size_min=1, size_max=20)
        try:
            yield FreshDatabase(name, url, admin_url, pool)
        finally:
            await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(name="fresh_pool")
async def fresh_pool_fixture(database: Database) -> AsyncIterator[asyncpg.Pool]:
    """A database of its own, for tests that read totals over everything."""
    async with fresh_database(database) as fresh:
        yield fresh.pool
