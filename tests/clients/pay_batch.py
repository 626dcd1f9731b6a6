"""The official x402 Python client paying a worldgate URL N times by batch-settlement vouchers (run in
.venv-x402-svm, where the SDK lives). Unmodified SDK: BatchSettlementEvmScheme registered for the network,
requests sent through its httpx client, which deposits on the first request and signs a voucher per request.
Input from the environment: URL, PAYER_KEY (0x hex), NETWORK (CAIP-2), COUNT, and RPC_URL (optional: with it
the signer can read the chain, which the SDK needs to re-base on a corrective 402 when it starts without
the channel's state, as every new process of this script does for a channel it opened before).
Output: one JSON line {statuses, responses: [decoded PAYMENT-RESPONSE...], last_body}.
"""

import asyncio
import base64
import json
import os

from eth_account import Account
from x402 import x402Client
from x402.http.clients import x402HttpxClient
from x402.mechanisms.evm.batch_settlement.client import BatchSettlementEvmScheme, BatchSettlementEvmSchemeOptions
from x402.mechanisms.evm.signers import EthAccountSignerWithRPC


async def main() -> None:
    client = x402Client()
    account = Account.from_key(os.environ["PAYER_KEY"])
    signer = EthAccountSignerWithRPC(account, os.environ["RPC_URL"]) if os.environ.get("RPC_URL") else account
    scheme = BatchSettlementEvmScheme(signer, BatchSettlementEvmSchemeOptions())
    client.register(os.environ["NETWORK"], scheme)
    statuses, responses, body = [], [], ""
    async with x402HttpxClient(client) as http:
        for _ in range(int(os.environ["COUNT"])):
            answer = await http.get(os.environ["URL"])
            statuses.append(answer.status_code)
            header = answer.headers.get("payment-response")
            responses.append(json.loads(base64.b64decode(header)) if header else None)
            body = answer.text
    print(json.dumps({"statuses": statuses, "responses": responses, "last_body": body}))


asyncio.run(main())
