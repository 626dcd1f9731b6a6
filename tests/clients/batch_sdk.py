"""The official x402 Python client's `batch-settlement` scheme, driven line by line (run in .venv-x402-svm).

Unmodified SDK code throughout: x402ClientSync with BatchSettlementEvmScheme registered, our headers
decoded with the SDK's own helpers, its payment-response hook run on our PAYMENT-RESPONSE.
Protocol: one JSON command per stdin line, one JSON answer per stdout line.
  {"op": "init", "key": …, "paymentRequired": <PAYMENT-REQUIRED header>, "rpcUrl"?: …}
  {"op": "pay"}                                  → {"header": <PAYMENT-SIGNATURE header>}
  {"op": "response", "paymentResponse": <header>} → {"channel": local channel state}
  {"op": "corrective", "paymentRequired": <header>} → {"recovered": bool, "channel": …}
Errors answer {"error": "<type>: <message>"} and the loop goes on.
"""

import json
import sys
from typing import Any

from eth_account import Account
from x402 import x402ClientSync
from x402.http.utils import (
    decode_payment_required_header,
    decode_payment_response_header,
    encode_payment_signature_header,
)
from x402.mechanisms.evm.batch_settlement.client import (
    BatchSettlementEvmScheme,
    BatchSettlementEvmSchemeOptions,
    InMemoryClientChannelStorage,
    compute_channel_id,
)
from x402.schemas import PaymentResponseContext


class Session:
    def __init__(self, command: dict[str, Any]) -> None:
        account = Account.from_key(command["key"])
        if command.get("rpcUrl"):  # a signer that reads the chain: what corrective-402 recovery needs
            from x402.mechanisms.evm.signers import EthAccountSignerWithRPC

            signer: Any = EthAccountSignerWithRPC(account, command["rpcUrl"])
        else:
            signer = account
        self.storage = InMemoryClientChannelStorage()
        self.scheme = BatchSettlementEvmScheme(signer, BatchSettlementEvmSchemeOptions(storage=self.storage))
        self.payment_required = decode_payment_required_header(command["paymentRequired"])
        self.client = x402ClientSync()
        for accept in self.payment_required.accepts:
            self.client.register(accept.network, self.scheme)
        self.payload: Any = None

    def channel(self) -> dict[str, Any] | None:
        requirements = self.payment_required.accepts[0]
        config = self.scheme.build_channel_config(requirements)
        state = self.storage.get(compute_channel_id(config, str(requirements.network)))
        return None if state is None else state.to_dict()

    def pay(self) -> dict[str, Any]:
        self.payload = self.client.create_payment_payload(self.payment_required)
        return {"header": encode_payment_signature_header(self.payload)}

    def response(self, header: str) -> dict[str, Any]:
        settle = decode_payment_response_header(header)
        context = PaymentResponseContext(
            payment_payload=self.payload, requirements=self.payload.accepted, settle_response=settle
        )
        self.client.handle_payment_response(context)
        return {"channel": self.channel()}

    def corrective(self, header: str) -> dict[str, Any]:
        recovered = self.scheme.process_corrective_payment_required(decode_payment_required_header(header))
        return {"recovered": bool(recovered), "channel": self.channel()}


def main() -> None:
    session: Session | None = None
    for line in sys.stdin:
        command = json.loads(line)
        try:
            if command["op"] == "init":
                session = Session(command)
                answer: dict[str, Any] = {"ok": True}
            elif session is None:
                raise RuntimeError("init first")
            elif command["op"] == "pay":
                answer = session.pay()
            elif command["op"] == "response":
                answer = session.response(command["paymentResponse"])
            elif command["op"] == "corrective":
                answer = session.corrective(command["paymentRequired"])
            else:
                raise ValueError(f"unknown op {command['op']!r}")
        except Exception as exc:  # reported to the test, which decides
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)


main()
