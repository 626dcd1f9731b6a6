"""Claim leases: which gateway process holds an open claim (migration 0014).

A process registers (`register`) and renews its lease (`renew`) on a heartbeat; every claim it makes names
it (`claims.claim(..., lease=instance)`), and its request ends the lease (`end`) however it ends. A retry
that finds a claim's holder gone takes the lease over (`take`, a compare-and-set on the holder); from then on
the old holder's writes to that claim are refused (`claims.advance` / `claims.record_tx_hash` with `lease`).
Whether a holder is gone is the app's call: this module says whether its lease is still running (`Lease.live`).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from .errors import translated
from .sql import queries
from .states import PaymentState


@dataclass(frozen=True, slots=True)
class Lease:
    """Who holds an open claim, as the ledger knows it."""

    instance_id: int | None  # None: the request that held it ended (the claim may still be open)
    host: str | None = None  # the holder's host name, boot id and pid namespace
    pid: int | None = None
    pid_started: int | None = None  # the holder's start time in clock ticks since boot (Linux)
    live: bool = False  # the holder's lease is still running (it renewed it lately)


async def register(pool: asyncpg.Pool, host: str, pid: int, pid_started: int | None, lease_s: float) -> int:
    """A new instance for this process, its lease running `lease_s` seconds."""
    with translated():
        instance: int = await pool.fetchval(queries["instance_register"], host, pid, pid_started, float(lease_s))
    return instance


async def renew(pool: asyncpg.Pool, instance: int, lease_s: float) -> bool:
    """Extend the instance's lease; False if it was forgotten (register again)."""
    with translated():
        return await pool.fetchval(queries["instance_renew"], instance, float(lease_s)) is not None


async def retire(pool: asyncpg.Pool, instance: int) -> None:
    with translated():
        await pool.execute(queries["instance_retire"], instance)


async def take(pool: asyncpg.Pool, payment_id: int, instance: int, gone: int | None, state: PaymentState) -> bool:
    """Take payment `payment_id`'s lease for `instance`, if it is still in `state` and still held by `gone`
    (None: by nobody). False if the payment moved or another retry took it first."""
    with translated():
        return await pool.fetchval(queries["lease_take"], payment_id, instance, gone, state) is not None


async def end(pool: asyncpg.Pool, payment_id: int, instance: int) -> None:
    """The request holding this claim ended: nobody holds it now (a no-op if it was taken over)."""
    with translated():
        await pool.execute(queries["lease_end"], payment_id, instance)
