"""The checkout: one paid request from a decoded payment to a delivered, settled and booked sale.

It does not know HTTP or MCP. A transport (the HTTP gate, the MCP server) decodes the payment, binds
it to one of the route's offers, and hands it here with `serve`, which runs the handler and says
whether it produced data. The checkout then runs the one sequence both transports share:
local inspection (no I/O) → ban check → signature speaks for the payer (`authenticate`) → payer rate
limit → idempotency (payment-identifier) → claim the payment key in
Postgres (UNIQUE) → facilitator verify → serve → settle (sync mode) → journal. Any failure on the way
releases the claim (nothing charged) or leaves it `settling` for reconciliation (outcome unknown);
in no case is a result marked deliverable without a successful settlement. It answers with an
Outcome (app/usecases/outcomes.py), which app/usecases/replies.py turns into the one reply both
transports render. Retries (payment-identifier replays, redeliveries) are app/usecases/retries.py's.
Each claim names the process holding it (a lease, app/usecases/holders.py) until its request ends, so that
the retry of a payment whose request died resolves it at once (app/usecases/recovery.py).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio

import ledger
from app.runtime import faultpoints, metrics
from app.runtime.logs import bind
from app.usecases import admission, holders
from app.usecases.outcomes import (
    NOT_RECORDED,
    Delivered,
    NotServed,
    Outcome,
    Refused,
    Serve,
    Served,
    Unavailable,
    Unsettled,
    Verified,
)
from app.usecases.pricing import PaidRoute
from app.usecases.recovery import Recovery
from app.usecases.retries import (
    IN_PROGRESS,
    Idempotency,
    PaymentIds,
    Requested,
    already_claimed,
    closed_unpaid,
    fingerprint,
    payment_identifier,
)
from app.usecases.services import Services
from ledger import PaymentRecord, PaymentState, claims, leases
from payments import (
    Inspection,
    PaymentError,
    PaymentPayload,
    PaymentRequirements,
    Reason,
    Refusal,
    Settlement,
    authenticate,
    inspect,
)
from payments.evm.batch import SCHEME as BATCH_SCHEME

log = logging.getLogger("worldgate.checkout")
_CLOSED = (PaymentState.SETTLED, PaymentState.FAILED, PaymentState.RELEASED)  # final for this request
_LATEST_VALID_BEFORE = 253402300799  # 9999-12-31: beyond it the ledger stores no expiry


@dataclass
class _Attempt:
    paid: PaidRoute
    payload: PaymentPayload
    offer: PaymentRequirements
    payment_id: int
    context: dict[str, Any]  # log fields: route, payment id (the key and payer are bound to every line)
    state: PaymentState = PaymentState.CLAIMED
    lease: int | None = None  # this process's instance, holding the claim (its writes are refused once taken over)
    taken_over: bool = False  # settling a claim a dead request left (recovery.py closes a failure, not we)


class Checkout:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._recovery = Recovery(services, self._claim_and_sell, self._settle_taken, self._refused)
        self._payment_ids = PaymentIds(services, self._claim_and_sell, self._refused, self._recovery)

    async def pay(
        self,
        paid: PaidRoute,
        payload: PaymentPayload,
        offer: PaymentRequirements,
        serve: Serve,
        *,
        transport: str,
        store: Callable[[Delivered], bytes],
        request: Requested | None = None,
    ) -> Outcome:
        """Run one bound payment through to its outcome (see the module docstring). `transport` names the
        caller ("http", "mcp") and `store` encodes a delivery in its terms, replayed to payment-identifier
        retries on the same transport; `request` (its method and checked query) binds a payment-identifier to
        this request and price (None: to the payment only). A batch-settlement voucher goes to its own checkout
        (batch_checkout.py), with its payment-identifier: it moves no money in the request, so there is no
        settlement to wait for or retry."""
        payment_id = payment_identifier(payload)
        if isinstance(payment_id, Refusal):
            return self._refused(paid, payment_id)
        idempotent = None
        if payment_id:
            bound = fingerprint(paid, offer, request) if request is not None else None
            idempotent = Idempotency(payment_id, transport, store, bound)
        if offer.scheme == BATCH_SCHEME and self.services.batch is not None:
            return await self.services.batch.pay(paid, payload, offer, serve, idempotent)
        inspection = inspect(payload, offer, int(time.time()))
        if isinstance(inspection, Refusal):
            held = await self._held_late(payload, offer, inspection)
            if not isinstance(held, Inspection):
                return self._refused(paid, held) if isinstance(held, Refusal) else held
            inspection = held
        bind(payment_key=inspection.payment_key, payer=inspection.payer)  # on every later log line
        if (ban := admission.banned(self.services, paid, inspection.payer)) is not None:
            return ban
        pool, facilitator = self.services.pool, self.services.facilitator
        if pool is None or facilitator is None:
            return Unavailable(Reason.UNEXPECTED_VERIFY_ERROR, "payments are not ready yet")
        # Until the signature is known to speak for `payer`, nothing is counted or recorded under that payer:
        # a forger naming someone else's address must not rate-limit them or leave rows in the ledger.
        try:
            forged = await authenticate(facilitator, payload, offer, inspection)
        except PaymentError as exc:
            log.warning("signature check unavailable", extra={"route": paid.path, "reason": exc.reason})
            return Unavailable(exc.reason, "the payment could not be verified right now; nothing was charged")
        if forged is not None:
            return self._refused(paid, forged)
        if (limited := await admission.over_limit(self.services, paid, inspection.payer)) is not None:
            return limited
        if idempotent is None:
            return await self._claim_and_sell(paid, payload, offer, inspection, serve)
        return await self._idempotent(paid, payload, offer, inspection, serve, idempotent)

    async def _held_late(
        self, payload: PaymentPayload, offer: PaymentRequirements, refusal: Refusal
    ) -> Inspection | Refusal | Unavailable:
        """A payment refused for expiring (validBefore) that the ledger already holds is a retry of an earlier
        request, whose outcome may be pending or settled: it gets that outcome (pending, the data, or "not
        charged"), never a quote that would invite a second payment. Inspected as at its own validAfter, and
        only when its signature recovered to its payer (nothing else can vouch for an expired authorization).
        Anything else keeps its refusal."""
        authorization = payload.payload.get("authorization") if isinstance(payload.payload, dict) else None
        pool = self.services.pool
        if refusal.reason != Reason.EVM_VALID_BEFORE or not isinstance(authorization, dict) or pool is None:
            return refusal
        try:
            signed = inspect(payload, offer, int(authorization["validAfter"]))
        except (KeyError, TypeError, ValueError):
            return refusal
        if isinstance(signed, Refusal) or not signed.signer_verified:
            return refusal
        try:
            holder = await claims.holder(pool, signed.payment_key, unleased_held_s=self.services.settle_wait_s)
        except ledger.LedgerUnavailable:
            return Unavailable("ledger_unavailable", NOT_RECORDED)
        # A released claim charged nothing and would be claimed again: the expired authorization is refused.
        return signed if holder is not None and holder.state != PaymentState.RELEASED else refusal

    def _refused(self, paid: PaidRoute, refusal: Refusal) -> Refused:
        return admission.refused(paid, refusal)

    async def _idempotent(
        self,
        paid: PaidRoute,
        payload: PaymentPayload,
        offer: PaymentRequirements,
        inspection: Inspection,
        serve: Serve,
        key: Idempotency,
    ) -> Outcome:
        """A payment with a payment-identifier: one delivery per id, replayed to retries (app/usecases/retries.py)."""
        return await self._payment_ids.sell_once(paid, payload, offer, inspection, serve, key)

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
            lease = await holders.instance(pool)
            payment_id = await claims.claim(pool, self._record(paid, inspection), lease=lease)
        except ledger.LedgerUnavailable:
            log.error("ledger unavailable: refusing paid request", extra=context)
            return Unavailable("ledger_unavailable", NOT_RECORDED)
        if payment_id is None:
            return await self._claimed_before(paid, payload, offer, inspection, serve)
        attempt = _Attempt(paid, payload, offer, payment_id, {**context, "payment_id": payment_id}, lease=lease)
        try:
            faultpoints.reach("after_claim")
            return await self._claimed(attempt, serve)
        finally:  # however it ended, no request holds the claim now: a retry may resolve what is left open
            if attempt.state not in _CLOSED:  # a closed claim is never resolved: its lease needs no end
                with anyio.CancelScope(shield=True), contextlib.suppress(ledger.LedgerError):
                    await leases.end(pool, payment_id, lease)

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
            valid_before=(
                datetime.fromtimestamp(valid_before, UTC)
                if valid_before is not None and valid_before <= _LATEST_VALID_BEFORE
                else None
            ),
        )

    async def _claimed_before(
        self,
        paid: PaidRoute,
        payload: PaymentPayload,
        offer: PaymentRequirements,
        inspection: Inspection,
        serve: Serve,
    ) -> Outcome:
        """The payment's key is taken. Settled and its answer never left (a crash, a lost settlement answer
        booked later, a client gone after the broadcast): the payer was charged without data, so it is served
        now under that settlement, never charging again. Still open: resolved for this retry (recovery.py):
        the data, pending, "not charged", or this retry runs it. Failed or expired: not charged (409). Delivered:
        refused as spent."""
        try:
            holder = await claims.holder(
                self.services.pool, inspection.payment_key, unleased_held_s=self.services.settle_wait_s
            )
        except ledger.LedgerUnavailable:
            return Unavailable("ledger_unavailable", NOT_RECORDED)
        if holder is not None and holder.state in IN_PROGRESS:
            return await self._recovery.resolve(paid, payload, offer, inspection, serve, holder)
        if holder is not None and holder.state == PaymentState.SETTLED:
            return await self._recovery.deliver_booked(paid, offer, inspection, serve, holder)
        if holder is not None and holder.state in (PaymentState.FAILED, PaymentState.EXPIRED):
            return closed_unpaid(offer, inspection, holder)
        return self._refused(paid, already_claimed(holder))

    async def delivered(self, outcome: Delivered) -> None:
        """The transport handed the sale's answer to its caller: it is never served again. Best effort (a
        sale left unmarked may be served once more to the same payment; it is never charged again)."""
        pool = self.services.pool
        if pool is None or not outcome.payment_id:
            return
        if outcome.voucher and self.services.batch is not None:
            self.services.batch.delivered(outcome)  # gathered with others into one statement
            return
        with anyio.CancelScope(shield=True):
            try:
                await claims.mark_delivered(pool, outcome.payment_id)
            except ledger.LedgerError as exc:
                log.error("could not mark a sale delivered", extra={"detail": str(exc)})

    async def _advance(self, attempt: _Attempt, to_state: PaymentState, reason: str | None = None) -> bool:
        """Move the attempt's payment one edge; False if the ledger is down or someone else moved it."""
        try:
            moved = await claims.advance(
                self.services.pool, attempt.payment_id, attempt.state, to_state, reason=reason, lease=attempt.lease
            )
        except ledger.LedgerError:
            log.error("ledger write failed", extra={**attempt.context, "from": attempt.state, "to": to_state})
            return False
        if moved:
            attempt.state = to_state
        return moved

    async def _release(self, attempt: _Attempt, reason: str) -> None:
        # If this fails the claim stays open, and reconciliation expires claims that never reached `settling`.
        await self._advance(attempt, PaymentState.RELEASED, reason)

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
        if not await self._advance(attempt, PaymentState.VERIFIED):
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

    async def _settle_taken(
        self,
        paid: PaidRoute,
        payload: PaymentPayload,
        offer: PaymentRequirements,
        payment_id: int,
        lease: int,
        served: Served,
    ) -> Outcome:
        """Settle a `settling` claim a dead request left with nothing on chain, under this retry's lease."""
        context = {"route": paid.path, "payment_id": payment_id, "taken_over": True}
        attempt = _Attempt(paid, payload, offer, payment_id, context, PaymentState.SETTLING, lease, taken_over=True)
        return await self._settle(attempt, served)

    async def _settle(self, attempt: _Attempt, served: Served) -> Outcome:
        pool, facilitator = self.services.pool, self.services.facilitator
        assert facilitator is not None
        if attempt.state != PaymentState.SETTLING:  # a taken-over claim is settling already
            served_on_record = await self._advance(attempt, PaymentState.SERVED)
            if not (served_on_record and await self._advance(attempt, PaymentState.SETTLING)):
                await self._release(attempt, "ledger_unavailable")
                return Unavailable("ledger_unavailable", NOT_RECORDED)

        written: list[str] = []  # hashes on record: from the first one on, a transaction may have left

        async def record_broadcast(tx_hash: str) -> None:
            await claims.record_tx_hash(pool, attempt.payment_id, tx_hash, lease=attempt.lease)
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
            attempt.state = PaymentState.SETTLED
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
            message = (
                "settlement outcome unknown; the payment stays open until reconciliation checks the chain: retry "
                "this same payment (or payment id) after Retry-After to get the outcome, do not sign a new one"
            )
            log.warning("settlement pending", extra=extra)
            if settlement.transaction:  # a remote facilitator names its transaction only now: keep it for reconcile
                try:
                    await claims.record_tx_hash(
                        self.services.pool, attempt.payment_id, settlement.transaction, lease=attempt.lease
                    )
                except ledger.LedgerError:
                    log.error("could not record the pending settlement's transaction", extra=extra)
        elif attempt.taken_over:  # recovery.py asks the chain before closing it failed
            message = settlement.message or "settlement failed; you were not charged"
            log.warning("taken-over settlement failed", extra=extra)
        else:
            message = settlement.message or "settlement failed; you were not charged"
            log.warning("settlement failed", extra=extra)
            try:
                if await claims.advance(
                    self.services.pool,
                    attempt.payment_id,
                    PaymentState.SETTLING,
                    PaymentState.FAILED,
                    reason=reason,
                    tx_hash=settlement.transaction or None,
                ):
                    attempt.state = PaymentState.FAILED
            except ledger.LedgerError:
                log.error("could not mark settlement failed", extra=attempt.context)
        return Unsettled(settlement, reason, message)
