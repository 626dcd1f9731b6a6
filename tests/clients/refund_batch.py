"""The official x402 Python client paying a worldgate URL by batch-settlement vouchers, then asking for its
cooperative refund (run in .venv-x402-svm, where the SDK lives). Unmodified SDK: BatchSettlementEvmScheme
registered for the network, requests sent through its httpx client, then `scheme.refund(url, RefundOptions(amount))`
(which probes the URL for its 402 and sends a `refund` payload with a zero-charge voucher).
Input from the environment: URL, PAYER_KEY (0x hex), NETWORK (CAIP-2), COUNT (requests paid first, may be 0),
REFUND ("all" or an atomic amount), AFTER (requests paid after the refund; default 0), RPC_URL (optional: a signer
that reads the chain, as a process that starts without the channel's state needs to refund at all).
Output: one JSON line {statuses, refund: SettleResponse as JSON or null, error: the refund's error or null,
channel_before, channel_after: the client's local channel records before and after the refund, after: statuses
of the requests paid after it}.
"""

import asyncio
import json
import os

from eth_account import Account
from x402 import x402Client
from x402.http.clients import x402HttpxClient
from x402.mechanisms.evm.batch_settlement.client import (
    BatchSettlementEvmScheme,
    BatchSettlementEvmSchemeOptions,
    InMemoryClientChannelStorage,
)
from x402.mechanisms.evm.batch_settlement.client.refund import RefundOptions
from x402.mechanisms.evm.signers import EthAccountSignerWithRPC


def records(storage: InMemoryClientChannelStorage) -> dict:
    return {key: value.to_dict() for key, value in storage._channels.items()}  # the test reads the records


async def main() -> None:
    client = x402Client()
    account = Account.from_key(os.environ["PAYER_KEY"])
    signer = EthAccountSignerWithRPC(account, os.environ["RPC_URL"]) if os.environ.get("RPC_URL") else account
    storage = InMemoryClientChannelStorage()
    scheme = BatchSettlementEvmScheme(signer, BatchSettlementEvmSchemeOptions(storage=storage))
    client.register(os.environ["NETWORK"], scheme)
    statuses = []
    async with x402HttpxClient(client) as http:
        for _ in range(int(os.environ["COUNT"])):
            statuses.append((await http.get(os.environ["URL"])).status_code)
    before = records(storage)
    amount = None if os.environ["REFUND"] == "all" else os.environ["REFUND"]
    refund, error = None, None
    try:
        settled = await asyncio.to_thread(scheme.refund, os.environ["URL"], RefundOptions(amount=amount))
        refund = settled.model_dump(by_alias=True, exclude_none=True)
    except Exception as exc:  # reported to the test, which decides
        error = f"{type(exc).__name__}: {exc}"
    after_refund = records(storage)
    later = []
    async with x402HttpxClient(client) as http:
        for _ in range(int(os.environ.get("AFTER", "0"))):
            later.append((await http.get(os.environ["URL"])).status_code)
    print(
        json.dumps(
            {
                "statuses": statuses,
                "refund": refund,
                "error": error,
                "channel_before": before,
                "channel_after": after_refund,
                "after": later,
            }
        )
    )


asyncio.run(main())
