"""What the chain side of batch settlement returns: channel snapshots and transaction outcomes.

Plain values. `gas_used` is read from each receipt so a bench can set one claim of N vouchers
against N `exact` settlements.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import Reason
from .wire import ChannelStateExtra, channel_state_extra


@dataclass(frozen=True, slots=True)
class ChannelSnapshot:
    """A channel's on-chain state at one block (all three getters read in one eth_call)."""

    channel_id: str  # lowercase 0x hex
    balance: int  # deposits minus withdrawals and refunds; claims never reduce it
    total_claimed: int
    withdrawal_amount: int  # a pending timed withdrawal, 0 if none
    withdraw_requested_at: int  # unix s, 0 if none
    refund_nonce: int
    block: str  # the block it was read at ("latest" or 0x number)

    @property
    def exists(self) -> bool:
        return self.balance > 0

    @property
    def free_escrow(self) -> int:
        return self.balance - self.total_claimed

    def state_extra(self, charged_cumulative: int | None) -> ChannelStateExtra:
        """`channelState` for a PAYMENT-RESPONSE or a corrective 402."""
        return channel_state_extra(
            self.channel_id,
            self.balance,
            self.total_claimed,
            self.withdraw_requested_at,
            self.refund_nonce,
            charged_cumulative,
        )


@dataclass(frozen=True, slots=True)
class DepositCheck:
    """A deposit that passed every check, the simulation included, and the state it was checked against."""

    channel: ChannelSnapshot  # before the deposit
    amount: int
    payer_balance: int  # the payer's token balance
    gas_estimate: int


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """One batch-settlement transaction (deposit, claim, settle or refund), or why none was sent."""

    success: bool
    network: str
    transaction: str = ""
    reason: str | None = None
    message: str | None = None
    amount: int = 0  # what the contract's own events say moved: deposited, claimed, settled or refunded
    gas_used: int | None = None
    gas_cost_atomic: int | None = None  # wei: gasUsed * effectiveGasPrice
    gas_payer: str | None = None
    block_number: int | None = None
    channels: tuple[ChannelSnapshot, ...] = ()  # the touched channels, read at the receipt's block

    @property
    def pending(self) -> bool:
        """Broadcast, outcome unknown: never re-broadcast; reconcile from `transaction`."""
        return not self.success and self.reason == Reason.SETTLEMENT_PENDING

    @property
    def sent(self) -> bool:
        return bool(self.transaction)
