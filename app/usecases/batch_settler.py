"""The batch settler: accepted vouchers claimed on chain many channels to a transaction, then swept to payTo.

Runs in every gateway on two timers (claim, settle); a Postgres advisory lock lets one process per network
act at a time, so replicas never send the same claim twice. `flush` does both now (`worldgate batch
flush`). A claim or sweep is recorded under its transaction hash, once. Its hash is written ahead
(ledger/batch_recovery.py) before it is sent, so a settler that dies between the transaction and its record
leaves it pending, and every run first settles what is pending from its receipt (`recover`): landed →
recorded with what the receipt says, reverted → closed, not on chain → closed once it is old enough.
Between its timers it watches the owed channels on chain (`withdrawal_due`): a payer's pending withdrawal
takes the free escrow once its delay ends, so such a channel is claimed at once, not at the next claim tick
(the scheme's mandatory rule), and the mirror takes the new balance and withdrawal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

import ledger
from app.runtime import faultpoints
from ledger import batch_recovery, channels
from ledger.batch_recovery import Outcome, Pending
from ledger.channels import OwedChannel
from payments import EvmRpc, PaymentError
from payments.evm.batch import BATCH_SETTLEMENT_ADDRESS, BatchOutcome, BatchSettlementChain, ClaimRow
from payments.evm.batch.abi import SETTLED, contract_logs
from payments.evm.batch.wire import ChannelConfig

log = logging.getLogger("worldgate.batch.settler")
# A hash written ahead that no node knows this long after was never sent (the process died before sending, or
# the node refused it): closed as dropped. Younger, it may still be on its way.
DROP_AFTER_S = 600.0
WITHDRAWAL_WATCH_S = 30.0  # how often owed channels are read for a pending withdrawal (the delay is 900 s at least)


@dataclass(frozen=True, slots=True)
class FlushReport:
    claims: int  # claim transactions sent
    channels: int  # channel rows claimed
    claimed_atomic: int
    settled_atomic: int
    transactions: tuple[str, ...]
    recovered: tuple[str, ...] = ()  # earlier claims and sweeps found landed and recorded now


@dataclass(frozen=True, slots=True)
class Recovery:
    recorded: tuple[str, ...]
    sweep_in_flight: bool  # a sweep is still waiting in the mempool: no second one is sent meanwhile


def claim_row(owed: OwedChannel) -> ClaimRow:
    config = owed.config
    return ClaimRow(
        config=ChannelConfig(
            payer=config.payer,
            payer_authorizer=config.payer_authorizer,
            receiver=config.receiver,
            receiver_authorizer=config.receiver_authorizer,
            token=config.token,
            withdraw_delay=config.withdraw_delay,
            salt=config.salt,
        ),
        max_claimable=owed.signed_max_atomic,
        signature=bytes.fromhex(owed.signature.removeprefix("0x")),
        total_claimed=owed.claimable_atomic,
    )


def _quantity(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) and value.startswith("0x") else 0


class BatchSettler:
    def __init__(
        self,
        pool: asyncpg.Pool,
        chain: BatchSettlementChain,
        *,
        pay_to: str,
        token: str,
        rows_per_claim: int,
        claim_interval_s: float,
        settle_interval_s: float,
        rpc: EvmRpc,
    ) -> None:
        self.pool = pool
        self.chain = chain
        self.network = chain.network
        self.pay_to = pay_to.lower()
        self.token = token.lower()
        self.rows_per_claim = max(1, rows_per_claim)
        self.claim_interval_s = claim_interval_s
        self.settle_interval_s = settle_interval_s
        self.rpc = rpc  # receipts of our own claims and sweeps, when recovering
        self.watch_s = WITHDRAWAL_WATCH_S

    # ---- write-ahead ----

    def _ahead(self, kind: str, rows: dict[str, Any], written: list[str]) -> Callable[[str], Awaitable[None]]:
        async def write(tx_hash: str) -> None:
            await batch_recovery.write_ahead(self.pool, tx_hash, self.network, kind, rows)
            written.append(tx_hash.lower())

        return write

    async def _close(self, outcome: BatchOutcome, written: list[str]) -> None:
        """After a send: every hash written but not the transaction's own was refused by the node (the relayer
        signs again only then), so never on chain; a definite failure closes the transaction's own too. A
        pending one stays open for `recover`."""
        own = outcome.transaction.lower()
        for tx_hash in written:
            if tx_hash != own:
                await batch_recovery.resolve(self.pool, tx_hash, Outcome.DROPPED)
        if own and not outcome.success and not outcome.pending:
            await batch_recovery.resolve(self.pool, own, Outcome.FAILED)

    # ---- claim and sweep ----

    async def claim(self) -> tuple[int, int, str | None]:
        """One claim transaction for up to `rows_per_claim` owed channels: (channels, amount, tx hash)."""
        owed = [
            o
            for o in await channels.owed_channels(self.pool, self.network, self.rows_per_claim)
            if o.claimable_atomic > o.claimed_atomic
        ]
        if not owed:
            return 0, 0, None
        totals = [(o.config.channel_id, o.claimable_atomic) for o in owed]
        written: list[str] = []
        ahead = self._ahead("claim", batch_recovery.claim_rows(totals), written)
        outcome = await self.chain.claim([claim_row(o) for o in owed], on_broadcast=ahead)
        await self._close(outcome, written)
        if not outcome.success:
            log.warning("claim not landed", extra={"reason": outcome.reason, "tx": outcome.transaction})
            return 0, 0, None
        faultpoints.reach("batch_after_claim")  # on chain, not yet recorded
        await channels.record_claim(
            self.pool, self.network, totals, outcome.transaction, outcome.gas_cost_atomic or 0, outcome.gas_payer
        )
        await batch_recovery.resolve(self.pool, outcome.transaction, Outcome.RECORDED)
        log.info("vouchers claimed", extra={"channels": len(owed), "tx": outcome.transaction})
        return len(owed), sum(o.claimable_atomic - o.claimed_atomic for o in owed), outcome.transaction

    async def settle(self) -> tuple[int, str | None]:
        """Sweep what is claimed to payTo in one transfer: (amount, tx hash); (0, None) when nothing is owed."""
        written: list[str] = []
        ahead = self._ahead("settle", batch_recovery.sweep_rows(self.pay_to, self.token), written)
        outcome = await self.chain.settle(self.pay_to, self.token, on_broadcast=ahead)
        await self._close(outcome, written)
        if not outcome.success:
            if outcome.sent:
                log.warning("sweep not landed", extra={"reason": outcome.reason, "tx": outcome.transaction})
            return 0, None
        faultpoints.reach("batch_after_sweep")  # on chain, not yet recorded
        await self._record_sweep(outcome.transaction, outcome.amount, outcome.gas_cost_atomic, outcome.gas_payer)
        log.info("claims swept to payTo", extra={"amount": outcome.amount, "tx": outcome.transaction})
        return outcome.amount, outcome.transaction

    async def _record_sweep(self, tx_hash: str, amount: int, gas_cost_atomic: int | None, relayer: str | None) -> None:
        await channels.record_settlement(
            self.pool, self.network, self.pay_to, self.token, tx_hash, amount, gas_cost_atomic or 0, relayer
        )
        await batch_recovery.resolve(self.pool, tx_hash, Outcome.RECORDED)

    # ---- recovery ----

    async def recover(self) -> Recovery:
        """Settle the transactions written ahead and never resolved (a settler died, or a receipt was late):
        claims first, then sweeps, so a sweep is booked against the claims it paid out. One that cannot be
        booked (the books disagree with the chain) is logged and left open for the operator."""
        recorded: list[str] = []
        in_flight = False
        for pending in await batch_recovery.open_pending(self.pool, self.network):
            try:
                landed = await self._resolve(pending)
            except ledger.LedgerIntegrityError as exc:
                log.error("landed batch transaction not bookable", extra={"tx": pending.tx_hash, "detail": str(exc)})
                continue
            except PaymentError as exc:  # the node cannot say now: a sweep may be on its way, send no other
                log.warning("pending batch transaction unread", extra={"tx": pending.tx_hash, "detail": str(exc)})
                landed = "in_flight"
            if landed == "recorded":
                recorded.append(pending.tx_hash)
            in_flight = in_flight or (landed == "in_flight" and pending.kind == "settle")
        if recorded:
            log.warning("batch transactions recorded late", extra={"transactions": recorded})
        return Recovery(tuple(recorded), in_flight)

    async def _resolve(self, pending: Pending) -> str:
        """One pending transaction by its receipt: recorded, failed, dropped, in_flight or unknown (left open)."""
        receipt = await self.rpc.get_transaction_receipt(pending.tx_hash)
        if receipt is None:
            if await self.rpc.get_transaction(pending.tx_hash) is not None:
                return "in_flight"
            if pending.age.total_seconds() < DROP_AFTER_S:
                return "unknown"
            await batch_recovery.resolve(self.pool, pending.tx_hash, Outcome.DROPPED)
            return "dropped"
        if _quantity(receipt.get("status")) != 1:
            await batch_recovery.resolve(self.pool, pending.tx_hash, Outcome.FAILED)
            return "failed"
        gas = _quantity(receipt.get("gasUsed")) * _quantity(receipt.get("effectiveGasPrice"))
        relayer = str(receipt.get("from", "")).lower() or None
        if pending.kind == "claim":
            # landed: the contract holds every row's total now (it skips none above what it had)
            await channels.record_claim(self.pool, self.network, pending.claims, pending.tx_hash, gas, relayer)
            await batch_recovery.resolve(self.pool, pending.tx_hash, Outcome.RECORDED)
            return "recorded"
        receiver = "0x" + "00" * 12 + pending.rows["receiver"][2:]  # the Settled event's indexed receiver
        logs = contract_logs(receipt, BATCH_SETTLEMENT_ADDRESS)
        amount = sum(entry.amount for entry in logs if entry.event == SETTLED and entry.key == receiver)
        await channels.record_settlement(
            self.pool, self.network, pending.rows["receiver"], pending.rows["token"], pending.tx_hash, amount, gas,
            relayer,
        )  # fmt: skip
        await batch_recovery.resolve(self.pool, pending.tx_hash, Outcome.RECORDED)
        return "recorded"

    # ---- withdrawals ----

    async def withdrawal_due(self) -> bool:
        """Whether an owed channel has a withdrawal pending on chain with something still claimable: claim now.
        Reads the owed channels (one eth_call) and mirrors their balance and withdrawal; their claimed total is
        left to the claims we record (reconcile compares the two)."""
        owed = await channels.owed_channels(self.pool, self.network, self.rows_per_claim)
        if not owed:
            return False
        due = False
        for row, chain in zip(owed, await self.chain.read_channels([o.config.channel_id for o in owed]), strict=True):
            seen = (chain.balance, chain.withdraw_requested_at)
            if seen != (row.balance_atomic, row.withdraw_requested_at):
                await channels.mirror_channel(
                    self.pool,
                    row.config,
                    balance_atomic=chain.balance,
                    claimed_atomic=row.claimed_atomic,
                    withdraw_requested_at=chain.withdraw_requested_at,
                    withdrawal_amount_atomic=chain.withdrawal_amount,
                    refund_nonce=chain.refund_nonce,
                )
            # what a claim would take now: the claimable total (charged, less refunds) within the balance as it is
            due = due or (
                chain.withdraw_requested_at > 0 and min(row.claimable_atomic, chain.balance) > chain.total_claimed
            )
        if due:
            log.warning("a withdrawal is pending on an owed channel: claiming now", extra={"network": self.network})
        return due

    # ---- the timers ----

    async def flush(self) -> FlushReport:
        """Settle what is pending, claim everything owed, then sweep: what `worldgate batch flush` runs."""
        async with ledger.locks.advisory_lock(self.pool, f"batch-settler:{self.network}"):
            recovery = await self.recover()
            claims = rows = claimed = 0
            sent: list[str] = []
            while True:
                count, amount, tx = await self.claim()
                if tx is None:
                    break
                claims, rows, claimed = claims + 1, rows + count, claimed + amount
                sent.append(tx)
            settled = 0
            if not recovery.sweep_in_flight:
                settled, tx = await self.settle()
                if tx:
                    sent.append(tx)
            return FlushReport(claims, rows, claimed, settled, tuple(sent), recovery.recorded)

    async def run(self) -> None:
        """The timers: a claim every claim interval, a sweep every settle interval, and what a dead settler left
        pending settled first."""
        loop = asyncio.get_running_loop()
        next_settle = loop.time() + self.settle_interval_s
        next_claim = loop.time() + self.claim_interval_s
        while True:
            await asyncio.sleep(max(0.0, min(next_claim - loop.time(), self.watch_s)))
            try:
                if loop.time() < next_claim and not await self.withdrawal_due():
                    continue  # between claim ticks, only a pending withdrawal claims
                next_claim = loop.time() + self.claim_interval_s
                async with ledger.locks.try_advisory_lock(self.pool, f"batch-settler:{self.network}") as held:
                    if not held:
                        continue
                    recovery = await self.recover()
                    while (await self.claim())[2] is not None:
                        pass
                    if loop.time() >= next_settle and not recovery.sweep_in_flight:
                        next_settle = loop.time() + self.settle_interval_s
                        await self.settle()
            except (ledger.LedgerError, PaymentError) as exc:  # the next tick tries again; say why this one stopped
                log.warning("batch settler run stopped", extra={"network": self.network, "detail": str(exc)})
