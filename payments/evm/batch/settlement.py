"""The server's own batch-settlement transactions: deposits it submits for payers, claims of many vouchers
in one transaction, the sweep to payTo, and cooperative refunds.

The receiverAuthorizer key signs ClaimBatch and Refund digests; the relayer's key only pays gas (the
contract does not restrict who sends these calls). Every outcome carries the receipt's gas and the
touched channels re-read at the receipt's block.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from eth_account import Account

from ...errors import Reason, Refusal
from ...outcomes import OnBroadcast
from ..codes import CodeCache
from ..relayer import Relayer
from ..rpc import EvmRpc
from .abi import CLAIMED as CLAIMED_TOPIC
from .abi import (
    DEPOSITED,
    REFUNDED,
    SETTLED,
    ClaimRow,
    claim_with_signature_call,
    contract_logs,
    deposit_call,
    erc3009_collector_data,
    multicall_call,
    refund_with_signature_call,
    settle_call,
)
from .chain import BatchChainReader
from .digests import BATCH_SETTLEMENT_ADDRESS, ERC3009_DEPOSIT_COLLECTOR_ADDRESS, claim_batch_digest, refund_digest
from .outcomes import BatchOutcome, ChannelSnapshot, DepositCheck
from .sender import RECEIPT_TIMEOUT_S_DEFAULT, TransactionSender
from .vouchers import CheckedVoucher, config_channel_id

VALID_BEFORE_BUFFER_S = 6  # as the reference: the deposit must still be valid when it lands
# claimWithSignature gas on our devnet contracts: ~51k for the call and ~25k per row (measured: 1 row 76k,
# 3 rows 107k, 30 rows 770k). A relayer signs with one gas limit, so it bounds the rows per claim.
CLAIM_GAS_BASE = 55_000
CLAIM_GAS_PER_ROW = 26_000


def rows_per_claim(gas_limit: int) -> int:
    """How many rows one claim may carry under a relayer's gas limit, with a margin; at least 1."""
    return max(1, (gas_limit - CLAIM_GAS_BASE) // CLAIM_GAS_PER_ROW)


@dataclass(frozen=True, slots=True)
class RefundPlan:
    """A cooperative refund as it will be sent: the claim row, the amount refunded and the nonce it is signed for."""

    row: ClaimRow
    amount: int
    nonce: int  # the channel's refundNonce when read: the contract takes the refund only under it
    claims: bool  # the row claims more than the chain had claimed: the multicall claims it first
    channel: ChannelSnapshot  # the state it was planned on


class AuthorizerSigner(Protocol):
    """The receiverAuthorizer: signs ClaimBatch and Refund digests (a KMS can stand in for a local key)."""

    address: str  # lowercase 0x hex

    def sign_digest(self, digest: bytes) -> bytes: ...


class LocalAuthorizer:
    def __init__(self, private_key: str) -> None:
        self._account = Account.from_key(private_key)
        self.address = str(self._account.address).lower()

    def __repr__(self) -> str:  # never the key
        return f"LocalAuthorizer(address={self.address})"

    def sign_digest(self, digest: bytes) -> bytes:
        return bytes(self._account.unsafe_sign_hash(digest).signature)


class BatchSettlementChain(BatchChainReader):
    """Reads, deposit checks and the server's transactions on one EVM network. Holds no channel state: the
    caller serializes work per channel (a refund reads refundNonce live and signs it at once)."""

    def __init__(
        self,
        network: str,
        rpc: EvmRpc,
        relayer: Relayer | None,
        authorizer: AuthorizerSigner | None,
        *,
        receipt_timeout_s: float = RECEIPT_TIMEOUT_S_DEFAULT,
        clock: Callable[[], float] = time.time,
        codes: CodeCache | None = None,
    ) -> None:
        super().__init__(network, rpc, codes=codes)
        self.authorizer = authorizer
        self.relayer_address = relayer.address if relayer else None
        self._sender = TransactionSender(network, rpc, relayer, receipt_timeout_s=receipt_timeout_s)
        self._clock = clock

    def _refused(self, refusal: Refusal) -> BatchOutcome:
        return BatchOutcome(False, self.network, reason=refusal.reason, message=refusal.message)

    async def _settled(
        self, outcome: BatchOutcome, receipt: dict[str, Any], event: str, keys: Sequence[str]
    ) -> BatchOutcome:
        """The outcome with the amount the contract's events moved and the channels at the receipt's block."""
        logs = [log for log in contract_logs(receipt, BATCH_SETTLEMENT_ADDRESS) if log.event == event]
        amount = sum(log.amount for log in logs if log.key in keys)
        channels = () if event == SETTLED else await self.read_many(keys, hex(outcome.block_number or 0))
        return dataclasses.replace(outcome, amount=amount, channels=channels)

    # ---- deposit ----

    async def verify_deposit(
        self, checked: CheckedVoucher, *, min_deposit: int | None = None
    ) -> DepositCheck | Refusal:
        """The reference's deposit checks: window, ERC-3009 signature, voucher, payer balance, ceiling, simulation."""
        terms = checked.deposit
        if terms is None:
            return Refusal(Reason.BATCH_DEPOSIT_PAYLOAD, f"a {checked.kind} payload carries no deposit")
        if min_deposit is not None and terms.amount < min_deposit:
            return Refusal(Reason.BATCH_DEPOSIT_BELOW_MIN_DEPOSIT, f"the deposit is below {min_deposit}")
        now = int(self._clock())
        if terms.valid_before < now + VALID_BEFORE_BUFFER_S:
            return Refusal(Reason.BATCH_VALID_BEFORE, "the deposit authorization expires too soon (validBefore)")
        if terms.valid_after > now:
            return Refusal(Reason.BATCH_VALID_AFTER, "the deposit authorization is not valid yet (validAfter)")
        if not terms.signer_verified and not await self.signed_by(checked.payer, terms.digest, terms.signature):
            return Refusal(
                Reason.BATCH_RECEIVE_AUTHORIZATION_SIGNATURE,
                "the ReceiveWithAuthorization (to the ERC-3009 collector) is not signed by the payer",
            )
        refused = await self.voucher_signature_refusal(checked)
        if refused is not None:
            return refused
        channel, payer_balance = await self.channel_and_balance(checked.channel_id, checked.config.token, checked.payer)
        if payer_balance < terms.amount:
            return Refusal(Reason.BATCH_INSUFFICIENT_BALANCE, "the payer's balance is below the deposit")
        if checked.max_claimable > channel.balance + terms.amount:
            return Refusal(Reason.BATCH_CUMULATIVE_EXCEEDS_BALANCE, "the voucher exceeds the escrow after the deposit")
        if checked.max_claimable <= channel.total_claimed:
            return Refusal(Reason.BATCH_CUMULATIVE_BELOW_CLAIMED, "the voucher is not above what is already claimed")
        estimate = await self._sender.estimate(self._deposit_call(checked))
        if isinstance(estimate, str):
            return Refusal(Reason.BATCH_DEPOSIT_SIMULATION_FAILED, f"deposit simulation reverted: {estimate}")
        return DepositCheck(channel, terms.amount, payer_balance, estimate)

    def _deposit_call(self, checked: CheckedVoucher) -> bytes:
        terms = checked.deposit
        assert terms is not None
        data = erc3009_collector_data(terms.valid_after, terms.valid_before, terms.salt, terms.signature)
        return deposit_call(checked.config, terms.amount, ERC3009_DEPOSIT_COLLECTOR_ADDRESS, data)

    async def deposit(
        self, checked: CheckedVoucher, *, min_deposit: int | None = None, on_broadcast: OnBroadcast | None = None
    ) -> BatchOutcome:
        """Re-verify, then send `deposit(config, amount, collector, abi.encode(validAfter, validBefore, salt, sig))`.
        Success means the contract's Deposited event shows exactly the amount; `channels` holds the new state."""
        verified = await self.verify_deposit(checked, min_deposit=min_deposit)
        if isinstance(verified, Refusal):
            return self._refused(verified)
        outcome, receipt = await self._sender.send(
            self._deposit_call(checked),
            simulation_failed=Reason.BATCH_DEPOSIT_SIMULATION_FAILED,
            transaction_failed=Reason.BATCH_DEPOSIT_TRANSACTION_FAILED,
            on_broadcast=on_broadcast,
            gas_estimate=verified.gas_estimate,
        )
        if receipt is None:
            return outcome
        settled = await self._settled(outcome, receipt, DEPOSITED, [checked.channel_id])
        if settled.amount != verified.amount:
            message = f"the receipt shows {settled.amount} deposited, not {verified.amount}"
            return dataclasses.replace(
                settled, success=False, reason=Reason.BATCH_DEPOSIT_TRANSACTION_FAILED, message=message
            )
        return settled

    # ---- claim and settle ----

    def _claim_refusal(self, rows: Sequence[ClaimRow]) -> Refusal | None:
        if self.authorizer is None:
            return Refusal(Reason.BATCH_AUTHORIZER_NOT_CONFIGURED, "no receiverAuthorizer key")
        if not rows:
            return Refusal(Reason.BATCH_CLAIM_PAYLOAD, "nothing to claim")
        for row in rows:
            if row.config.receiver_authorizer.lower() != self.authorizer.address:
                return Refusal(Reason.BATCH_AUTHORIZER_ADDRESS_MISMATCH, "a row's receiverAuthorizer is not our key")
            if not 0 < row.total_claimed <= row.max_claimable:
                return Refusal(Reason.BATCH_CLAIM_PAYLOAD, "each row must claim 0 < totalClaimed ≤ its voucher")
        return None

    def _claim_call(self, rows: Sequence[ClaimRow]) -> bytes:
        assert self.authorizer is not None
        entries = [(config_channel_id(r.config, self.chain_id), r.max_claimable, r.total_claimed) for r in rows]
        signature = self.authorizer.sign_digest(claim_batch_digest(self.chain_id, entries))
        return claim_with_signature_call(rows, signature)

    async def claim(self, rows: Sequence[ClaimRow], on_broadcast: OnBroadcast | None = None) -> BatchOutcome:
        """`claimWithSignature` for all rows in ONE transaction. A row at or below the on-chain total is skipped by
        the contract; one bad row reverts all (the simulation names it before anything is sent)."""
        refused = self._claim_refusal(rows)
        if refused is not None:
            return self._refused(refused)
        outcome, receipt = await self._sender.send(
            self._claim_call(rows),
            simulation_failed=Reason.BATCH_CLAIM_SIMULATION_FAILED,
            transaction_failed=Reason.BATCH_CLAIM_TRANSACTION_FAILED,
            on_broadcast=on_broadcast,
        )
        if receipt is None:
            return outcome
        keys = ["0x" + config_channel_id(r.config, self.chain_id).hex() for r in rows]
        return await self._settled(outcome, receipt, CLAIMED_TOPIC, keys)

    async def settle(self, receiver: str, token: str, on_broadcast: OnBroadcast | None = None) -> BatchOutcome:
        """Sweep everything claimed for `receiver` in `token` to it, in one transfer."""
        claimed, settled = await self.read_receiver(receiver, token)
        if claimed <= settled:
            return self._refused(Refusal(Reason.BATCH_NOTHING_TO_SETTLE, "nothing claimed is left to settle"))
        outcome, receipt = await self._sender.send(
            settle_call(receiver, token),
            simulation_failed=Reason.BATCH_SETTLE_SIMULATION_FAILED,
            transaction_failed=Reason.BATCH_SETTLE_TRANSACTION_FAILED,
            on_broadcast=on_broadcast,
        )
        if receipt is None:
            return outcome
        return await self._settled(outcome, receipt, SETTLED, ["0x" + "00" * 12 + receiver.lower()[2:]])

    # ---- cooperative refund ----

    def plan_refund(self, row: ClaimRow, amount: int | None, channel: ChannelSnapshot) -> RefundPlan | Refusal:
        """What a cooperative refund of `channel` (read just now) sends: the claim of what was charged
        (`row.total_claimed`, with the payer's voucher) when the chain has claimed less, and the refund of the rest,
        or of `amount` of it, under the live refundNonce. Never refunds past `balance - charged`: that would hand
        back unclaimed earnings."""
        if self.authorizer is None:
            return Refusal(Reason.BATCH_AUTHORIZER_NOT_CONFIGURED, "no receiverAuthorizer key")
        if row.config.receiver_authorizer.lower() != self.authorizer.address:
            return Refusal(Reason.BATCH_AUTHORIZER_ADDRESS_MISMATCH, "the channel's authorizer is not ours")
        channel_id = config_channel_id(row.config, self.chain_id)
        if "0x" + channel_id.hex() != channel.channel_id.lower():
            return Refusal(Reason.BATCH_REFUND_PAYLOAD, "the snapshot is of another channel")
        remainder = channel.balance - max(row.total_claimed, channel.total_claimed)
        if remainder <= 0:
            return Refusal(Reason.BATCH_REFUND_NO_BALANCE, "nothing is left to refund")
        if amount is not None and not 0 < amount <= remainder:
            return Refusal(Reason.BATCH_REFUND_AMOUNT_INVALID, f"refund must be in (0, {remainder}]")
        claims = row.total_claimed > channel.total_claimed
        if claims and row.total_claimed > row.max_claimable:
            return Refusal(Reason.BATCH_REFUND_PAYLOAD, "the voucher does not cover what was charged")
        return RefundPlan(row, remainder if amount is None else amount, channel.refund_nonce, claims, channel)

    async def send_refund(self, plan: RefundPlan, on_broadcast: OnBroadcast | None = None) -> BatchOutcome:
        """multicall(claimWithSignature, refundWithSignature) as planned (the refund alone when nothing is left to
        claim). Success: `amount` is what the Refunded event paid, `channels` the channel at the receipt's block."""
        assert self.authorizer is not None
        channel_id = config_channel_id(plan.row.config, self.chain_id)
        signature = self.authorizer.sign_digest(refund_digest(self.chain_id, channel_id, plan.nonce, plan.amount))
        calls = [refund_with_signature_call(plan.row.config, plan.amount, plan.nonce, signature)]
        if plan.claims:
            calls.insert(0, self._claim_call([plan.row]))
        outcome, receipt = await self._sender.send(
            calls[0] if len(calls) == 1 else multicall_call(calls),
            simulation_failed=Reason.BATCH_REFUND_SIMULATION_FAILED,
            transaction_failed=Reason.BATCH_REFUND_TRANSACTION_FAILED,
            on_broadcast=on_broadcast,
        )
        if receipt is None:
            return outcome
        return await self._settled(outcome, receipt, REFUNDED, ["0x" + channel_id.hex()])

    async def refund(
        self, row: ClaimRow, amount: int | None = None, on_broadcast: OnBroadcast | None = None
    ) -> BatchOutcome:
        """Read the channel, plan the refund (`plan_refund`) and send it."""
        channel = await self.read_channel(config_channel_id(row.config, self.chain_id))
        plan = self.plan_refund(row, amount, channel)
        if isinstance(plan, Refusal):
            return self._refused(plan)
        return await self.send_refund(plan, on_broadcast)
