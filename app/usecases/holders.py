"""Who holds an open claim: this process's lease (ledger/leases.py), renewed on a heartbeat, and whether
another claim's holder is gone.

Each process registers one instance per ledger pool the first time it claims a payment, and renews its lease
every HEARTBEAT_S. A claim's holder is gone when its lease lapsed (LEASE_S without a heartbeat: a host lost, a
process frozen), when its request ended, or at once when it ran on this very machine and that process no
longer exists (SIGKILL, OOM kill: the pid is gone, or is another process now). A retry can then resolve
the claim without waiting for reconciliation's grace period (app/usecases/resolution.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ledger
from ledger import claims, leases

log = logging.getLogger("worldgate.checkout")
HEARTBEAT_S = 2.0
LEASE_S = 10.0  # a holder that has not renewed its lease this long is taken for dead


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def process_started(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (Linux /proc), which tells a pid's reuse apart."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    try:  # the command name (field 2) may hold spaces and parentheses: count from its closing one
        return int(stat[stat.rindex(")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return None


def _machine() -> str:
    """Where a pid names one process: the host, its boot, and this pid namespace (Linux; else the host only)."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = None
    return "/".join(part for part in (socket.gethostname(), boot, namespace) if part)


MACHINE = _machine()


def gone(holder: claims.Holder) -> bool:
    """Whether no request can still be working on this open claim: nobody holds it, its holder's lease lapsed,
    or its holder ran here and that process is no more."""
    if not holder.held:
        return True
    lease = holder.lease
    if lease is None or lease.pid is None or lease.host != MACHINE or lease.pid_started is None:
        return False  # another machine's process (or one made before leases): only its lease can say
    if lease.pid == os.getpid():
        return lease.pid_started != process_started(os.getpid())
    return process_started(lease.pid) != lease.pid_started  # no such process, or the pid was reused since


@dataclass
class _Instance:
    pool: Any
    id: int
    task: asyncio.Task[None] | None = None


_INSTANCES: dict[int, _Instance] = {}  # by id(pool): one lease per ledger this process writes to


async def instance(pool: Any) -> int:
    """This process's instance on `pool`'s ledger, registered (and its heartbeat started) on first use."""
    for key in [k for k, known in _INSTANCES.items() if known.pool.is_closing()]:
        _INSTANCES.pop(key)  # a closed pool's heartbeat has stopped
    known = _INSTANCES.get(id(pool))
    if known is not None and known.pool is pool:
        return known.id
    instance_id = await leases.register(pool, MACHINE, os.getpid(), process_started(os.getpid()), LEASE_S)
    known = _INSTANCES.setdefault(id(pool), _Instance(pool, instance_id))
    if known.id == instance_id and known.task is None:
        known.task = asyncio.create_task(_heartbeat(known), name="claim-lease-heartbeat")
    elif known.id != instance_id:  # another request registered first: this one is never used
        with contextlib.suppress(ledger.LedgerError):
            await leases.retire(pool, instance_id)
    return known.id


async def retire(pool: Any) -> None:
    """At shutdown, once the requests have drained: stop this process's heartbeat and retire its lease, so that
    a claim it somehow left open is known dead at once (by a retry on another replica) rather than when the
    lease lapses."""
    known = _INSTANCES.pop(id(pool), None)
    if known is None or known.pool is not pool:
        return
    if known.task is not None:
        known.task.cancel()
    with contextlib.suppress(ledger.LedgerError):
        await leases.retire(pool, known.id)


async def _heartbeat(known: _Instance) -> None:
    """Renew the lease until the pool closes; a ledger outage only delays it (the lease may lapse meanwhile,
    and a retry elsewhere may then take this process's claims over: their writes here are then refused)."""
    while not known.pool.is_closing():
        await asyncio.sleep(HEARTBEAT_S)
        try:
            if not await leases.renew(known.pool, known.id, LEASE_S):
                log.error("this process's claim lease was forgotten; its open claims are no longer its own")
                _INSTANCES.pop(id(known.pool), None)  # the next claim registers anew
                return
        except ledger.LedgerError as exc:
            if known.pool.is_closing():
                return
            log.warning("claim lease not renewed", extra={"detail": str(exc)})
