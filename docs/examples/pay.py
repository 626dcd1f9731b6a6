"""Pay for a worldgate resource with the official x402 Python client, using the devnet's payer key.

    .venv/bin/python docs/examples/pay.py                      # GET /v1/streams/static.capitals
    .venv/bin/python docs/examples/pay.py /v1/streams/static.volcanoes?lat=37.5&lon=15&radius_km=300

Reads .worldgate/devnet.json (written by `make serve`); WORLDGATE_URL overrides http://127.0.0.1:8402.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from pathlib import Path

from eth_account import Account
from x402 import x402Client
from x402.http.clients import x402HttpxClient
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact.register import register_exact_evm_client


async def main(path: str, devnet: dict[str, str]) -> int:
    client = x402Client()  # default spend controls: known USDC assets only, at most $1 a payment
    register_exact_evm_client(client, EthAccountSigner(Account.from_key(devnet["payer_private_key"])))
    async with x402HttpxClient(client) as http:
        answer = await http.get(os.environ.get("WORLDGATE_URL", "http://127.0.0.1:8402") + path)
    print(f"HTTP {answer.status_code}")
    if "payment-response" in answer.headers:
        print("PAYMENT-RESPONSE:", json.dumps(json.loads(base64.b64decode(answer.headers["payment-response"]))))
    print(json.dumps(answer.json(), indent=2, ensure_ascii=False)[:2000])
    return 0 if answer.status_code == 200 else 1


if __name__ == "__main__":
    state = Path(os.environ.get("WORLDGATE_STATE_DIR", ".worldgate"), "devnet.json")
    devnet = json.loads(state.read_text())["evm"]
    sys.exit(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "/v1/streams/static.capitals", devnet)))
