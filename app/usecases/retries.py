"""Retries of a paid request, never charged twice: payment-identifier replays and redeliveries.

A client may put an id in its payment (x402 `payment-identifier`): the first request with it runs the
sale and stores its delivery; a retry with the same id and payment gets that delivery again (`Replayed`),
the same id with another payment a 409 (`IdConflict`). A sale that settled but whose answer never left
(a crash between settlement and response) is served once more under its booked settlement
(`serve_settled`), whether the retry carries an id or the same payment again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

import ledger
from app.runtime import metrics
from app.usecases.outcomes import (
    NOT_RECORDED,
    Delivered,
    IdConflict,
    NotServed,
    Outcome,
    Refused,
    Replayed,
    Serve,
    Unavailable,
    Verified,
)
from app.usecases.pricing import PAYMENT_IDENTIFIER, PaidRoute
from app.usecases.services import Services
from ledger import PaymentState, claims, idempotency
from payments import Inspection, PaymentPayload, PaymentRequirements, Reason, Refusal, Settlement

log = logging.getLogger("worldgate.checkout")
REPLAY_WAIT_POLL_S = 0.05
# A settled payment whose payment id has had no stored delivery this long lost its first attempt (a crash
# between settlement and response): a retry with the id then gets the data again, without a second charge.
REDELIVER_AFTER_S = 2.0
REDELIVERY_LEASE_S = 30.0  # one retry at a time redelivers a sale; a retry that dies frees it after this
_SPENT = {  # what became of a payment whose key an earlier claim holds, by that claim's state
    PaymentState.SETTLED: "was already used: it settled for an earlier request",
    PaymentState.FAILED: "failed to settle for an earlier request",
    PaymentState.EXPIRED: "expired unsettled",
}


@dataclass(frozen=True, slots=True)
class Idempotency:
    """A client-supplied payment id (x402 `payment-identifier`) and how this transport stores a delivery."""

    id: str
    transport: str  # "http" | "mcp": an id is replayed only to the transport that first used it
    encode: Callable[[Delivered], bytes]


def payment_identifier(payload: PaymentPayload) -> str | Refusal | None:
    """The client's idempotency id from `extensions["payment-identifier"].info.id`, if any."""
    extensions = getattr(payload, "extensions", None)
    if not isinstance(extensions, dict) or PAYMENT_IDENTIFIER not in extensions:
        return None
    declared = extensions[PAYMENT_IDENTIFIER]
    info = declared.get("info") if isinstance(declared, dict) else None
    value = info.get("id") if isinstance(info, dict) else None
    if value is None:
        return None
    if not idempotency.valid_id(value):
        return Refusal(
            Reason.INVALID_PAYLOAD, "payment-identifier id must be 16-128 letters, digits, hyphens or underscores"
        )
    return str(value)


def already_claimed(holder: claims.Holder | None) -> Refusal:
    """The refusal of a payment whose key another claim holds, saying what became of that claim."""
    in_use = "is being used by another request right now"
    what = _SPENT.get(holder.state, in_use) if holder is not None else in_use
    return Refusal(Reason.PAYMENT_ALREADY_CLAIMED, f"this payment {what}; sign a new one")


async def serve_settled(
    paid: PaidRoute,
    offer: PaymentRequirements,
    inspection: Inspection,
    serve: Serve,
    holder: claims.Holder,
    **context: str,
) -> Delivered | NotServed:
    """Serve a sale that settled but whose answer never left, under its booked settlement: never charged
    again. The caller has checked it bought this resource."""
    served = await serve(Verified(holder.payment_id, inspection.payer))
    if not served.ok:
        return NotServed(served)
    log.warning(
        "settled payment redelivered: its first answer never left",
        extra={"route": paid.path, "payment_id": holder.payment_id, "tx": holder.tx_hash, **context},
    )
    metrics.REDELIVERED(paid.path).inc()
    settlement = Settlement(True, offer.network, transaction=holder.tx_hash or "", payer=inspection.payer)
    return Delivered(served, settlement, holder.payment_id)


Sell = Callable[[PaidRoute, PaymentPayload, PaymentRequirements, Inspection, Serve], Awaitable[Outcome]]
Refuse = Callable[[PaidRoute, Refusal], Refused]


