"""Retries of a paid request, never charged twice: payment-identifier replays and redeliveries.

A client may put an id in its payment (x402 `payment-identifier`): the first request with it runs the
sale and stores its delivery; a retry with the same id and payment gets that delivery again (`Replayed`).
The id is bound to the request's fingerprint (`fingerprint`: method, route, query, price): the same id on
another request is a 409 (`IdConflict`), as is the same id with another payment once the id delivered.
A first attempt whose settlement's outcome is unknown keeps its id: a retry with the same payment, or the
same payer re-signing the same request under the id, is told it is pending (503, Retry-After) until the
outcome is known, then gets it: the data, or "not charged". A sale that settled but whose answer never
left (a crash between settlement and response, a pending settlement booked later) is served once more
under its booked settlement (`serve_settled`), whether the retry carries an id or the same payment again.
A first attempt that died with its claim open (a SIGKILL, an OOM kill) is resolved by the retry there and
then, without waiting for reconciliation (`Resolve`, app/usecases/recovery.py): the data if the chain shows
the payment landed, pending while it may still, "not charged" once it cannot, or the retry runs it itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import anyio

import ledger
from app.runtime import metrics
from app.usecases import holders
from app.usecases.outcomes import (
    NOT_RECORDED,
    Delivered,
    IdConflict,
    NotCharged,
    NotServed,
    Outcome,
    Refused,
    Replayed,
    Serve,
    Unavailable,
    Unsettled,
    Verified,
)
from app.usecases.pricing import PAYMENT_IDENTIFIER, PaidRoute
from app.usecases.resolution import IN_PROGRESS, Judgement, Verdict
from app.usecases.services import Services
from ledger import PaymentState, claims, idempotency
from payments import Inspection, PaymentPayload, PaymentRequirements, Reason, Refusal, Settlement

log = logging.getLogger("worldgate.checkout")
REPLAY_WAIT_POLL_S = 0.05
# A settled payment whose payment id has had no stored delivery this long lost its first attempt (a crash
# between settlement and response): a retry with the id then gets the data again, without a second charge.
REDELIVER_AFTER_S = 2.0
REDELIVERY_LEASE_S = 30.0  # one retry at a time redelivers a sale; a retry that dies frees it after this
UNCHARGED_ID = "the payment first sent with this payment id was not charged and the id is free again; retry"
_SPENT = {  # what became of a payment whose key an earlier claim holds, by that claim's state
    PaymentState.SETTLED: "was already used: it settled for an earlier request",
    PaymentState.FAILED: "failed to settle for an earlier request (you were not charged)",
    PaymentState.EXPIRED: "expired unsettled (you were not charged)",
}
# A payment whose claim is still open (IN_PROGRESS) and cannot be resolved yet: its outcome is not known, so a
# retry of it is told to wait and retry the same payment, never to sign a new one (which could charge twice).
PENDING_MESSAGE = (
    "this payment is still being processed for an earlier request; retry this same payment (or payment id) after "
    "Retry-After (do not sign a new one: this one may still be charged)"
)


@dataclass(frozen=True, slots=True)
class Requested:
    """What a paid request asked for, in its transport's terms: a payment-identifier is bound to it."""

    method: str  # "GET" over HTTP; "tools/call <tool>" over MCP
    query: Mapping[str, str]  # the query's parameters as checked (over MCP: the tool's arguments)


