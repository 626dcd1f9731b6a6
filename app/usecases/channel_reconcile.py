"""Reconcile's batch-settlement part: each channel the ledger knows, against the contract; each recorded claim and
sweep, against its receipt.

Per channel, on every network whose auditor reads the contract (`BatchAuditor`), at one block:
- the contract's totalClaimed must equal what our recorded claims add up to (`channel_claimed_mismatch`; a claim
  written ahead and not yet recorded may put the chain ahead: left pending for the settler's recovery) and
  never exceed what we charged, less sales refunded before their claim (`channel_claimed_above_charged`);
- the balance must cover that (`channel_underfunded`: accepted sales that can no longer be claimed);
- a pending withdrawal must not be able to finalize before our next claim of what is owed
  (`channel_withdrawal_unclaimed`; the settler claims such a channel at once when it sees it, see
  batch_settler.py);
then the mirror takes the chain's balance, withdrawal and refund nonce (and its claimed total when it agrees
with our records: an unrecorded claim stays visible). A finding the chain no longer shows is resolved.
Per recorded claim or sweep not yet confirmed: its receipt exists and succeeded, and a sweep paid what was
recorded (`batch_tx_not_on_chain`, `batch_tx_reverted`, `batch_tx_mismatch`). Channels whose sales were made
on an earlier instance of a local devnet are not asked about (a reset, not a loss).

The settler's lock is held while a network's channels are compared, so no claim lands between the chain read
and the ledger read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import asyncpg

from ledger import channel_audit, channels, locks
from ledger.channel_audit import ChannelBooks, RecordedTx
from ledger.epochs import Epochs
from payments import PaymentError
from payments.audit import CONFIRMED, MISMATCH, NOT_FOUND, PENDING, REVERTED
from payments.evm.batch.outcomes import ChannelSnapshot
from payments.evm.batch.reads import BatchAuditor, ChainHead

log = logging.getLogger("worldgate.reconcile.channels")
PAGE = 500  # channels read from the ledger (and, in multicalls of 100, from the chain) at a time
TX_PER_RUN = 500  # recorded claims and sweeps whose receipts are read per run and network
CLAIM_LEAD_S = 120  # a claim must land this long before a withdrawal may finalize
LOCK_WAIT_S = 30.0  # how long to wait for a settler that holds the network's lock (a flush in progress)
TX_KINDS = {REVERTED: "batch_tx_reverted", MISMATCH: "batch_tx_mismatch", NOT_FOUND: "batch_tx_not_on_chain"}


@dataclass
class ChannelTally:
    channels: int = 0  # channels compared with the contract
    transactions: int = 0  # claim and sweep receipts read
    flagged: int = 0
    left_pending: int = 0
    chain_reset: int = 0
    errors: list[str] = field(default_factory=list)


def settler_lock(network: str) -> str:
    """The batch settler's advisory lock name (app/usecases/batch_settler.py)."""
    return f"batch-settler:{network}"


