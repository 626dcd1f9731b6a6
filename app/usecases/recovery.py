"""The retry of a payment whose claim is still open, answered there and then (issue 21).

A request that died with its claim open (`claimed` … `settling`) leaves its payer's money moved, or about to,
or not at all; the payer's retry of that same payment asks what became of it (app/usecases/resolution.py) and
is answered with it: the data once the chain shows the payment landed (booked now, served under it), pending
(503, Retry-After) while it may still land or its request still works, "not charged" once it cannot land, and
when nothing of it landed and nobody holds it, the retry runs the payment itself (`take_over`): from the start
if it never reached settlement, or by settling it here if it did and nothing was broadcast. Never a request to
pay again for a payment whose money moved.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

import ledger
from app.usecases import holders, resolution
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
from app.usecases.resolution import Judgement, Verdict
from app.usecases.retries import (
    REDELIVER_AFTER_S,
    REDELIVERY_LEASE_S,
    Refuse,
    Sell,
    already_claimed,
    not_charged,
    pending_settlement,
    serve_settled,
)
from app.usecases.services import Services
from ledger import PaymentState, claims, leases
from payments import (
    ChainAuditor,
    Inspection,
    PaymentError,
    PaymentPayload,
    PaymentRequirements,
    Reason,
    Refusal,
    Settlement,
)

log = logging.getLogger("worldgate.checkout")
TAKEN_OVER = "its request is gone; the retry of its payment runs it"
# Settle a taken-over claim that is already `settling`, under lease `instance`, with the data `served`.
SettleTaken = Callable[[PaidRoute, PaymentPayload, PaymentRequirements, int, int, Served], Awaitable[Outcome]]


class Recovery:
    """Resolves open claims for the retries of their payments. `sell` is the checkout's whole sale (claim,
    verify, serve, settle), `settle` its settlement of a claim already `settling`, `refuse` its refusal."""

    def __init__(self, services: Services, sell: Sell, settle: SettleTaken, refuse: Refuse) -> None:
        self.services = services
        self._sell = sell
        self._settle = settle
        self._refuse = refuse
        self._readers: tuple[Any, dict[str, ChainAuditor]] = (None, {})

    def _reader(self, network: str) -> ChainAuditor | None:
        facilitator = self.services.facilitator
        if self._readers[0] is not facilitator:  # built once per facilitator (a new lifespan makes a new one)
            self._readers = (facilitator, resolution.readers(facilitator))
        return self._readers[1].get(network)

    async def judge(self, holder: claims.Holder) -> Judgement | Unavailable:
        """What became of this open claim; a chain that cannot be read now leaves it pending."""
        pool = self.services.pool
        try:
            judged = await resolution.judge(
                pool,
                holder,
                self._reader(holder.network),
                gone=holders.gone(holder),
                write_ahead=resolution.writes_ahead(self.services.facilitator),
            )
        except ledger.LedgerUnavailable:
            return Unavailable("ledger_unavailable", NOT_RECORDED)
        except ledger.LedgerError as exc:  # a write refused by the ledger's rules: it moved under us
            judged = Judgement(Verdict.PENDING, holder, detail=f"the ledger refused: {exc}")
        except PaymentError as exc:
            judged = Judgement(Verdict.PENDING, holder, detail=f"the chain cannot be read now: {exc.message}")
        log.log(
            logging.INFO if judged.verdict is Verdict.PENDING else logging.WARNING,
            "open claim judged for the retry of its payment",
            extra={"payment_id": holder.payment_id, "state": holder.state, "verdict": judged.verdict,
                   "detail": judged.detail},
        )  # fmt: skip
        return judged

    async def resolve(
        self,
        paid: PaidRoute,
        payload: PaymentPayload,
        offer: PaymentRequirements,
        inspection: Inspection,
        serve: Serve,
        holder: claims.Holder,
    ) -> Outcome:
        """The answer to a retry (without a payment-identifier) of a payment whose claim is open."""
        judged = await self.judge(holder)
        if not isinstance(judged, Judgement):
            return judged
        if judged.verdict is Verdict.SETTLED:
            return await self.deliver_booked(paid, offer, inspection, serve, judged.holder)
        if judged.verdict is Verdict.NOT_CHARGED:
            return not_charged(offer, inspection, judged)
        if judged.verdict is Verdict.TAKE_OVER:
            return await self.take_over(paid, payload, offer, inspection, serve, judged.holder)
        return pending_settlement(offer, inspection, judged.holder)

    async def deliver_booked(
        self, paid: PaidRoute, offer: PaymentRequirements, inspection: Inspection, serve: Serve, holder: claims.Holder
    ) -> Outcome:
        """A settled sale retried: served once more under its settlement if its answer never reached its caller
        (one retry at a time; a sale its own request booked gets REDELIVER_AFTER_S to answer first); refused as
        spent only once delivered."""
        if holder.delivered:
            return self._refuse(paid, already_claimed(holder))
        if holder.resource != paid.path:
            message = f"this payment paid for {holder.resource} and its data was not delivered: retry it there"
            return self._refuse(paid, Refusal(Reason.PAYMENT_ALREADY_CLAIMED, message))
        pool = self.services.pool
        try:
            taken = await claims.take_redelivery(pool, holder.payment_id, REDELIVER_AFTER_S, REDELIVERY_LEASE_S)
        except ledger.LedgerUnavailable:
            return Unavailable("ledger_unavailable", NOT_RECORDED)
        if not taken:  # its own request, or another retry, is answering it right now
            return pending_settlement(offer, inspection, holder)
        delivered = await serve_settled(paid, offer, inspection, serve, holder)
        if isinstance(delivered, NotServed):
            with anyio.CancelScope(shield=True), contextlib.suppress(ledger.LedgerError):
                await claims.drop_redelivery(pool, holder.payment_id)  # a later retry may try again
        return delivered

    async def take_over(
        self,
        paid: PaidRoute,
        payload: PaymentPayload,
        offer: PaymentRequirements,
        inspection: Inspection,
        serve: Serve,
        holder: claims.Holder,
    ) -> Outcome:
        """Run the payment of a claim nobody holds any more, nothing of it on chain: take its lease from the gone
        holder (one retry wins), then sell it anew if it never reached settlement, or settle it here."""
        pool = self.services.pool
        gone = holder.lease.instance_id if holder.lease is not None else None
        try:
            instance = await holders.instance(pool)
            if not await leases.take(pool, holder.payment_id, instance, gone, holder.state):
                return pending_settlement(offer, inspection, holder)  # another retry took it, or it moved
            log.warning("open claim taken over by the retry of its payment", extra={"payment_id": holder.payment_id})
            if holder.state != PaymentState.SETTLING:
                # Nothing of ours can have left before `settling`: give the claim back and sell it again.
                released = await claims.advance(
                    pool, holder.payment_id, holder.state, PaymentState.RELEASED, reason=TAKEN_OVER, lease=instance
                )
                if not released:
                    await leases.end(pool, holder.payment_id, instance)
                    return pending_settlement(offer, inspection, holder)
        except ledger.LedgerUnavailable:
            return Unavailable("ledger_unavailable", NOT_RECORDED)
        if holder.state != PaymentState.SETTLING:
            return _uncharged(await self._sell(paid, payload, offer, inspection, serve))
        try:
            return await self._settle_here(paid, payload, offer, inspection, serve, holder, instance)
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(ledger.LedgerError):
                await leases.end(pool, holder.payment_id, instance)

    async def _settle_here(
        self,
        paid: PaidRoute,
        payload: PaymentPayload,
        offer: PaymentRequirements,
        inspection: Inspection,
        serve: Serve,
        holder: claims.Holder,
        instance: int,
    ) -> Outcome:
        """A `settling` claim with nothing of ours on chain: serve, then settle it under this lease. A failure
        is judged against the chain before anything is said (a resend refused because the first copy had just
        landed is a payment; one refused before it left, while the payment may still land, is pending)."""
        served = await serve(Verified(holder.payment_id, inspection.payer))
        if not served.ok:  # nothing broadcast: it stays settling for a later retry (or reconciliation)
            return NotServed(served)
        with anyio.CancelScope(shield=True):  # from here on the payment may be charged: finish it
            outcome = await self._settle(paid, payload, offer, holder.payment_id, instance, served)
            if not isinstance(outcome, Unsettled) or outcome.settlement.pending:
                return outcome
            try:
                judged = await resolution.rejudge(
                    self.services.pool,
                    holder,
                    self._reader(holder.network),
                    write_ahead=resolution.writes_ahead(self.services.facilitator),
                )
            except (ledger.LedgerError, PaymentError) as exc:  # left settling: a later retry or reconcile decides
                log.error("a taken-over settlement failed and could not be judged", extra={"detail": str(exc)})
                return pending_settlement(offer, inspection, holder)
            if judged.verdict is Verdict.SETTLED:
                settlement = Settlement(True, offer.network, judged.holder.tx_hash or "", inspection.payer)
                return Delivered(served, settlement, holder.payment_id)
            if judged.verdict is Verdict.NOT_CHARGED:
                return not_charged(offer, inspection, judged)
            return pending_settlement(offer, inspection, judged.holder)


def _uncharged(outcome: Outcome) -> Outcome:
    """A taken-over payment refused anew (expired since, say) was never charged: say so."""
    if isinstance(outcome, Refused) and outcome.refusal.reason != Reason.PAYMENT_ALREADY_CLAIMED:
        refusal = Refusal(outcome.refusal.reason, f"{outcome.refusal.message} (you were not charged)")
        return Refused(refusal, outcome.offers)
    return outcome