def fingerprint(paid: PaidRoute, offer: PaymentRequirements, requested: Requested) -> str:
    """SHA-256 (hex) of the request and its price: the method, the route template and path, the accepted
    query parameters sorted, and the offer paid (scheme, network, amount, asset, payTo)."""
    query = sorted((name, value) for name, value in requested.query.items() if name in paid.accepted)
    price = [offer.scheme, offer.network, str(offer.amount), offer.asset, offer.pay_to]
    document = {"method": requested.method, "route": paid.route, "path": paid.path, "query": query, "offer": price}
    canonical = json.dumps(document, separators=(",", ":"), ensure_ascii=True, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Idempotency:
    """A client-supplied payment id (x402 `payment-identifier`) and how this transport stores a delivery."""

    id: str
    transport: str  # "http" | "mcp": an id is replayed only to the transport that first used it
    encode: Callable[[Delivered], bytes]
    fingerprint: str | None = None  # the request's (`fingerprint`); None: bound to the payment only


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


def pending_settlement(offer: PaymentRequirements, inspection: Inspection, holder: claims.Holder) -> Unsettled:
    """The answer to a retry of a payment whose outcome is not known yet: 503 settlement_pending with
    Retry-After and the transaction (if one left), never a quote that would invite a second payment."""
    reason = Reason.SETTLEMENT_PENDING
    settlement = Settlement(False, offer.network, holder.tx_hash or "", inspection.payer, reason, PENDING_MESSAGE)
    return Unsettled(settlement, reason, PENDING_MESSAGE)


NOT_CHARGED_ADVICE = (
    "you were not charged, and this payment can no longer be used; to buy this, ask again without a payment for a "
    "new quote"
)
_CLOSED = {  # what a payment sent again is told of its claim closed unpaid earlier, by the claim's state
    PaymentState.FAILED: "failed to settle for an earlier request",
    PaymentState.EXPIRED: "expired unsettled for an earlier request",
}
_NOT_CHARGED = {  # what the retry of a payment is told once its open claim was closed unpaid, by reason
    Reason.TRANSACTION_FAILED: "this payment's settlement failed on chain for an earlier request",
    Reason.EVM_VALID_BEFORE: "this payment expired before it could be settled for an earlier request",
    Reason.SVM_BLOCKHASH_EXPIRED: "this payment's transaction expired before it landed for an earlier request",
}


def not_charged(offer: PaymentRequirements, inspection: Inspection, judged: Judgement) -> NotCharged:
    """The answer to a retry of a payment whose open claim was just closed unpaid: not charged (409, the failed
    receipt), as `closed_unpaid` answers it from then on."""
    what = _NOT_CHARGED.get(judged.reason, "this payment was never settled for an earlier request")
    holder = judged.holder
    settlement = Settlement(False, offer.network, holder.tx_hash or "", inspection.payer, judged.reason, what)
    return NotCharged(settlement, judged.reason, f"{what}: {NOT_CHARGED_ADVICE}")


def closed_unpaid(offer: PaymentRequirements, inspection: Inspection, holder: claims.Holder) -> NotCharged:
    """A payment sent again whose claim closed unpaid earlier (failed, expired): not charged, and spent."""
    what = _CLOSED[holder.state]
    reason = str(holder.state)
    settlement = Settlement(False, offer.network, holder.tx_hash or "", inspection.payer, reason, what)
    return NotCharged(settlement, reason, f"this payment {what}: {NOT_CHARGED_ADVICE}")


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


class Resolve(Protocol):
    """What a retry does with an open claim (app/usecases/recovery.py's `Recovery`)."""

    async def judge(self, holder: claims.Holder) -> Judgement | Unavailable: ...

    async def take_over(
        self,
        paid: PaidRoute,
        payload: PaymentPayload,
        offer: PaymentRequirements,
        inspection: Inspection,
        serve: Serve,
        holder: claims.Holder,
    ) -> Outcome: ...


class PaymentIds:
    """One delivery per payment id, replayed to its retries. `sell` runs the sale itself (the checkout's
    claim, verify, serve and settle); `refuse` counts and logs a refusal as the checkout does; `resolve`
    resolves the open claim of a first attempt that died."""

    def __init__(self, services: Services, sell: Sell, refuse: Refuse, resolve: Resolve) -> None:
        self.services = services
        self._sell = sell
        self._refuse = refuse
        self._resolve = resolve

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
                pool,
                key.id,
                inspection.payment_key,
                key.transport,
                self.services.idempotency_ttl_s,
                key.fingerprint,
                inspection.payer,
            )
        except ledger.LedgerUnavailable:
            return Unavailable("ledger_unavailable", NOT_RECORDED)
        if held.conflict:
            return IdConflict(held.conflict)
        if not held.first:
            assert held.payment_key is not None
            same = held.payment_key == inspection.payment_key  # else the payer re-signed under the id
            return await self._replay(paid, payload if same else None, inspection, offer, serve, key, held.payment_key)
        outcome = await self._sell(paid, payload, offer, inspection, serve)
        await self._record(key, outcome)
        return outcome

    async def _record(self, key: Idempotency, outcome: Outcome) -> None:
        """What the id's payment came to, for its retries: the delivery, pending, or free again."""
        pool = self.services.pool
        with anyio.CancelScope(shield=True):  # the record must land even if the client went away
            try:
                if isinstance(outcome, Delivered):
                    await idempotency.complete(pool, key.id, key.encode(outcome))
                elif isinstance(outcome, Unsettled) and outcome.settlement.pending:
                    # Only the chain can say whether it was charged: the id stays this payment's, so that
                    # a retry under it gets the outcome instead of running a second payment.
                    await idempotency.park(pool, key.id)
                else:
                    await idempotency.abandon(pool, key.id)  # not charged: a retry may try again
            except ledger.LedgerError as exc:
                log.error("could not record the payment id's outcome", extra={"detail": str(exc)})

    async def _replay(
        self,
        paid: PaidRoute,
        payload: PaymentPayload | None,  # the id's own payment, sent again (None: the payer re-signed)
        inspection: Inspection,
        offer: PaymentRequirements,
        serve: Serve,
        key: Idempotency,
        payment_key: str,
    ) -> Outcome:
        """Another request holds this id, for the payment `payment_key`: answer with that payment's outcome,
        never a second charge. While the first attempt runs, wait for its delivery and replay it. Once it
        ended pending (the settlement's outcome unknown), answer pending until reconciliation knows, then
        with the data (`_redeliver`) or "not charged". If the first attempt died (SIGKILL, power cut) its
        delivery never comes: a payment settled with nothing stored is served again; one closed unsettled
        frees the id; one left open is resolved at once (`_resolve_open`); one never claimed is sold by the retry."""
        deadline = time.monotonic() + self.services.settle_wait_s
        settled_since: float | None = None
        unclaimed_since: float | None = None
        while True:
            try:
                state = await idempotency.lookup(self.services.pool, key.id)
                holder = None
                if state is not None and state.response is None:
                    holder = await claims.holder(
                        self.services.pool, payment_key, unleased_held_s=self.services.settle_wait_s
                    )
            except ledger.LedgerUnavailable:
                return Unavailable("ledger_unavailable", NOT_RECORDED)
            if state is None:
                return Unavailable(
                    "payment_in_progress", "the first attempt with this payment id did not deliver; retry"
                )
            if state.response is not None:
                log.info("payment id replayed", extra={"payment_identifier": key.id})
                return Replayed(state.response)
            if holder is not None and holder.state == PaymentState.SETTLED:
                settled_since = settled_since or time.monotonic()
                # A first attempt that ended pending stores nothing more: serve at once. One still running
                # may be about to store its delivery: give it REDELIVER_AFTER_S.
                if state.pending or time.monotonic() - settled_since >= REDELIVER_AFTER_S:
                    return await self._redeliver(paid, inspection, offer, serve, key, holder)
            elif holder is not None and holder.state in (PaymentState.FAILED, PaymentState.EXPIRED):
                with contextlib.suppress(ledger.LedgerError):
                    await idempotency.abandon(self.services.pool, key.id)  # nothing charged: the id is free
                if payment_key != inspection.payment_key:  # the id's first payment failed, not this one
                    return Unavailable("payment_in_progress", UNCHARGED_ID)
                return closed_unpaid(offer, inspection, holder)
            elif holder is not None and holder.state in IN_PROGRESS and (state.pending or holders.gone(holder)):
                return await self._resolve_open(paid, payload, offer, inspection, serve, key, holder)
            elif holder is None or holder.state == PaymentState.RELEASED:
                # Nothing claimed (or given back): a live first attempt claims within milliseconds of taking the
                # id, so one that has not for REDELIVER_AFTER_S died before it. Nothing was charged: this retry
                # sells the same payment itself (a claim is UNIQUE: a first attempt still alive gets pending).
                unclaimed_since = unclaimed_since or time.monotonic()
                if payload is not None and time.monotonic() - unclaimed_since >= REDELIVER_AFTER_S:
                    log.warning(
                        "payment id's first attempt died before its claim", extra={"payment_identifier": key.id}
                    )
                    outcome = await self._sell(paid, payload, offer, inspection, serve)
                    await self._record(key, outcome)
                    return outcome
            if time.monotonic() > deadline:
                return Unavailable("payment_in_progress", "the first attempt with this payment id is still running")
            await asyncio.sleep(REPLAY_WAIT_POLL_S)

    async def _resolve_open(
        self,
        paid: PaidRoute,
        payload: PaymentPayload | None,
        offer: PaymentRequirements,
        inspection: Inspection,
        serve: Serve,
        key: Idempotency,
        holder: claims.Holder,
    ) -> Outcome:
        """The id's payment is still open and no request works on it (its attempt died, or ended pending): ask
        what became of it, and answer with that: the data, pending, "not charged" (the id is free again), or
        this retry runs the payment itself (the same payment only: a re-signed one cannot settle the first)."""
        judged = await self._resolve.judge(holder)
        if not isinstance(judged, Judgement):
            return judged
        if judged.verdict is Verdict.SETTLED:
            return await self._redeliver(paid, inspection, offer, serve, key, judged.holder)
        if judged.verdict is Verdict.NOT_CHARGED:
            with contextlib.suppress(ledger.LedgerError):
                await idempotency.abandon(self.services.pool, key.id)  # nothing charged: the id is free
            if holder.payment_key != inspection.payment_key:
                return Unavailable("payment_in_progress", UNCHARGED_ID)
            return not_charged(offer, inspection, judged)
        if judged.verdict is Verdict.TAKE_OVER and payload is not None:
            outcome = await self._resolve.take_over(paid, payload, offer, inspection, serve, judged.holder)
            await self._record(key, outcome)
            return outcome
        return pending_settlement(offer, inspection, judged.holder)

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
