"""Which instance of a local devnet each sale was made on.

A devnet restarted fresh forgets every transaction it carried while the ledger keeps the sales, so
reconcile would call each earlier sale `settlement_not_on_chain`. Each time the ledger sees a new
instance of a network (`record`, from devnet.json's `instance`), an epoch starts at the next payment
id; reconcile skips settled sales whose epoch is not the network's current one. Networks with no
epoch (every real one) are unaffected.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field

import asyncpg

from .errors import translated
from .sql import queries


async def record(pool: asyncpg.Pool, network: str, instance_id: str) -> bool:
    """Note that `network` now runs `instance_id`; True when that starts a new epoch."""
    with translated():
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute(queries["epoch_lock"])
            return await connection.fetchval(queries["epoch_record"], network, instance_id) is not None


async def record_devnets(pool: asyncpg.Pool, state: Mapping[str, object] | None) -> list[str]:
    """Record every chain section of a devnet.json that names its instance; the networks that got a new epoch."""
    started = []
    for section in (state or {}).values():
        named = isinstance(section, Mapping) and section.get("instance") and section.get("network")
        if named and await record(pool, str(section["network"]), str(section["instance"])):  # type: ignore[index]
            started.append(str(section["network"]))  # type: ignore[index]
    return started


@dataclass(frozen=True)
class Epochs:
    """network → [(first payment id, instance)], ascending."""

    by_network: dict[str, list[tuple[int, str]]] = field(default_factory=dict)

    def from_earlier_instance(self, network: str, payment_id: int) -> bool:
        """Whether the payment was made on an instance of its network that is no longer running. A
        payment older than the first epoch is not: nothing says where it was made."""
        epochs = self.by_network.get(network)
        if not epochs:
            return False
        at = bisect.bisect_right([first for first, _ in epochs], payment_id) - 1
        return at >= 0 and epochs[at][1] != epochs[-1][1]


async def load(pool: asyncpg.Pool) -> Epochs:
    with translated():
        rows = await pool.fetch(queries["epochs_all"])
    by_network: dict[str, list[tuple[int, str]]] = {}
    for row in rows:
        by_network.setdefault(row["network"], []).append((int(row["first_payment_id"]), row["instance_id"]))
    return Epochs(by_network)
