"""The payment inputs the fault suite's property tests and fuzzer draw from: this suite's own route (one EVM and
one Solana offer, as the gateway would quote them, payers that cannot pay), valid payment documents for it, and
hypothesis strategies of arbitrary and near-valid headers, JSON values, documents and query strings
(tests/faults/test_decoder_properties.py at the function level, tests/faults/test_hostile_inputs.py over HTTP).
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from hypothesis import strategies as st
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair

from app.mcp.server import PAYMENT_META_KEY
from app.usecases.binding import bind_header, bind_object
from payments import NetworkTerms, build_offer
from payments.evm.client import sign_transfer_authorization
from payments.svm.client import encode_transaction, payment_instructions, sign_partially

NOW = int(time.time())
FULLWIDTH_1000 = "\uff11\uff10\uff10\uff10"  # what int() reads as 1000 and a regex of [0-9] does not


# ---- the suite's own route: one EVM and one SVM offer, as the gateway would quote them ----

EVM_NETWORK = "eip155:84532"
EVM_ASSET = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
EVM_PAY_TO = "0xe5849773dB9157b0138D83bA4A8F3924805D1250"
EVM_KEY = "0x" + "decade" * 10 + "dec0"  # an unfunded key: its payments can only be refused
SVM_NETWORK = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"
SVM_MINT = "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU"
FEE_PAYER = Keypair.from_seed(bytes(32))
SVM_PAY_TO = Keypair.from_seed(bytes([1] * 32)).pubkey()
SVM_PAYER = Keypair.from_seed(bytes([2] * 32))
PRICE = 1000

EVM_OFFER = build_offer(NetworkTerms(EVM_NETWORK, EVM_ASSET, EVM_PAY_TO, extra={"name": "USDC", "version": "2"}), PRICE)
SVM_OFFER = build_offer(
    NetworkTerms(SVM_NETWORK, SVM_MINT, str(SVM_PAY_TO), extra={"feePayer": str(FEE_PAYER.pubkey())}), PRICE
)
OFFERS = (EVM_OFFER, SVM_OFFER)
BYTES_MAX = 8192  # the gateway's default cap on a payment header (and on an MCP payment object)


def bind_gate(header: bytes, version: int) -> Any:
    """What the gate binds a payment header with."""
    return bind_header(header, version, OFFERS, bytes_max=BYTES_MAX)


def bind_mcp(raw: Any) -> Any:
    """What the MCP server binds `_meta["x402/payment"]` with."""
    return bind_object(raw, OFFERS, bytes_max=BYTES_MAX, name=PAYMENT_META_KEY)


def _evm_payload(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"to": EVM_PAY_TO, "value": PRICE, "valid_before": NOW + 3600, **overrides}
    return sign_transfer_authorization(EVM_KEY, chain_id=84532, asset=EVM_ASSET, name="USDC", version="2", **fields)


def _svm_transaction(instructions: list[Instruction] | None = None) -> str:
    instructions = instructions or payment_instructions(SVM_PAYER.pubkey(), SVM_OFFER, decimals=6)
    return encode_transaction(sign_partially(FEE_PAYER.pubkey(), [SVM_PAYER], instructions, Hash.default()))


EVM_PAYLOAD = _evm_payload()
EVM_ACCEPTED = {
    "scheme": "exact",
    "network": EVM_NETWORK,
    "amount": str(PRICE),
    "asset": EVM_ASSET,
    "payTo": EVM_PAY_TO,
    "maxTimeoutSeconds": 300,
    "extra": {"name": "USDC", "version": "2"},
}
SVM_ACCEPTED = {
    "scheme": "exact",
    "network": SVM_NETWORK,
    "amount": str(PRICE),
    "asset": SVM_MINT,
    "payTo": str(SVM_PAY_TO),
    "maxTimeoutSeconds": 300,
    "extra": {"feePayer": str(FEE_PAYER.pubkey())},
}
SVM_TRANSACTION = _svm_transaction()


def valid_documents() -> list[dict[str, Any]]:
    return [
        {"x402Version": 2, "accepted": EVM_ACCEPTED, "payload": EVM_PAYLOAD},
        {"x402Version": 2, "accepted": SVM_ACCEPTED, "payload": {"transaction": SVM_TRANSACTION}},
        {
            "x402Version": 2,
            "accepted": EVM_ACCEPTED,
            "payload": EVM_PAYLOAD,
            "extensions": {"payment-identifier": {"info": {"id": "a" * 20}}},
        },
    ]


def b64_text(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# ---- strategies ----

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**300), max_value=2**300)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(["", "0", "-1", "1e3", "0x10", "00001000", "1000.0", str(2**256), "\u200b1000", FULLWIDTH_1000])
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=25,
)
# the keys a hostile client would aim at, at every level of the document
_PATHS = [
    ["x402Version"],
    ["accepted"],
    ["accepted", "scheme"],
    ["accepted", "network"],
    ["accepted", "amount"],
    ["accepted", "asset"],
    ["accepted", "payTo"],
    ["accepted", "maxTimeoutSeconds"],
    ["accepted", "extra"],
    ["accepted", "extra", "name"],
    ["accepted", "extra", "feePayer"],
    ["payload"],
    ["payload", "signature"],
    ["payload", "transaction"],
    ["payload", "authorization"],
    ["payload", "authorization", "from"],
    ["payload", "authorization", "to"],
    ["payload", "authorization", "value"],
    ["payload", "authorization", "validAfter"],
    ["payload", "authorization", "validBefore"],
    ["payload", "authorization", "nonce"],
    ["extensions"],
    ["extensions", "payment-identifier"],
    ["extensions", "payment-identifier", "info"],
    ["extensions", "payment-identifier", "info", "id"],
    ["resource"],
    ["scheme"],
    ["network"],
]


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": [value]}
    return value


hostile_values = json_values | st.builds(nested, st.integers(1, 400))


@st.composite
def near_valid_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid payment document with one to three fields replaced or deleted."""
    document = json.loads(json.dumps(draw(st.sampled_from(valid_documents()))))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_PATHS))
        target = document
        for step in path[:-1]:
            if not isinstance(target.get(step), dict):
                target[step] = {}
            target = target[step]
        if draw(st.booleans()) and path[-1] in target:
            del target[path[-1]]
        else:
            target[path[-1]] = draw(hostile_values)
    return document


