"""Who may pay here now, asked alike by both checkouts (exact and batch-settlement): the operator's bans
and the per-payer rate limit, each refusal counted and logged once."""

from __future__ import annotations

import logging

from app.runtime import metrics
from app.usecases.binding import refused as counted
from app.usecases.outcomes import Banned, RateLimited, Refused
from app.usecases.pricing import PaidRoute
from app.usecases.services import Services
from payments import Refusal

log = logging.getLogger("worldgate.checkout")


def refused(paid: PaidRoute, refusal: Refusal) -> Refused:
    """A payment refused with a fresh quote, counted and logged."""
    return Refused(counted(paid, refusal))


def banned(services: Services, paid: PaidRoute, payer: str) -> Banned | None:
    """The operator banned this payer: refused before any RPC call or ledger row."""
    if not services.banned(payer):
        return None
    log.info("banned payer refused", extra={"route": paid.path})
    metrics.REFUSED("payer_banned").inc()
    return Banned(payer)


async def over_limit(
    services: Services, paid: PaidRoute, payer: str, *, sends_transaction: bool = True
) -> RateLimited | None:
    """The payer's attempts are over its limit (counted only once its signature is known to be the payer's,
    so a forger cannot spend it): refused before anything is recorded, verified or charged. An attempt that has
    the relayer send a transaction is counted exactly across workers; one that does not (a voucher) locally."""
    limited = services.payer_limited
    wait = await limited(payer, sends_transaction) if limited is not None else None
    if wait is None:
        return None
    log.info("payer rate limited", extra={"route": paid.path, "retry_after": wait})
    metrics.REFUSED("rate_limited").inc()
    message = f"too many payment attempts from this payer; retry after {wait} s (nothing was charged)"
    return RateLimited("rate_limited", message, wait)
