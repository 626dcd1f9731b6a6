"""The checkout: one paid request from a decoded payment to a delivered, settled and booked sale.

It does not know HTTP or MCP. A transport (the HTTP gate, the MCP server) decodes the payment, binds
it to one of the route's offers, and hands it here with `serve`, which runs the handler and says
whether it produced data. The checkout then runs the one sequence both transports share:
local inspection (no I/O) → ban check → idempotency (payment-identifier) → claim the payment key in
Postgres (UNIQUE) → facilitator verify → serve → settle (sync mode) → journal. Any failure on the way
releases the claim (nothing charged) or leaves it `settling` for reconciliation (outcome unknown);
in no case is a result marked deliverable without a successful settlement. It answers with an
Outcome the transport renders in its own terms.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio

import ledger
from adapters import DataTier
from app.runtime import faultpoints, metrics
from app.runtime.logs import bind
from app.usecases.pricing import PAYMENT_IDENTIFIER, PaidRoute, Pricing
from ledger import PaymentRecord, claims, idempotency
from payments import (
    Facilitator,
    Inspection,
    PaymentError,
    PaymentPayload,
    PaymentRequirements,
    Reason,
    Refusal,
    Settlement,
    inspect,
)

log = logging.getLogger("worldgate.checkout")
_LATEST_VALID_BEFORE = 253402300799  # 9999-12-31: beyond it the ledger stores no expiry
NOT_RECORDED = "the payment could not be recorded in the ledger; nothing was charged"
REPLAY_WAIT_POLL_S = 0.05
# A settled payment whose payment id has had no stored delivery this long lost its first attempt (a crash
# between settlement and response): a retry with the id then gets the data again, without a second charge.
REDELIVER_AFTER_S = 2.0
REDELIVERY_LEASE_S = 30.0  # one retry at a time redelivers a sale; a retry that dies frees it after this


@dataclass
class Services:
    """What a checkout needs at request time; filled in by the app's lifespan."""

    pool: Any = None  # asyncpg.Pool
    facilitator: Facilitator | None = None
    pricing: Pricing | None = None  # built once the facilitator says what it supports
    tier: DataTier | None = None  # built in the lifespan (it needs Redis and an HTTP client)
    banned: Callable[[str], bool] = lambda _payer: False  # the operator's bans, as this worker last loaded them
    payer_limited: Callable[[str], Awaitable[int | None]] | None = None  # seconds to wait, if over its rate limit
    replay_url: str | None = None  # set when upstreams are answered from recordings
    settlement_mode: str = "sync"
    idempotency_ttl_s: float = 86_400.0  # how long a delivered response stays replayable by its payment id
    settle_wait_s: float = 90.0  # how long a retry waits for the first attempt with its payment id


# ---- what a transport gets back ----


@dataclass(frozen=True, slots=True)
class Verified:
    """Handed to `serve`: the payment is claimed and verified; the handler may run."""

    payment_id: int
    payer: str


@dataclass(frozen=True, slots=True)
class Served:
    """What the handler produced. Only `ok` results are sold; `result` is the transport's own."""

    ok: bool
    result: Any
    reason: str | None = None  # why not sold (the claim's release reason), when not ok


@dataclass(frozen=True, slots=True)
class Refused:
    refusal: Refusal  # answer with a fresh quote carrying this reason (402, or the refusal's status)


@dataclass(frozen=True, slots=True)
class Banned:
    payer: str


@dataclass(frozen=True, slots=True)
class Unavailable:
    reason: str
    message: str  # 503: try again later; nothing was charged


@dataclass(frozen=True, slots=True)
class RateLimited(Unavailable):
    retry_after: int = 1  # 429 with Retry-After (a transport that knows only Unavailable still refuses it)


@dataclass(frozen=True, slots=True)
class NotServed:
    served: Served  # the handler failed or had no data: released, nothing charged


