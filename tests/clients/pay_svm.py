"""The official x402 Python client paying a worldgate URL on Solana, run in its own venv (.venv-x402-svm).

x402[svm] pins solana<0.40, which cannot share a venv with worldgate's solders 0.29, hence the
separate interpreter. Input from the environment: URL, RPC_URL, PAYER_SECRET (base58).
Output: one JSON line {status, paymentResponse, body}.
"""

import asyncio
import base64
import json
import os

from x402 import x402Client
from x402.http.clients import x402HttpxClient
from x402.mechanisms.svm import KeypairSigner
from x402.mechanisms.svm.exact.register import register_exact_svm_client


async def main() -> None:
    client = x402Client()  # default spend controls: devnet USDC is a known asset
    register_exact_svm_client(
        client, KeypairSigner.from_base58(os.environ["PAYER_SECRET"]), rpc_url=os.environ["RPC_URL"]
    )
    async with x402HttpxClient(client) as http:
        response = await http.get(os.environ["URL"])
    header = response.headers.get("payment-response")
    receipt = json.loads(base64.b64decode(header)) if header else None
    print(json.dumps({"status": response.status_code, "paymentResponse": receipt, "body": response.text}))


asyncio.run(main())