def encode_document(document: Any) -> str:
    return b64_text(json.dumps(document).encode())


@st.composite
def headers(draw: st.DrawFn) -> str:
    """Header values: arbitrary text, base64 of bytes or of any JSON, near-valid documents, and valid
    headers with characters edited."""
    kind = draw(st.integers(0, 6))
    if kind == 6:  # a valid document's JSON with bytes edited: bad UTF-8 inside strings, broken syntax
        raw = bytearray(json.dumps(draw(st.sampled_from(valid_documents()))).encode())
        for _ in range(draw(st.integers(1, 3))):
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
        return b64_text(bytes(raw))
    if kind == 0:
        return draw(st.text(alphabet=st.characters(max_codepoint=255), max_size=200))
    if kind == 1:
        return b64_text(draw(st.binary(max_size=300)))
    if kind == 2:
        return encode_document(draw(json_values))
    if kind == 3:
        return encode_document(draw(near_valid_documents()))
    header = list(encode_document(draw(st.sampled_from(valid_documents()))))
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(header) - 1))
        edit = draw(st.sampled_from(["replace", "delete", "insert"]))
        char = draw(st.characters(max_codepoint=255))
        if edit == "replace":
            header[index] = char
        elif edit == "delete":
            del header[index]
        else:
            header.insert(index, char)
    return "".join(header) if kind == 4 else "".join(header)[: draw(st.integers(0, len(header)))]


# ---- query strings ----

query_texts = st.one_of(
    st.text(max_size=30),
    st.floats().map(str),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.sampled_from(
        ["", "nan", "inf", "-inf", "1e309", "0x10", "1_000", "²", "١٢", FULLWIDTH_1000, "1" * 5000, "9" * 400,
         "0,0,1,1", "1,2,3", "-180,-90,180,90", "10,10,-10,-10", "a,b,c,d", " 5 ", "5\x00", "\u200b5", "-0", "+5"]
    ),
)  # fmt: skip
