"""The official x402 Python client retrying a voucher request whose answer it never got (run in .venv-x402-svm).

Unmodified SDK: BatchSettlementEvmScheme registered for the network; a payment-identifier id added by a client
extension (`register_extension`: the SDK's hook for it; the id is the same on every payload it enriches, as a
caller retrying one request keeps its id). The first request goes through the SDK's httpx client (the deposit
and the first voucher). The second is built with the SDK's `create_payment_payload` and sent twice: the first
answer is "lost" (never handed back to the client, so its channel state does not move) and the SDK builds the
retry's payload from that state. Input from the environment: URL, PAYER_KEY, NETWORK, PAYMENT_ID (optional).
Output: one JSON line {opened, statuses, same_voucher, same_body, same_receipt, receipts}.
"""

import asyncio
import base64
import json
import os

import httpx
from eth_account import Account
from x402 import x402Client
from x402.extensions.payment_identifier import append_payment_identifier_to_extensions
from x402.http.clients import x402HttpxClient
from x402.http.utils import decode_payment_required_header, encode_payment_signature_header
from x402.mechanisms.evm.batch_settlement.client import BatchSettlementEvmScheme, BatchSettlementEvmSchemeOptions


class RetryId:
    """A client extension putting one payment-identifier id on the payloads of a request and its retries."""

    key = "payment-identifier"

    def __init__(self, payment_id: str) -> None:
        self.payment_id = payment_id

    def enrich_payment_payload(self, payload, payment_required):  # the SDK calls it after the scheme built `payload`
        extensions = dict(payment_required.extensions or {})
        append_payment_identifier_to_extensions(extensions, self.payment_id)
        return payload.model_copy(update={"extensions": {**(payload.extensions or {}), **extensions}})


async def main() -> None:
    url = os.environ["URL"]
    client = x402Client()
    scheme = BatchSettlementEvmScheme(Account.from_key(os.environ["PAYER_KEY"]), BatchSettlementEvmSchemeOptions())
    client.register(os.environ["NETWORK"], scheme)
    async with x402HttpxClient(client) as paid:
        opened = (await paid.get(url)).status_code
    if os.environ.get("PAYMENT_ID"):
        client.register_extension(RetryId(os.environ["PAYMENT_ID"]))
    async with httpx.AsyncClient(timeout=30) as http:
        quote = await http.get(url)
        required = decode_payment_required_header(quote.headers["payment-required"])
        payload = await client.create_payment_payload(required)
        first = await http.get(url, headers={"PAYMENT-SIGNATURE": encode_payment_signature_header(payload)})
        retry_payload = await client.create_payment_payload(required)  # the first answer never reached the client
        retry = await http.get(url, headers={"PAYMENT-SIGNATURE": encode_payment_signature_header(retry_payload)})
    receipts = [a.headers.get("payment-response") for a in (first, retry)]
    print(
        json.dumps(
            {
                "opened": opened,
                "statuses": [first.status_code, retry.status_code],
                "same_voucher": payload.payload == retry_payload.payload,
                "same_body": first.content == retry.content,
                "same_receipt": receipts[0] == receipts[1],
                "receipts": [json.loads(base64.b64decode(r)) if r else None for r in receipts],
            }
        )
    )


asyncio.run(main())