class ChannelReconciler:
    def __init__(self, pool: asyncpg.Pool, auditors: Mapping[str, BatchAuditor], *, claim_interval_s: float) -> None:
        self.pool = pool
        self.auditors = dict(auditors)
        self.claim_interval_s = claim_interval_s  # the settler's: how long until its next claim, at most

    async def run(self, epochs: Epochs, *, every_tx: bool) -> ChannelTally:
        tally = ChannelTally()
        for network, auditor in sorted(self.auditors.items()):
            try:
                if not await self._locked(network, auditor, epochs, tally):
                    tally.errors.append(f"{network}: the batch settler kept its lock; channels not checked this run")
                await self._transactions(network, auditor, every_tx, tally)
            except PaymentError as exc:  # the contract answered nothing readable: say so, go on with the next network
                tally.errors.append(f"{network}: {exc}")
        return tally

    async def _locked(self, network: str, auditor: BatchAuditor, epochs: Epochs, tally: ChannelTally) -> bool:
        deadline = asyncio.get_running_loop().time() + LOCK_WAIT_S
        while True:
            async with locks.try_advisory_lock(self.pool, settler_lock(network)) as held:
                if held:
                    await self._channels(network, auditor, epochs, tally)
                    return True
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(0.5)

    # ---- channels ----

    async def _channels(self, network: str, auditor: BatchAuditor, epochs: Epochs, tally: ChannelTally) -> None:
        after = ""
        while books := await channel_audit.channel_books(self.pool, network, after, PAGE):
            after = books[-1].channel_id
            current = [b for b in books if not epochs.from_earlier_instance(network, b.last_payment_id or 0)]
            tally.chain_reset += len(books) - len(current)
            if not current:
                continue
            head = await auditor.head()
            snapshots = await auditor.channels([b.channel_id for b in current], head)
            for book, snapshot in zip(current, snapshots, strict=True):
                await self._channel(book, snapshot, head, tally)

    def _judge(self, book: ChannelBooks, chain: ChannelSnapshot, head: ChainHead) -> dict[str, tuple[str, int]]:
        """The findings this channel raises now: kind → (detail, amount at stake)."""
        raised: dict[str, tuple[str, int]] = {}
        name = f"channel {book.channel_id}"
        claimed, recorded, charged = chain.total_claimed, book.recorded_claimed_atomic, book.due_atomic
        refunded = f" ({book.refunded_atomic} of it refunded before a claim)" if book.refunded_atomic else ""
        if claimed > charged:
            raised["channel_claimed_above_charged"] = (
                f"{name}: the contract shows {claimed} claimed; we charged {book.charged_atomic} in all{refunded}",
                claimed - charged,
            )
        elif claimed != recorded:
            detail = (
                f"{name}: the contract shows {claimed} claimed; the claims the ledger recorded add up to {recorded}"
            )
            raised["channel_claimed_mismatch"] = (detail, abs(claimed - recorded))
        if charged > chain.balance:
            raised["channel_underfunded"] = (
                f"{name}: we are owed {charged}{refunded}, the contract holds a balance of {chain.balance} "
                f"({claimed} claimed): {charged - chain.balance} of accepted sales cannot be claimed",
                charged - chain.balance,
            )
        owed = charged - claimed
        if chain.withdraw_requested_at and owed > 0:
            finalize_at = chain.withdraw_requested_at + book.config.withdraw_delay
            if finalize_at <= head.timestamp + self.claim_interval_s + CLAIM_LEAD_S:
                raised["channel_withdrawal_unclaimed"] = (
                    f"{name}: a withdrawal of {chain.withdrawal_amount} may finalize at {finalize_at} (chain time "
                    f"now {head.timestamp}) with {owed} owed and not claimed: claim it now (`worldgate batch flush`)",
                    owed,
                )
        return raised

    async def _channel(self, book: ChannelBooks, chain: ChannelSnapshot, head: ChainHead, tally: ChannelTally) -> None:
        tally.channels += 1
        raised = self._judge(book, chain, head)
        ahead = raised.get("channel_claimed_mismatch") and book.claim_in_flight
        if ahead and chain.total_claimed > book.recorded_claimed_atomic:
            del raised["channel_claimed_mismatch"]  # our own claim, landed and not yet recorded: recovery books it
            tally.left_pending += 1
        network = book.config.network
        for kind, (detail, amount) in raised.items():
            if await channel_audit.flag_channel(self.pool, book.channel_id, network, kind, detail, amount):
                tally.flagged += 1
                log.warning("reconcile finding", extra={"channel_id": book.channel_id, "kind": kind, "detail": detail})
        agreed = tuple(k for k in channel_audit.CHANNEL_KINDS if k not in raised)
        await channel_audit.resolve_channel(self.pool, book.channel_id, agreed)
        await self._mirror(book, chain, claims_agree=chain.total_claimed == book.recorded_claimed_atomic)

    async def _mirror(self, book: ChannelBooks, chain: ChannelSnapshot, *, claims_agree: bool) -> None:
        """The mirror takes the chain's state; its claimed total only when our records agree (the mirror never
        lowers it, and raising it to an unrecorded claim would hide the channel from the settler's claims)."""
        claimed = chain.total_claimed if claims_agree else book.claimed_atomic
        mirrored = (book.balance_atomic, book.claimed_atomic, book.withdraw_requested_at)
        mirrored += (book.withdrawal_amount_atomic, book.refund_nonce)
        seen = (chain.balance, claimed, chain.withdraw_requested_at, chain.withdrawal_amount, chain.refund_nonce)
        if mirrored == seen:
            return
        await channels.mirror_channel(
            self.pool,
            book.config,
            balance_atomic=chain.balance,
            claimed_atomic=claimed,
            withdraw_requested_at=chain.withdraw_requested_at,
            withdrawal_amount_atomic=chain.withdrawal_amount,
            refund_nonce=chain.refund_nonce,
        )

    # ---- recorded claims and sweeps ----

    async def _transactions(self, network: str, auditor: BatchAuditor, every: bool, tally: ChannelTally) -> None:
        for tx in await channel_audit.transactions_to_check(self.pool, network, every=every, limit=TX_PER_RUN):
            await self._transaction(tx, auditor, tally)

    async def _transaction(self, tx: RecordedTx, auditor: BatchAuditor, tally: ChannelTally) -> None:
        tally.transactions += 1
        reading = await auditor.batch_transaction(
            tx.tx_hash, kind=tx.kind, receiver=tx.receiver, amount_atomic=tx.amount_atomic
        )
        if reading.status == PENDING:
            tally.left_pending += 1
            return
        kind = TX_KINDS.get(reading.status)
        if reading.status == CONFIRMED:
            await channel_audit.transaction_checked(self.pool, tx.tx_hash, reading.block or 0)
        elif kind is not None:
            detail = f"recorded {tx.kind} {tx.tx_hash}: {reading.detail}"
            if await channel_audit.flag_transaction(self.pool, tx.tx_hash, tx.network, kind, detail, tx.amount_atomic):
                tally.flagged += 1
                log.warning("reconcile finding", extra={"tx": tx.tx_hash, "kind": kind, "detail": detail})
        agreed = tuple(k for k in channel_audit.TX_KINDS if k != kind)
        await channel_audit.resolve_transaction(self.pool, tx.tx_hash, agreed)
