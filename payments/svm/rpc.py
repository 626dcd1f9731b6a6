"""Solana JSON-RPC: the handful of calls verification and settlement make, over the shared transport."""

from __future__ import annotations

from typing import Any

from ..jsonrpc import JsonRpc, RpcError, RpcUnavailable

__all__ = ["RpcError", "RpcUnavailable", "SvmRpc"]

COMMITMENT = "confirmed"


class SvmRpc(JsonRpc):
    async def latest_blockhash(self) -> tuple[str, int]:
        answer = await self.request("getLatestBlockhash", [{"commitment": COMMITMENT}])
        value = _value(answer, "getLatestBlockhash")
        return str(value["blockhash"]), int(value["lastValidBlockHeight"])

    async def is_blockhash_valid(self, blockhash: str) -> bool:
        return bool(
            _value(await self.request("isBlockhashValid", [blockhash, {"commitment": COMMITMENT}]), "isBlockhashValid")
        )

    async def simulate(self, transaction_b64: str, *, sig_verify: bool) -> dict[str, Any]:
        config = {
            "encoding": "base64",
            "sigVerify": sig_verify,
            "replaceRecentBlockhash": False,
            "commitment": COMMITMENT,
        }
        value = _value(await self.request("simulateTransaction", [transaction_b64, config]), "simulateTransaction")
        if not isinstance(value, dict):
            raise RpcUnavailable("simulateTransaction: the node answered something that is not a simulation")
        return value

    async def send(self, transaction_b64: str) -> str:
        config = {"encoding": "base64", "skipPreflight": False, "preflightCommitment": COMMITMENT, "maxRetries": 5}
        signature = await self.request("sendTransaction", [transaction_b64, config])
        if not isinstance(signature, str):
            raise RpcUnavailable("sendTransaction: the node answered something that is not a signature")
        return signature

    async def signature_status(self, signature: str) -> dict[str, Any] | None:
        answer = await self.request("getSignatureStatuses", [[signature], {"searchTransactionHistory": True}])
        statuses = _value(answer, "getSignatureStatuses")
        if not isinstance(statuses, list) or len(statuses) != 1:
            raise RpcUnavailable("getSignatureStatuses: the node answered a malformed status list")
        status = statuses[0]
        return status if isinstance(status, dict) else None

    async def transaction(self, signature: str) -> dict[str, Any] | None:
        config = {"encoding": "base64", "commitment": COMMITMENT, "maxSupportedTransactionVersion": 0}
        answer = await self.request("getTransaction", [signature, config])
        return answer if isinstance(answer, dict) else None


def _value(answer: Any, method: str) -> Any:
    if not isinstance(answer, dict) or "value" not in answer:
        raise RpcUnavailable(f"{method}: the node answered without a value")
    return answer["value"]