class PaymentIds:
    """One delivery per payment id, replayed to its retries. `sell` runs the sale itself (the checkout's
    claim, verify, serve and settle); `refuse` counts and logs a refusal as the checkout does."""

    def __init__(self, services: Services, sell: Sell, refuse: Refuse) -> None:
        self.services = services
        self._sell = sell
        self._refuse = refuse

    async def sell_once(
        self,
        paid: PaidRoute,
        payload: PaymentPayload,
        offer: PaymentRequirements,
        inspection: Inspection,
        serve: Serve,
        key: Idempotency,
    ) -> Outcome:
        """The first request with this id sells and stores its delivery; a later one gets it (`_replay`)."""
        pool = self.services.pool
        try:
            held = await idempotency.begin(
                pool, key.id, inspection.payment_key, key.transport, self.services.idempotency_ttl_s
            )
        except ledger.LedgerUnavailable:
            return Unavailable("ledger_unavailable", NOT_RECORDED)
        if held.conflict:
            return IdConflict(held.conflict)
        if not held.first:
            return await self._replay(paid, inspection, offer, serve, key)
        outcome = await self._sell(paid, payload, offer, inspection, serve)
        with anyio.CancelScope(shield=True):  # the record must land even if the client went away
            try:
                if isinstance(outcome, Delivered):
                    await idempotency.complete(pool, key.id, key.encode(outcome))
                else:
                    await idempotency.abandon(pool, key.id)  # not delivered: a retry may try again
            except ledger.LedgerError as exc:
                log.error("could not record the payment id's outcome", extra={"detail": str(exc)})
        return outcome

    async def _replay(
        self, paid: PaidRoute, inspection: Inspection, offer: PaymentRequirements, serve: Serve, key: Idempotency
    ) -> Outcome:
        """Another request holds this id: wait for its delivery, then answer with it (no second charge).
        If that attempt died (SIGKILL, power cut) its delivery never comes: a payment settled with nothing
        stored is served again (`_redeliver`); one closed unsettled by reconciliation frees the id."""
        deadline = time.monotonic() + self.services.settle_wait_s
        settled_since: float | None = None
        while True:
            try:
                state = await idempotency.lookup(self.services.pool, key.id)
                holder = None
                if state is not None and state.response is None:
                    holder = await claims.holder(self.services.pool, inspection.payment_key)
            except ledger.LedgerUnavailable:
                return Unavailable("ledger_unavailable", NOT_RECORDED)
            if holder is not None and holder.state == PaymentState.SETTLED:
                settled_since = settled_since or time.monotonic()
                if time.monotonic() - settled_since >= REDELIVER_AFTER_S:
                    return await self._redeliver(paid, inspection, offer, serve, key, holder)
            elif holder is not None and holder.state in (PaymentState.FAILED, PaymentState.EXPIRED):
                with contextlib.suppress(ledger.LedgerError):
                    await idempotency.abandon(self.services.pool, key.id)  # nothing charged: the id is free
                return self._refuse(paid, already_claimed(holder))
            if state is None:
                return Unavailable(
                    "payment_in_progress", "the first attempt with this payment id did not deliver; retry"
                )
            if state.response is not None:
                log.info("payment id replayed", extra={"payment_identifier": key.id})
                return Replayed(state.response)
            if time.monotonic() > deadline:
                return Unavailable("payment_in_progress", "the first attempt with this payment id is still running")
            await asyncio.sleep(REPLAY_WAIT_POLL_S)

    async def _redeliver(
        self,
        paid: PaidRoute,
        inspection: Inspection,
        offer: PaymentRequirements,
        serve: Serve,
        key: Idempotency,
        holder: claims.Holder,
    ) -> Outcome:
        """The payer was charged (the claim is settled) but the attempt holding the id never stored its
        delivery: serve the same resource again under that settlement, store it, answer with it."""
        if holder.resource != paid.path:
            return IdConflict(f"this payment id paid for {holder.resource}; retry it there")
        delivered = await serve_settled(paid, offer, inspection, serve, holder, payment_identifier=key.id)
        if isinstance(delivered, NotServed):
            return delivered  # no data right now; the id stays open, so a later retry tries again
        with anyio.CancelScope(shield=True):
            try:
                await idempotency.complete(self.services.pool, key.id, key.encode(delivered))
            except ledger.LedgerError as exc:
                log.error("could not record the payment id's outcome", extra={"detail": str(exc)})
        return delivered
