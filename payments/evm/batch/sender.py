"""Sending the settlement contract's transactions: preflight, broadcast through the relayer, await the receipt.

The preflight is `eth_estimateGas` from the relayer's address: it simulates the call (a revert comes
back with the contract's custom error, named here) and says whether the relayer's fixed gas limit
covers it. A claim's gas grows with its rows; the relayer signs every transaction with one limit, so
a call over it is refused before anything is signed rather than sent to run out of gas.
"""

from __future__ import annotations

from typing import Any

from ...errors import Reason
from ...outcomes import OnBroadcast
from ..relayer import Relayer
from ..rpc import EvmRpc, RpcError, RpcUnavailable, revert_reason
from .abi import custom_error
from .digests import BATCH_SETTLEMENT_ADDRESS
from .outcomes import BatchOutcome

RECEIPT_TIMEOUT_S_DEFAULT = 30.0


def describe_revert(error: RpcError) -> str:
    """The contract's custom error name, else the Error(string) text, else the node's message."""
    return (custom_error(error.data) or revert_reason(error) or error.rpc_message)[:200]


def _quantity(value: Any) -> int:
    try:
        return int(value, 16) if isinstance(value, str) else 0
    except ValueError:
        return 0


class TransactionSender:
    """One network's relayer and RPC, used for the settlement contract's calls only."""

    def __init__(
        self,
        network: str,
        rpc: EvmRpc,
        relayer: Relayer | None,
        *,
        receipt_timeout_s: float = RECEIPT_TIMEOUT_S_DEFAULT,
    ) -> None:
        self.network = network
        self._rpc = rpc
        self._relayer = relayer
        self._receipt_timeout_s = receipt_timeout_s

    @property
    def address(self) -> str | None:
        return self._relayer.address if self._relayer else None

    async def estimate(self, data: bytes) -> int | str:
        """Gas the call would use now, or why it would revert. Raises RpcUnavailable if the node cannot say."""
        call: dict[str, str] = {"to": BATCH_SETTLEMENT_ADDRESS, "data": "0x" + data.hex()}
        if self._relayer is not None:
            call["from"] = self._relayer.address
        try:
            return _quantity(await self._rpc.request("eth_estimateGas", [call]))
        except RpcError as exc:
            return describe_revert(exc)

    def _failed(self, reason: str, message: str, **fields: Any) -> tuple[BatchOutcome, None]:
        return BatchOutcome(False, self.network, reason=reason, message=message, **fields), None

    async def send(
        self,
        data: bytes,
        *,
        simulation_failed: str,
        transaction_failed: str,
        on_broadcast: OnBroadcast | None = None,
        gas_estimate: int | None = None,
    ) -> tuple[BatchOutcome, dict[str, Any] | None]:
        """Preflight (unless the caller just ran it: `gas_estimate`), sign, broadcast, await the receipt.
        The receipt comes back only for a mined success."""
        if self._relayer is None:
            return self._failed(Reason.UNEXPECTED_SETTLE_ERROR, "no relayer key for batch settlement")
        estimate = await self.estimate(data) if gas_estimate is None else gas_estimate
        if isinstance(estimate, str):
            return self._failed(simulation_failed, f"simulation reverted: {estimate}")
        if estimate > self._relayer.gas_limit:
            return self._failed(
                Reason.UNEXPECTED_SETTLE_ERROR,
                f"the call needs ~{estimate} gas, over the relayer's limit of {self._relayer.gas_limit}",
            )
        broadcast: list[str] = []

        async def remember(tx_hash: str) -> None:
            if on_broadcast is not None:
                await on_broadcast(tx_hash)
            broadcast.append(tx_hash)

        lost = ""
        try:
            tx_hash = await self._relayer.submit(BATCH_SETTLEMENT_ADDRESS, data, remember)
        except RpcError as exc:
            return self._failed(transaction_failed, f"the node refused the transaction: {describe_revert(exc)}")
        except RpcUnavailable as exc:
            if not broadcast:
                return self._failed(Reason.UNEXPECTED_SETTLE_ERROR, exc.message)
            tx_hash, lost = broadcast[-1], f"{exc.message}; "  # maybe sent: ask for its receipt all the same
        receipt = await self._rpc.await_receipt(tx_hash, self._receipt_timeout_s)
        if receipt is None:
            message = f"{lost}no receipt within {self._receipt_timeout_s:.0f} s"
            return self._failed(Reason.SETTLEMENT_PENDING, message, transaction=tx_hash)
        gas_used = _quantity(receipt.get("gasUsed"))
        mined = BatchOutcome(
            _quantity(receipt.get("status")) == 1,
            self.network,
            transaction=tx_hash,
            gas_used=gas_used,
            gas_cost_atomic=gas_used * _quantity(receipt.get("effectiveGasPrice")),
            gas_payer=str(receipt.get("from", "")).lower() or None,
            block_number=_quantity(receipt.get("blockNumber")),
        )
        if not mined.success:
            return BatchOutcome(
                False,
                self.network,
                tx_hash,
                transaction_failed,
                "the transaction reverted",
                gas_used=mined.gas_used,
                gas_cost_atomic=mined.gas_cost_atomic,
                gas_payer=mined.gas_payer,
                block_number=mined.block_number,
            ), None
        return mined, receipt
