"""Pay for a worldgate resource on the devnet, with the payer keys `make serve` wrote to devnet.json.

    .venv/bin/python docs/examples/pay.py                                    # Base (EVM), official x402 client
    .venv/bin/python docs/examples/pay.py "/v1/streams/static.volcanoes?lat=37.5&lon=15&radius_km=300"
    .venv/bin/python docs/examples/pay.py --network solana /v1/streams/static.capitals

On Base it uses the official x402 Python client (x402Client, EthAccountSigner, x402HttpxClient).
On Solana it builds the same transaction the official clients build, with worldgate's paying side
(payments/svm/client.py), since the official `x402[svm]` client needs a venv of its own
(`make install` builds one: see the README). WORLDGATE_URL overrides http://127.0.0.1:8402.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from solders.hash import Hash
from solders.keypair import Keypair
from x402 import x402Client
from x402.http.clients import x402HttpxClient
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact.register import register_exact_evm_client

from payments.codec import PaymentRequirements, convert
from payments.svm.client import pay


async def pay_on_base(url: str, devnet: dict[str, Any]) -> httpx.Response:
    client = x402Client()  # default spend controls: known USDC assets only, at most $1 a payment
    register_exact_evm_client(client, EthAccountSigner(Account.from_key(devnet["evm"]["payer_private_key"])))
    async with x402HttpxClient(client) as http:
        return await http.get(url)


async def pay_on_solana(url: str, devnet: dict[str, Any]) -> httpx.Response:
    svm = devnet["svm"]
    async with httpx.AsyncClient(timeout=30) as http:
        quote = await http.get(url)
        if quote.status_code != 402:
            return quote
        accepts = json.loads(base64.b64decode(quote.headers["payment-required"]))["accepts"]
        [offer] = [o for o in accepts if o["network"] == svm["network"]]
        latest = await http.post(svm["rpc_url"], json={"jsonrpc": "2.0", "id": 1, "method": "getLatestBlockhash"})
        blockhash = Hash.from_string(latest.json()["result"]["value"]["blockhash"])
        payer = Keypair.from_base58_string(svm["payer_secret_key"])
        header = pay(payer, convert(offer, PaymentRequirements), blockhash=blockhash)
        return await http.get(url, headers={"PAYMENT-SIGNATURE": header})


def main() -> int:
    parser = argparse.ArgumentParser(description="Pay for a worldgate resource on the devnet.")
    parser.add_argument("path", nargs="?", default="/v1/streams/static.capitals")
    parser.add_argument("--network", choices=["base", "solana"], default="base")
    args = parser.parse_args()
    devnet = json.loads(Path(os.environ.get("WORLDGATE_STATE_DIR", ".worldgate"), "devnet.json").read_text())
    url = os.environ.get("WORLDGATE_URL", "http://127.0.0.1:8402") + args.path
    paying = pay_on_base if args.network == "base" else pay_on_solana
    answer = asyncio.run(paying(url, devnet))
    print(f"HTTP {answer.status_code}")
    if "payment-response" in answer.headers:
        print("PAYMENT-RESPONSE:", json.dumps(json.loads(base64.b64decode(answer.headers["payment-response"]))))
    try:  # the whole body: pipe it to `head` or `jq` to see less
        print(json.dumps(answer.json(), indent=2, ensure_ascii=False))
    except ValueError:
        print(answer.text)
    return 0 if answer.status_code == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
