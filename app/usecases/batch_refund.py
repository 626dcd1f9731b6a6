"""A batch-settlement payer's cooperative refund, taken on any paid route (x402 `batch-settlement`, §1.7).

The official clients send `type: "refund"` with a zero-charge voucher (its ceiling is what the channel was charged)
and, optionally, an amount. No handler runs; a banned payer may still have its deposit back, and refunds count
against the payer's rate limit (each is a transaction the gateway pays gas for). Under the channel's row lock
(vouchers booked on it, claims recorded of it and operator refunds of its sales wait): the voucher must be the
channel's charged total (else a corrective 402, as for a voucher); the chain is read for the live balance, claimed
total and refundNonce; the refund is `balance - (charged - refunded)` or the amount asked, within it
(`…refund_no_balance`, `…refund_amount_invalid`). One transaction from the gateway's relayer,
`multicall(claimWithSignature, refundWithSignature)`, claims what was charged (less what the operator refunded
before a claim) and returns the rest; it is written ahead (in batch_refunds, and its claim in batch_pending_tx for
the settler) before it is broadcast. The mirror then takes the chain's state at the receipt's block, the lock is
released, and the claim part is recorded as the settler's claims are (`channels.record_claim`). The answer is 200
with the PAYMENT-RESPONSE the clients expect: the transaction, the amount refunded and the channel's state.

A refund whose receipt never came (a timeout, a crash) answers 503 settlement_pending; the next refund request on
the channel reads its receipt first, and a retry of the same refund gets that outcome instead of a second refund.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import ledger
from app.usecases import admission
from app.usecases.corrective import corrective
from app.usecases.outcomes import NOT_RECORDED, Acknowledged, Outcome, Refused, Unavailable, Unsettled
from app.usecases.pricing import PaidRoute
from app.usecases.services import Services
from ledger import batch_recovery, channels, refunds
from ledger.refunds import CoopRefund, HeldChannel
from payments import PaymentError, PaymentRequirements, Reason, Refusal, Settlement
from payments.evm.batch import (
    BatchOutcome,
    BatchSettlementChain,
    ChannelSnapshot,
    CheckedVoucher,
    ClaimRow,
    payment_response_extra,
)
from payments.evm.batch.settlement import RefundPlan

log = logging.getLogger("worldgate.batch.refund")
# A refund written ahead that no node knows this long after was never sent: closed as dropped (batch_settler's rule).
DROP_AFTER_S = 600.0
PENDING = (
    "the refund was sent and its outcome is not known yet; send the same refund again after Retry-After to learn it "
    "(a second refund is not sent while this one may land)"
)


@dataclass(frozen=True, slots=True)
class _Sent:
    """A refund landed under the lock; its claim part is recorded after the lock is released."""

    outcome: BatchOutcome
    plan: RefundPlan


class CooperativeRefund:
    def __init__(self, services: Services, chain: BatchSettlementChain) -> None:
        self.services = services
        self.chain = chain

    async def refund(
        self,
        paid: PaidRoute,
        offer: PaymentRequirements,
        checked: CheckedVoucher,
        mirror: Callable[[CheckedVoucher, ChannelSnapshot], Awaitable[object]],
    ) -> Outcome:
        """The refund payload `checked`, its signature and the payer's rate limit already checked (a refund is a
        transaction our relayer pays for), to its outcome; `mirror` records a channel the ledger has not seen."""
        pool = self.services.pool
        try:
            if await channels.channel(pool, checked.channel_id) is None:  # another replica's deposit, a restart
                snapshot = await self.chain.read_channel(checked.channel_id)
                if not snapshot.exists:
                    return admission.refused(
                        paid, Refusal(Reason.BATCH_CHANNEL_NOT_FOUND, "the channel has no deposit")
                    )
                await mirror(checked, snapshot)
            return await self._held(paid, offer, checked)
        except ledger.LedgerUnavailable:
            log.warning("refund: the ledger is unavailable", exc_info=True)
            return Unavailable("ledger_unavailable", NOT_RECORDED)
        except PaymentError as exc:
            message = "the chain could not be read right now; send the same refund again to learn its outcome"
            return Unavailable(exc.reason, message)

    async def _held(self, paid: PaidRoute, offer: PaymentRequirements, checked: CheckedVoucher) -> Outcome:
        landed: list[CoopRefund] = []  # earlier refunds found landed: their claims are recorded after the lock
        async with refunds.hold_channel(self.services.pool, checked.channel_id) as held:
            if held is None:
                return admission.refused(paid, Refusal(Reason.BATCH_CHANNEL_NOT_FOUND, "no such channel"))
            answer = await self._locked(paid, offer, checked, held, landed)
        # the lock is released: record the claim parts as the settler records its claims
        for earlier in landed:
            if earlier.claim_atomic is not None:
                await self._record_claim(checked, earlier.tx_hash, earlier.claim_atomic, earlier.gas_cost_atomic, None)
        if not isinstance(answer, _Sent):
            return answer
        outcome, plan = answer.outcome, answer.plan
        if plan.claims:
            await self._record_claim(
                checked, outcome.transaction, plan.row.total_claimed, outcome.gas_cost_atomic, outcome.gas_payer
            )
        log.info(
            "cooperative refund",
            extra={"route": paid.path, "tx": outcome.transaction, "amount": outcome.amount, "claimed": plan.claims},
        )
        return self._answer(checked, outcome.transaction, outcome.amount, outcome.channels[0])

    async def _locked(
        self,
        paid: PaidRoute,
        offer: PaymentRequirements,
        checked: CheckedVoucher,
        held: HeldChannel,
        landed: list[CoopRefund],
    ) -> Outcome | _Sent:
        """Under the channel's lock: earlier refunds settled, the voucher checked, the chain read, the refund sent."""
        pending = await self._settle_open(held, landed)
        if pending is not None:
            return pending
        if checked.max_claimable != held.charged_atomic:
            return self._corrective(paid, offer, checked, held)
        snapshot = await self.chain.read_channel(checked.channel_id)
        await held.mirror(
            balance_atomic=snapshot.balance,
            refund_nonce=snapshot.refund_nonce,
            withdraw_requested_at=snapshot.withdraw_requested_at,
            withdrawal_amount_atomic=snapshot.withdrawal_amount,
        )
        row = ClaimRow(checked.config, checked.max_claimable, checked.signature, held.claim_total_atomic)
        plan = self.chain.plan_refund(row, checked.refund_amount, snapshot)
        if isinstance(plan, Refusal):
            retried = [r for r in landed if r.requested_atomic == checked.refund_amount]
            if retried and plan.reason == Reason.BATCH_REFUND_NO_BALANCE:  # the answer of that refund was lost
                return self._answer(checked, retried[-1].tx_hash, retried[-1].refunded_atomic or 0, snapshot)
            return admission.refused(paid, plan)
        outcome = await self._send(held, checked, plan)
        if not outcome.success:
            return self._unsent(paid, checked, outcome)
        [after] = outcome.channels
        await held.mirror(
            balance_atomic=after.balance,
            refund_nonce=after.refund_nonce,
            withdraw_requested_at=after.withdraw_requested_at,
            withdrawal_amount_atomic=after.withdrawal_amount,
        )
        await refunds.resolve(
            held.connection,
            outcome.transaction,
            "refunded",
            refunded_atomic=outcome.amount,
            balance_after_atomic=after.balance,
            gas_cost_atomic=outcome.gas_cost_atomic,
            relayer=outcome.gas_payer,
            network=checked.network,
        )
        return _Sent(outcome, plan)

    async def _send(self, held: HeldChannel, checked: CheckedVoucher, plan: RefundPlan) -> BatchOutcome:
        pool, written = self.services.pool, []
        claim = [(checked.channel_id, plan.row.total_claimed)]

        async def ahead(tx_hash: str) -> None:
            await refunds.write_ahead(
                pool,
                tx_hash,
                channel_id=checked.channel_id,
                network=checked.network,
                payer=checked.payer,
                requested_atomic=checked.refund_amount,
                claim_atomic=plan.row.total_claimed if plan.claims else None,
                refund_nonce=plan.nonce,
            )
            if plan.claims:  # if this process dies before recording it, the settler books it from the receipt
                await batch_recovery.write_ahead(
                    pool, tx_hash, checked.network, "claim", batch_recovery.claim_rows(claim)
                )
            written.append(tx_hash.lower())

        outcome = await self.chain.send_refund(plan, on_broadcast=ahead)
        own = outcome.transaction.lower()
        for tx_hash in written:  # a hash written but not the transaction's own was refused by the node: never sent
            if tx_hash != own:
                await self._close(tx_hash, "dropped")
        if own and not outcome.success and not outcome.pending:
            await self._close(own, "failed", outcome.gas_cost_atomic, outcome.gas_payer, checked.network)
        if outcome.pending:  # as if it landed until its receipt says: no voucher is charged against that money
            await held.mirror(
                balance_atomic=plan.channel.balance - plan.amount,
                refund_nonce=plan.channel.refund_nonce,
                withdraw_requested_at=plan.channel.withdraw_requested_at,
                withdrawal_amount_atomic=plan.channel.withdrawal_amount,
            )
        return outcome

    async def _close(
        self, tx_hash: str, outcome: str, gas: int | None = None, relayer: str | None = None, network: str | None = None
    ) -> None:
        pool = self.services.pool
        await refunds.resolve(pool, tx_hash, outcome, gas_cost_atomic=gas, relayer=relayer, network=network)
        closed = batch_recovery.Outcome.DROPPED if outcome == "dropped" else batch_recovery.Outcome.FAILED
        await batch_recovery.resolve(pool, tx_hash, closed)

    async def _record_claim(
        self, checked: CheckedVoucher, tx_hash: str, total: int, gas: int | None, relayer: str | None
    ) -> None:
        pool = self.services.pool
        try:
            await channels.record_claim(pool, checked.network, [(checked.channel_id, total)], tx_hash, gas, relayer)
            await batch_recovery.resolve(pool, tx_hash, batch_recovery.Outcome.RECORDED)
        except ledger.LedgerError as exc:  # written ahead: the settler's next run records it from the receipt
            log.warning("refund's claim not recorded yet", extra={"tx": tx_hash, "detail": str(exc)})

    async def _settle_open(self, held: HeldChannel, landed: list[CoopRefund]) -> Unsettled | None:
        """Earlier refunds of the channel whose receipts were never read, settled from the chain now (those that
        landed are added to `landed`). A pending answer while one may still land: no second refund meanwhile."""
        for sent in await refunds.open_refunds(held.connection, held.config.channel_id):
            found = await self.chain.sent_refund(sent.tx_hash, sent.channel_id)
            if not found.mined:
                age = (datetime.now(UTC) - sent.created_at).total_seconds()
                if found.known or age < DROP_AFTER_S:
                    settlement = Settlement(False, sent.network, sent.tx_hash, sent.payer, Reason.SETTLEMENT_PENDING)
                    return Unsettled(settlement, Reason.SETTLEMENT_PENDING, PENDING)
                await refunds.resolve(held.connection, sent.tx_hash, "dropped")
                continue
            if not found.success:
                await refunds.resolve(
                    held.connection, sent.tx_hash, "failed", gas_cost_atomic=found.gas_cost_atomic,
                    relayer=found.gas_payer, network=sent.network,
                )  # fmt: skip
                continue
            after = await self.chain.read_channel(sent.channel_id, hex(found.block_number or 0))
            await refunds.resolve(
                held.connection, sent.tx_hash, "refunded", refunded_atomic=found.refunded,
                balance_after_atomic=after.balance, gas_cost_atomic=found.gas_cost_atomic,
                relayer=found.gas_payer, network=sent.network,
            )  # fmt: skip
            log.warning("earlier cooperative refund found landed", extra={"tx": sent.tx_hash})
            landed.append(
                dataclasses.replace(
                    sent, outcome="refunded", refunded_atomic=found.refunded, gas_cost_atomic=found.gas_cost_atomic
                )
            )
        return None

    # ---- answers ----

    def _answer(self, checked: CheckedVoucher, tx_hash: str, refunded: int, channel: ChannelSnapshot) -> Acknowledged:
        """200: the refund's PAYMENT-RESPONSE (transaction, amount refunded, channelState; no chargedAmount)."""
        state = channel.state_extra(checked.max_claimable)
        settlement = Settlement(
            True,
            checked.network,
            transaction=tx_hash,
            payer=checked.payer,
            amount=str(refunded),
            extra=payment_response_extra(state, None),
        )
        document = {
            "message": "Refund acknowledged",
            "channelId": checked.channel_id,
            "refunded": str(refunded),
            "transaction": tx_hash,
            "balance": str(channel.balance),
        }
        return Acknowledged(settlement, document)

    def _unsent(self, paid: PaidRoute, checked: CheckedVoucher, outcome: BatchOutcome) -> Outcome:
        if not outcome.sent:  # refused before anything was signed or broadcast
            reason = outcome.reason or Reason.BATCH_REFUND_SIMULATION_FAILED
            return admission.refused(paid, Refusal(reason, outcome.message or "the refund could not be sent"))
        settlement = Settlement(False, checked.network, outcome.transaction, checked.payer, outcome.reason)
        if outcome.pending:
            return Unsettled(settlement, Reason.SETTLEMENT_PENDING, PENDING)
        reason = outcome.reason or Reason.BATCH_REFUND_TRANSACTION_FAILED
        return Unsettled(settlement, reason, outcome.message or "the refund transaction reverted; nothing was refunded")

    def _corrective(
        self, paid: PaidRoute, offer: PaymentRequirements, checked: CheckedVoucher, held: HeldChannel
    ) -> Refused:
        """The voucher is not what the channel was charged: a corrective 402 (the channel as booked, the last voucher
        held), from which the official clients re-base and send the refund again."""
        detail = f"a refund's maxClaimableAmount must be the charged total {held.charged_atomic}"
        refusal = admission.refused(paid, Refusal(Reason.BATCH_CUMULATIVE_AMOUNT_MISMATCH, detail))
        return corrective(paid, offer, refusal, checked.channel_id, held)