@dataclass(frozen=True, slots=True)
class Delivered:
    served: Served
    settlement: Settlement
    payment_id: int = 0  # the ledger's payment: the transport reports its delivery (`Checkout.delivered`)


@dataclass(frozen=True, slots=True)
class Unsettled:
    settlement: Settlement  # failed (nothing charged) or pending (reconciliation decides); no data
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Replayed:
    stored: bytes  # the first delivery of this payment id, as its transport stored it


@dataclass(frozen=True, slots=True)
class IdConflict:
    message: str  # 409: this payment id belongs to another payment (or transport)


Outcome = Refused | Banned | Unavailable | NotServed | Delivered | Unsettled | Replayed | IdConflict
Serve = Callable[[Verified], Awaitable[Served]]


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


@dataclass
class _Attempt:
    paid: PaidRoute
    payload: PaymentPayload
    offer: PaymentRequirements
    payment_id: int
    context: dict[str, Any]  # log fields: route, payment id (the key and payer are bound to every line)
    state: str = "claimed"


class Checkout:
    def __init__(self, services: Services) -> None:
        self.services = services

    async def pay(
        self,
        paid: PaidRoute,
        payload: PaymentPayload,
        offer: PaymentRequirements,
        serve: Serve,
        *,
        transport: str,
        store: Callable[[Delivered], bytes],
    ) -> Outcome:
        """Run one bound payment through to its outcome (see the module docstring). `transport` names the
        caller ("http", "mcp") and `store` encodes a delivery in its terms, replayed to payment-identifier
        retries on the same transport."""
        payment_id = payment_identifier(payload)
        if isinstance(payment_id, Refusal):
            return self._refused(paid, payment_id)
        idempotent = Idempotency(payment_id, transport, store) if payment_id else None
        inspection = inspect(payload, offer, int(time.time()))
        if isinstance(inspection, Refusal):
            return self._refused(paid, inspection)
        bind(payment_key=inspection.payment_key, payer=inspection.payer)  # on every later log line
        if self.services.banned(inspection.payer):  # before verification: a banned payer costs us no RPC call
            log.info("banned payer refused", extra={"route": paid.path})
            metrics.REFUSED("payer_banned").inc()
            return Banned(inspection.payer)
        limited = self.services.payer_limited
        wait = await limited(inspection.payer) if limited is not None else None
        if wait is not None:  # after the ban check, before the claim: nothing is recorded, verified or charged
            log.info("payer rate limited", extra={"route": paid.path, "retry_after": wait})
            metrics.REFUSED("rate_limited").inc()
            message = f"too many payment attempts from this payer; retry after {wait} s (nothing was charged)"
            return RateLimited("rate_limited", message, wait)
        pool = self.services.pool
        if pool is None or self.services.facilitator is None:
            return Unavailable(Reason.UNEXPECTED_VERIFY_ERROR, "payments are not ready yet")
        if idempotent is None:
            return await self._claim_and_sell(paid, payload, offer, inspection, serve)
        return await self._idempotent(paid, payload, offer, inspection, serve, idempotent)

    def _refused(self, paid: PaidRoute, refusal: Refusal) -> Refused:
        log.info("payment refused", extra={"route": paid.path, "reason": refusal.reason})
        metrics.REFUSED(refusal.reason).inc()
        return Refused(refusal)

    # ---- payment-identifier: one delivery per id, replayed to retries ----

    async def _idempotent(
        self,
        paid: PaidRoute,
        payload: PaymentPayload,
        offer: PaymentRequirements,
        inspection: Inspection,
        serve: Serve,
        key: Idempotency,
    ) -> Outcome:
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
        outcome = await self._claim_and_sell(paid, payload, offer, inspection, serve)
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
            if holder is not None and holder.state == "settled":
                settled_since = settled_since or time.monotonic()
                if time.monotonic() - settled_since >= REDELIVER_AFTER_S:
                    return await self._redeliver(paid, inspection, offer, serve, key, holder)
            elif holder is not None and holder.state in ("failed", "expired"):
                with contextlib.suppress(ledger.LedgerError):
                    await idempotency.abandon(self.services.pool, key.id)  # nothing charged: the id is free
                return self._refused(paid, self._already_claimed(holder))
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
        delivered = await self._serve_settled(paid, offer, inspection, serve, holder, payment_identifier=key.id)
        if isinstance(delivered, NotServed):
            return delivered  # no data right now; the id stays open, so a later retry tries again
        with anyio.CancelScope(shield=True):
            try:
                await idempotency.complete(self.services.pool, key.id, key.encode(delivered))
            except ledger.LedgerError as exc:
                log.error("could not record the payment id's outcome", extra={"detail": str(exc)})
        return delivered

    async def _serve_settled(
        self,
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

    # ---- the sale ----

    async def _claim_and_sell(
        self,
        paid: PaidRoute,
        payload: PaymentPayload,
        offer: PaymentRequirements,
        inspection: Inspection,
        serve: Serve,
    ) -> Outcome:
        pool = self.services.pool
        context: dict[str, Any] = {"route": paid.path}
        try:
            payment_id = await claims.claim(pool, self._record(paid, inspection))
        except ledger.LedgerUnavailable:
            log.error("ledger unavailable: refusing paid request", extra=context)
            return Unavailable("ledger_unavailable", NOT_RECORDED)
        if payment_id is None:
            return await self._claimed_before(paid, offer, inspection, serve)
        attempt = _Attempt(paid, payload, offer, payment_id, {**context, "payment_id": payment_id})
        faultpoints.reach("after_claim")
        return await self._claimed(attempt, serve)

    def _record(self, paid: PaidRoute, inspection: Inspection) -> PaymentRecord:
        valid_before = inspection.valid_before_unix_s
        return PaymentRecord(
            payment_key=inspection.payment_key,
            scheme_id=inspection.scheme_id,
            network=inspection.network,
            asset=inspection.asset,
            payer=inspection.payer,
            pay_to=inspection.pay_to,
            amount_atomic=inspection.amount_atomic,
            route=paid.route,
            resource=paid.path,
            stream=paid.stream.id if paid.stream else None,
            settlement_mode=self.services.settlement_mode,
            valid_before=(
                datetime.fromtimestamp(valid_before, UTC)
                if valid_before is not None and valid_before <= _LATEST_VALID_BEFORE
                else None
            ),
        )

    async def _claimed_before(
        self, paid: PaidRoute, offer: PaymentRequirements, inspection: Inspection, serve: Serve
    ) -> Outcome:
        """The payment's key is taken. If it bought this resource, settled, and its answer never left (a crash,
        a lost settlement answer booked later by reconciliation, a client gone after the broadcast), the payer
        was charged without data: serve it now under that settlement, once, never charging again. Otherwise
        the payment is spent or in use: refused."""
        pool = self.services.pool
        try:
            holder = await claims.holder(pool, inspection.payment_key)
            taken = (
                holder is not None
                and holder.state == "settled"
                and holder.resource == paid.path
                and await claims.take_redelivery(pool, holder.payment_id, REDELIVER_AFTER_S, REDELIVERY_LEASE_S)
            )
        except ledger.LedgerUnavailable:
            return Unavailable("ledger_unavailable", NOT_RECORDED)
        if not taken or holder is None:
            return self._refused(paid, self._already_claimed(holder))
        delivered = await self._serve_settled(paid, offer, inspection, serve, holder)
        if isinstance(delivered, NotServed):
            with anyio.CancelScope(shield=True), contextlib.suppress(ledger.LedgerError):
                await claims.drop_redelivery(pool, holder.payment_id)  # a later retry may try again
        return delivered

    async def delivered(self, outcome: Delivered) -> None:
        """The transport handed the sale's answer to its caller: it is never served again. Best effort (a
        sale left unmarked may be served once more to the same payment; it is never charged again)."""
        pool = self.services.pool
        if pool is None or not outcome.payment_id:
            return
        with anyio.CancelScope(shield=True):
            try:
                await claims.mark_delivered(pool, outcome.payment_id)
            except ledger.LedgerError as exc:
                log.error("could not mark a sale delivered", extra={"detail": str(exc)})

    @staticmethod
    def _already_claimed(holder: claims.Holder | None) -> Refusal:
        """The refusal of a payment whose key another claim holds, saying what became of that claim."""
        state = holder.state if holder else "unknown"
        what = {
            "settled": "was already used: it settled for an earlier request",
            "failed": "failed to settle for an earlier request",
            "expired": "expired unsettled",
        }.get(state, "is being used by another request right now")
        return Refusal(Reason.PAYMENT_ALREADY_CLAIMED, f"this payment {what}; sign a new one")

    async def _advance(self, attempt: _Attempt, to_state: str, reason: str | None = None) -> bool:
        """Move the attempt's payment one edge; False if the ledger is down or someone else moved it."""
        try:
            moved = await claims.advance(self.services.pool, attempt.payment_id, attempt.state, to_state, reason=reason)
        except ledger.LedgerError:
            log.error("ledger write failed", extra={**attempt.context, "from": attempt.state, "to": to_state})
            return False
        if moved:
            attempt.state = to_state
        return moved

    async def _release(self, attempt: _Attempt, reason: str) -> None:
        # If this fails the claim stays open, and reconciliation expires claims that never reached `settling`.
        await self._advance(attempt, "released", reason)

    async def _claimed(self, attempt: _Attempt, serve: Serve) -> Outcome:
        facilitator = self.services.facilitator
        assert facilitator is not None
        try:
            verification = await facilitator.verify(attempt.payload, attempt.offer)
        except Exception as exc:
            # Infrastructure (PaymentError) or a bug: either way the payer keeps an unspent authorization.
            reason = exc.reason if isinstance(exc, PaymentError) else Reason.UNEXPECTED_VERIFY_ERROR
            log.error(
                "verification unavailable",
                extra={**attempt.context, "reason": reason},
                exc_info=not isinstance(exc, PaymentError),
            )
            await self._release(attempt, reason)
            return Unavailable(reason, "the payment could not be verified right now; nothing was charged")
        if not verification.valid:
            reason = verification.reason or Reason.UNEXPECTED_VERIFY_ERROR
            await self._release(attempt, reason)
            return self._refused(attempt.paid, Refusal(reason, verification.message or "payment refused"))
        metrics.VERIFIED(attempt.offer.network).inc()
        if not await self._advance(attempt, "verified"):
            return Unavailable("ledger_unavailable", NOT_RECORDED)
        faultpoints.reach("after_verify")
        try:
            served = await serve(Verified(attempt.payment_id, verification.payer or ""))
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._release(attempt, "handler_error")
            raise
        if not served.ok:
            await self._release(attempt, served.reason or "not_served")
            return NotServed(served)
        faultpoints.reach("after_serve")
        # From here on the payment may be charged: finish it even if the client goes away.
        with anyio.CancelScope(shield=True):
            return await self._settle(attempt, served)

    async def _settle(self, attempt: _Attempt, served: Served) -> Outcome:
        pool, facilitator = self.services.pool, self.services.facilitator
        assert facilitator is not None
        if not (await self._advance(attempt, "served") and await self._advance(attempt, "settling")):
            await self._release(attempt, "ledger_unavailable")
            return Unavailable("ledger_unavailable", NOT_RECORDED)

        written: list[str] = []  # hashes on record: from the first one on, a transaction may have left

        async def record_broadcast(tx_hash: str) -> None:
            await claims.record_tx_hash(pool, attempt.payment_id, tx_hash)
            written.append(tx_hash)

        network = attempt.offer.network
        started = time.perf_counter()
        try:
            settlement = await facilitator.settle(attempt.payload, attempt.offer, record_broadcast)
        except ledger.LedgerError as exc:
            if written:  # the ledger failed after a hash was on record: the transaction may be out
                log.error("ledger failed during settlement", extra={**attempt.context, "detail": str(exc)})
                message = "ledger unavailable during settlement; outcome unknown"
                settlement = Settlement(False, network, written[-1], reason=Reason.SETTLEMENT_PENDING, message=message)
            else:  # the hash could not be written ahead, so nothing was broadcast
                log.error("settlement not started: ledger write failed", extra={**attempt.context, "detail": str(exc)})
                message = "ledger unavailable; nothing was broadcast"
                settlement = Settlement(False, network, reason=Reason.UNEXPECTED_SETTLE_ERROR, message=message)
        except Exception:
            # A bug somewhere under settle: a transaction may or may not have left. Keep the row
            # `settling` (reconciliation asks the chain) and withhold the result.
            log.exception("settlement raised; outcome unknown", extra=attempt.context)
            message = "internal error during settlement"
            settlement = Settlement(False, network, reason=Reason.SETTLEMENT_PENDING, message=message)
        metrics.SETTLE_SECONDS(network).observe(time.perf_counter() - started)
        outcome = "settled" if settlement.success else "pending" if settlement.pending else "failed"
        metrics.SETTLEMENTS(network, outcome).inc()
        if not settlement.success:
            return await self._settle_failed(attempt, settlement)
        faultpoints.reach("after_broadcast")  # on chain, not yet booked
        postings = ledger.settlement_postings(
            network=network,
            asset=attempt.offer.asset,
            pay_to=attempt.offer.pay_to,
            revenue_account=attempt.paid.revenue_account,
            amount_atomic=int(attempt.offer.amount),
            relayer=settlement.gas_payer,
            gas_cost_atomic=settlement.gas_cost_atomic,
        )
        try:
            await claims.settle(
                pool, attempt.payment_id, settlement.transaction, postings, gas_cost_atomic=settlement.gas_cost_atomic
            )
        except ledger.LedgerError as exc:
            # Charged on chain: the payer gets the data. The row stays `settling` with its hash
            # (written ahead), and reconciliation books it.
            log.error(
                "settled on chain but not booked",
                extra={**attempt.context, "tx": settlement.transaction, "detail": str(exc)},
            )
        log.info("payment settled", extra={**attempt.context, "tx": settlement.transaction})
        faultpoints.reach("after_journal")  # booked, the response not yet sent
        return Delivered(served, settlement, attempt.payment_id)

    async def _settle_failed(self, attempt: _Attempt, settlement: Settlement) -> Unsettled:
        reason = settlement.reason or Reason.UNEXPECTED_SETTLE_ERROR
        extra = {**attempt.context, "tx": settlement.transaction, "reason": reason}
        if settlement.pending:
            message = "settlement outcome unknown; the payment stays open until reconciliation checks the chain"
            log.warning("settlement pending", extra=extra)
            if settlement.transaction:  # a remote facilitator names its transaction only now: keep it for reconcile
                try:
                    await claims.record_tx_hash(self.services.pool, attempt.payment_id, settlement.transaction)
                except ledger.LedgerError:
                    log.error("could not record the pending settlement's transaction", extra=extra)
        else:
            message = settlement.message or "settlement failed; you were not charged"
            log.warning("settlement failed", extra=extra)
            try:
                await claims.advance(
                    self.services.pool,
                    attempt.payment_id,
                    "settling",
                    "failed",
                    reason=reason,
                    tx_hash=settlement.transaction or None,
                )
            except ledger.LedgerError:
                log.error("could not mark settlement failed", extra=attempt.context)
        return Unsettled(settlement, reason, message)
