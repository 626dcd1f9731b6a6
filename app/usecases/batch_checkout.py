"""The checkout of a `batch-settlement` payment: a voucher checked and booked in the request, no transaction.

A payer deposits once into an on-chain channel (the deposit rides on its first paid request and is the
only chain transaction in a request's path), then signs one cumulative voucher per request. A voucher is
served when: it passes the local checks (channel id, terms, EIP-712 signature), its cumulative is exactly
what the channel was charged plus this price, within what the channel may be charged and the operator's cap
on unsettled value. The channel is read (not locked) and the rule checked, the handler runs, and then one
ledger statement books the voucher under the channel's row lock, checking the rule again (ledger/channels.py
`book_voucher`): across workers and replicas a voucher is booked once, and of two racing on one channel the
second is refused, its data never sent. A handler that produced no data writes nothing. The answer leaves
only after the booking commits. The settler (batch_settler.py) claims and sweeps booked vouchers later, many
per transaction.

No charge without the data: a voucher booked whose answer never left (the process died after booking it, or
the client went away) is served again when the same voucher comes back for the same resource, under the
booked sale, never charged again (`_served_again`; the exact scheme's redelivery, app/usecases/retries.py).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import anyio

import ledger
from app.runtime import faultpoints, metrics
from app.runtime.logs import bind
from app.usecases import admission
from app.usecases.batch_refund import CooperativeRefund
from app.usecases.corrective import corrective
from app.usecases.delivery_marks import DeliveryMarks
from app.usecases.known_channels import KnownChannels
from app.usecases.outcomes import (
    NOT_RECORDED,
    Delivered,
    NotServed,
    Outcome,
    Refused,
    Serve,
    Unavailable,
    Unsettled,
    Verified,
)
from app.usecases.pricing import PaidRoute
from app.usecases.retries import REDELIVER_AFTER_S, REDELIVERY_LEASE_S, Idempotency
from app.usecases.services import Services
from app.usecases.voucher_booker import VoucherBooker
from app.usecases.voucher_ids import VoucherIds
from ledger import PaymentRecord, batch_recovery, channels, claims, voucher_bookings
from ledger.channels import Channel, ChannelConfig, VoucherRefused
from ledger.voucher_bookings import Booking
from payments import PaymentError, PaymentPayload, PaymentRequirements, Reason, Refusal, Settlement
from payments.evm.batch import (
    BatchSettlementChain,
    ChannelSnapshot,
    CheckedVoucher,
    channel_state_extra,
    check_payment,
    payment_response_extra,
)

log = logging.getLogger("worldgate.batch")
SCHEME_ID = "v2-eip155-batch-settlement"

# The ledger's voucher refusals, as the scheme's reason codes (clients recover from the cumulative ones).
_REASONS = {
    channels.Refusal.CHANNEL_NOT_FOUND: Reason.BATCH_CHANNEL_NOT_FOUND,
    channels.Refusal.CUMULATIVE_AMOUNT_MISMATCH: Reason.BATCH_CUMULATIVE_AMOUNT_MISMATCH,
    channels.Refusal.CUMULATIVE_EXCEEDS_BALANCE: Reason.BATCH_CUMULATIVE_EXCEEDS_BALANCE,
    channels.Refusal.VOUCHER_ALREADY_USED: Reason.BATCH_CUMULATIVE_AMOUNT_MISMATCH,
}
UNSETTLED_CAP = "batch_unsettled_cap"  # ours: too much is owed unswept; retry after the next settlement


@dataclass(frozen=True, slots=True)
class BatchTerms:
    """How this deployment takes vouchers."""

    max_unsettled_atomic: int | None = None  # the operator's cap on accepted, unswept value (all channels)


def ledger_config(checked: CheckedVoucher) -> ChannelConfig:
    config = checked.config
    return ChannelConfig(
        channel_id=checked.channel_id,
        network=checked.network,
        token=config.token,
        payer=config.payer,
        payer_authorizer=config.payer_authorizer,
        receiver=config.receiver,
        receiver_authorizer=config.receiver_authorizer,
        withdraw_delay=int(config.withdraw_delay),
        salt=config.salt,
    )


class BatchCheckout:
    def __init__(self, services: Services, chain: BatchSettlementChain, terms: BatchTerms) -> None:
        self.services = services
        self.chain = chain
        self.terms = terms
        self.known = KnownChannels()
        assert services.pool is not None
        self.marks = DeliveryMarks(services.pool)
        self.booker = VoucherBooker(services.pool, max_unsettled_atomic=terms.max_unsettled_atomic)
        self.refunds = CooperativeRefund(services, chain)
        self.ids = VoucherIds(services)

    def delivered(self, outcome: Delivered) -> None:
        """The transport handed a voucher sale's answer to its caller: it is never served again."""
        self.marks.add(outcome.payment_id)

    async def close(self) -> None:
        await self.marks.close()
        await self.booker.close()

    async def pay(
        self,
        paid: PaidRoute,
        payload: PaymentPayload,
        offer: PaymentRequirements,
        serve: Serve,
        key: Idempotency | None = None,
    ) -> Outcome:
        """Sell one request paid by a voucher (with a deposit, or a refund instead). `key`: its payment-identifier,
        one delivery per id (app/usecases/voucher_ids.py); a refund sells nothing and ignores it."""
        checked = check_payment(payload, offer)
        if isinstance(checked, Refusal):
            return self._refused(paid, checked)
        refund = checked.kind == "refund"  # no handler runs: the unspent deposit goes back to the payer
        bind(payment_key=f"{checked.network}:{checked.channel_id}:{checked.max_claimable}", payer=checked.payer)
        if not refund and (ban := admission.banned(self.services, paid, checked.payer)) is not None:
            return ban  # a banned payer still gets back what it did not spend
        pool = self.services.pool
        if pool is None:
            return Unavailable(Reason.UNEXPECTED_VERIFY_ERROR, "payments are not ready yet")
        try:
            if not checked.signer_verified:  # a zero payerAuthorizer: the payer's own signature, on chain
                forged = await self.chain.voucher_signature_refusal(checked)
                if forged is not None:
                    return self._refused(paid, forged)
        except PaymentError as exc:
            return Unavailable(exc.reason, "the voucher could not be checked right now; nothing was charged")
        sends = checked.kind != "voucher"  # a deposit or a refund is a transaction our relayer pays for
        limited = await admission.over_limit(self.services, paid, checked.payer, sends_transaction=sends)
        if limited is not None:
            return limited
        if refund:
            return await self.refunds.refund(paid, offer, checked, self._mirror)
        if key is not None:
            voucher = channels.payment_key(checked.network, checked.channel_id, checked.max_claimable)
            payer = checked.payer if checked.signer_verified else None
            return await self.ids.sell_once(key, voucher, payer, lambda: self._buy(paid, offer, checked, serve))
        return await self._buy(paid, offer, checked, serve)

    async def _buy(self, paid: PaidRoute, offer: PaymentRequirements, checked: CheckedVoucher, serve: Serve) -> Outcome:
        """The sale itself: the deposit first if the payload carries one, then the voucher."""
        deposited = None
        if checked.kind == "deposit":
            again = await self._deposit_served_again(paid, offer, checked, serve)
            if again is not None:
                return again
            deposited = await self._deposit(paid, checked)
            if not isinstance(deposited, Settlement):
                return deposited
        return await self._sell(paid, offer, checked, serve, deposited)

    def _refused(self, paid: PaidRoute, refusal: Refusal) -> Refused:
        return admission.refused(paid, refusal)

    async def _deposit(self, paid: PaidRoute, checked: CheckedVoucher) -> Settlement | Outcome:
        """Send the payer's deposit (the gateway's relayer pays the gas) and mirror the channel it funds."""
        assert checked.deposit is not None
        try:
            outcome = await self.chain.deposit(checked)
        except PaymentError as exc:
            return Unavailable(exc.reason, "the deposit could not be sent right now; nothing was charged")
        network = checked.network
        if not outcome.success:
            if not outcome.sent:  # refused before sending
                return self._refused(
                    paid, Refusal(outcome.reason or Reason.BATCH_DEPOSIT_PAYLOAD, outcome.message or "")
                )
            reason = outcome.reason or Reason.BATCH_DEPOSIT_TRANSACTION_FAILED
            message = outcome.message or "the deposit did not land; nothing was charged"
            return Unsettled(
                Settlement(False, network, outcome.transaction, checked.payer, reason, message), reason, message
            )
        log.info("deposit landed", extra={"route": paid.path, "tx": outcome.transaction, "amount": outcome.amount})
        snapshot = next((c for c in outcome.channels if c.channel_id == checked.channel_id), None)
        if snapshot is None:
            snapshot = await self.chain.read_channel(checked.channel_id)
        await self._mirror(checked, snapshot)
        return Settlement(
            True, network, outcome.transaction, checked.payer, amount=str(outcome.amount), gas_payer=outcome.gas_payer
        )

    async def _mirror(self, checked: CheckedVoucher, snapshot: ChannelSnapshot) -> Channel:
        mirrored = await channels.mirror_channel(
            self.services.pool,
            ledger_config(checked),
            balance_atomic=snapshot.balance,
            claimed_atomic=snapshot.total_claimed,
            withdraw_requested_at=snapshot.withdraw_requested_at,
            withdrawal_amount_atomic=snapshot.withdrawal_amount,
            refund_nonce=snapshot.refund_nonce,
        )
        self.known.remember(mirrored)
        return mirrored

    def _record(self, paid: PaidRoute, offer: PaymentRequirements, checked: CheckedVoucher) -> PaymentRecord:
        return PaymentRecord(
            payment_key=channels.payment_key(checked.network, checked.channel_id, checked.max_claimable),
            scheme_id=SCHEME_ID,
            network=checked.network,
            asset=offer.asset.lower(),
            payer=checked.payer,
            pay_to=offer.pay_to.lower(),
            amount_atomic=int(offer.amount),
            route=paid.route,
            resource=paid.path,
            stream=paid.stream.id if paid.stream else None,
            valid_before=None,
        )

    async def _checked_channel(self, checked: CheckedVoucher, price: int) -> Channel | VoucherRefused | Outcome:
        """The channel this voucher is for, if the voucher is its next one: as this process last knew it, else as
        the ledger mirrors it; a channel the ledger has not seen (another replica's deposit, a restart) or whose
        deposit grew is read from the chain once and checked again."""
        known = self.known.get(checked.channel_id)
        if known is not None and voucher_bookings.precheck(known, checked.max_claimable, price) is None:
            return known  # the common case: this process booked the channel's last voucher
        try:
            found = await channels.channel(self.services.pool, checked.channel_id)
            if found is not None:
                self.known.remember(found)
            refused = None if found is None else voucher_bookings.precheck(found, checked.max_claimable, price)
            grown = refused is not None and refused.reason is channels.Refusal.CUMULATIVE_EXCEEDS_BALANCE
            if found is None or grown:
                snapshot = await self.chain.read_channel(checked.channel_id)
                if not snapshot.exists:
                    return VoucherRefused(channels.Refusal.CHANNEL_NOT_FOUND, None, f"no channel {checked.channel_id}")
                found = await self._mirror(checked, snapshot)
                refused = voucher_bookings.precheck(found, checked.max_claimable, price)
        except ledger.LedgerUnavailable:
            return Unavailable("ledger_unavailable", NOT_RECORDED)
        except PaymentError as exc:
            return Unavailable(exc.reason, "the channel could not be read right now; nothing was charged")
        return refused if refused is not None else found

    def _voucher_refused(self, paid: PaidRoute, refused: VoucherRefused, offer: PaymentRequirements) -> Refused:
        if refused.reason is channels.Refusal.UNSETTLED_CAP:
            message = "this gateway holds its cap of unsettled vouchers; retry after the next settlement"
            return self._refused(paid, Refusal(UNSETTLED_CAP, message))
        refusal = self._refused(paid, Refusal(_REASONS[refused.reason], refused.detail))
        if refused.reason is not channels.Refusal.CUMULATIVE_AMOUNT_MISMATCH or refused.channel is None:
            return refusal
        # A corrective 402: the channel as we book it, and the last voucher we hold, so a client that lost its
        # place (a new process, lost storage) re-bases on what it was charged and signs the next voucher.
        return corrective(paid, offer, refusal, refused.channel.channel_id, refused.channel)

    # ---- a booked voucher whose answer never left ----

    async def _deposit_served_again(
        self, paid: PaidRoute, offer: PaymentRequirements, checked: CheckedVoucher, serve: Serve
    ) -> Outcome | None:
        """A deposit payload whose deposit landed and whose voucher was booked, sent again because its answer
        never came: served again rather than depositing twice (which the chain would refuse anyway)."""
        try:
            found = await channels.channel(self.services.pool, checked.channel_id)
        except ledger.LedgerUnavailable:
            return Unavailable("ledger_unavailable", NOT_RECORDED)
        return await self._served_again(paid, offer, checked, serve, found)

    async def _served_again(
        self, paid: PaidRoute, offer: PaymentRequirements, checked: CheckedVoucher, serve: Serve, found: Channel | None
    ) -> Outcome | None:
        """The channel's last voucher, booked and never delivered, sent again (same signature, same resource):
        serve the data again under that sale, never charged again; one retry at a time (a lease). None: not
        such a voucher, and the caller refuses it as before."""
        if found is None or found.charged_atomic != checked.max_claimable:
            return None  # only the last voucher: a payer that signed a later one got the earlier answers
        pool = self.services.pool
        try:
            lease = await batch_recovery.take_redelivery(
                pool,
                payment_key=channels.payment_key(checked.network, checked.channel_id, checked.max_claimable),
                signature="0x" + checked.signature.hex(),
                resource=paid.path,
                amount_atomic=int(offer.amount),
                booked_for_s=REDELIVER_AFTER_S,  # younger, its own request may still be answering
                lease_s=REDELIVERY_LEASE_S,
            )
        except ledger.LedgerUnavailable:
            return Unavailable("ledger_unavailable", NOT_RECORDED)
        if lease is None:
            return None
        try:
            served = await serve(Verified(lease.payment_id, checked.payer))
        except BaseException:
            with anyio.CancelScope(shield=True), contextlib.suppress(ledger.LedgerError):
                await claims.drop_redelivery(pool, lease.payment_id)
            raise
        if not served.ok:
            with anyio.CancelScope(shield=True), contextlib.suppress(ledger.LedgerError):
                await claims.drop_redelivery(pool, lease.payment_id)  # no data now: a later retry may try again
            return NotServed(served)
        log.warning(
            "booked voucher redelivered: its first answer never left",
            extra={"route": paid.path, "payment_id": lease.payment_id, "state": lease.state},
        )
        metrics.REDELIVERED(paid.path).inc()
        return Delivered(
            served, self._settlement(checked, found, int(offer.amount), None), lease.payment_id, voucher=True
        )

    def _settlement(
        self, checked: CheckedVoucher, before: Channel, price: int, deposited: Settlement | None
    ) -> Settlement:
        """The PAYMENT-RESPONSE of a booked voucher: the channel's state and what this request charged."""
        state = channel_state_extra(
            checked.channel_id,
            before.balance_atomic,
            before.claimed_atomic,
            before.withdraw_requested_at,
            before.refund_nonce,
            checked.max_claimable,
        )
        return Settlement(
            True,
            checked.network,
            transaction=deposited.transaction if deposited else "",
            payer=checked.payer,
            amount=deposited.amount if deposited else None,
            extra=payment_response_extra(state, price),
        )

    async def _sell(
        self,
        paid: PaidRoute,
        offer: PaymentRequirements,
        checked: CheckedVoucher,
        serve: Serve,
        deposited: Settlement | None,
    ) -> Outcome:
        price = int(offer.amount)
        found = await self._checked_channel(checked, price)
        if isinstance(found, VoucherRefused):
            again = None
            if found.reason is channels.Refusal.CUMULATIVE_AMOUNT_MISMATCH:  # maybe this very voucher, booked
                again = await self._served_again(paid, offer, checked, serve, found.channel)
            return again if again is not None else self._voucher_refused(paid, found, offer)
        if not isinstance(found, Channel):
            return found
        served = await serve(Verified(None, checked.payer))
        if not served.ok:
            return NotServed(served)  # nothing was written: the same voucher may come again
        faultpoints.reach("batch_after_serve")
        signature = "0x" + checked.signature.hex()
        postings = ledger.batch_acceptance_postings(
            network=checked.network,
            asset=offer.asset,
            pay_to=offer.pay_to,
            revenue_account=paid.revenue_account,
            amount_atomic=price,
        )
        booking = Booking(
            self._record(paid, offer, checked), checked.channel_id, checked.max_claimable, signature, postings
        )
        try:
            # The data is ready: it is booked even if this request is cancelled now, for the booker's own task books
            # it (a booked answer that never left is served again, not charged again). No shielding scope: measured,
            # anyio's was ~4% of a voucher's gateway CPU.
            booked = await self.booker.book(booking)
        except ledger.LedgerUnavailable:
            return Unavailable("ledger_unavailable", NOT_RECORDED)
        except ledger.LedgerError:
            log.exception("voucher served but not booked", extra={"route": paid.path})
            return Unavailable("ledger_unavailable", NOT_RECORDED)
        if isinstance(booked, VoucherRefused):  # another request on the channel was booked first: data not sent
            if booked.channel is not None:
                self.known.remember(booked.channel)
            return self._voucher_refused(paid, booked, offer)
        self.known.booked(found, checked.max_claimable, price, signature)
        metrics.VERIFIED(checked.network).inc()
        faultpoints.reach("batch_after_accept")  # booked, the answer not yet sent
        return Delivered(served, self._settlement(checked, found, price, deposited), booked.payment_id, voucher=True)
