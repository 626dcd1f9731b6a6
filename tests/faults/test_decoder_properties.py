"""Property tests of every decoder a payment or a query passes through, at the function level.

For arbitrary and near-valid inputs each decoder must answer with a structured refusal (a `Refusal` whose
reason is one of `payments.errors.Reason` and whose status is 400 or 402, or a `Problem` with a 4xx status)
or a valid parse, and never raise. The decoders, in the order a request meets them:

- the binding both transports use (`app/usecases/binding.py`: `bind_header` for the gate, `bind_object` for the
  MCP server): size cap, base64, JSON, the v1/v2 wire models, x402Version, `accepted` matched to the route's
  offers (`payments/codec.py`, `payments/offers.py`, `payments/schemes.py`);
- the payment-identifier extension (`app/usecases/retries.py`);
- EVM `exact` inspection (`payments/evm/exact.py`, `payments/evm/eip712.py`): authorization fields,
  signature parsing and recovery;
- SVM `exact` inspection (`payments/svm/exact.py`): transaction decoding and its layout checks, on random
  bytes, on byte-mutated reference transactions and on transactions compiled from random instructions;
- the query rules (`adapters/filters.py`, `app/usecases/queries.py`) and the MCP tools' argument mapping
  (`app/mcp/server.py: tool_params`).

Runs are reproducible (`derandomize=True`) and write no example database (`database=None`). The HTTP-level
counterpart (fewer examples, against the running gateway) is in test_hostile_inputs.py.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.null_signer import NullSigner
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from adapters import STREAMS, FilterError, parse_filters, parse_max_age
from app.mcp.server import STREAM_SCHEMA, WORLD_SCHEMA, tool_params
from app.usecases.queries import Problem, StreamQuery, WorldQuery, stream_query, world_query
from app.usecases.retries import payment_identifier
from payments import PaymentPayload, PaymentPayloadV1, Refusal, inspect
from payments.codec import decode_payment_header
from payments.errors import Reason
from payments.evm.eip712 import recover_address, split_signature
from payments.evm.exact import parse_authorization
from payments.outcomes import Inspection
from payments.svm import programs
from payments.svm.client import encode_transaction, payment_instructions

from .payment_strategies import (
    EVM_NETWORK,
    EVM_OFFER,
    EVM_PAYLOAD,
    FEE_PAYER,
    FULLWIDTH_1000,
    NOW,
    OFFERS,
    PRICE,
    SVM_MINT,
    SVM_OFFER,
    SVM_PAY_TO,
    SVM_PAYER,
    SVM_TRANSACTION,
    b64_text,
    bind_gate,
    bind_mcp,
    encode_document,
    headers,
    hostile_values,
    json_values,
    near_valid_documents,
    nested,
    query_texts,
    valid_documents,
)

REASONS = frozenset(Reason)
FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,  # reproducible in CI
    database=None,  # and no .hypothesis directory written into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
FUZZ_JSON = settings(FUZZ, max_examples=200)  # the examples that build big JSON documents: slower to generate

# ---- assertions ----


def assert_refusal(result: object) -> None:
    assert isinstance(result, Refusal), result
    assert result.reason in REASONS, result
    assert result.status in (400, 402)
    assert result.message and "Traceback" not in result.message


def run_bound(bound: Any) -> Any:
    """What the checkout runs on a bound payment before any I/O: the payment-identifier, then inspection."""
    if isinstance(bound, Refusal):
        return bound
    payload, offer = bound
    assert offer in OFFERS  # always our copy, never the client's
    payment_id = payment_identifier(payload)
    if isinstance(payment_id, Refusal):
        return payment_id
    assert payment_id is None or isinstance(payment_id, str)
    return inspect(payload, offer, NOW)


def assert_refused_or_inspected(result: object) -> None:
    if isinstance(result, Inspection):
        assert result.amount_atomic == PRICE and result.payment_key
        return
    assert_refusal(result)


# ---- the payment header decoders ----


@FUZZ_JSON
@given(header=st.text(max_size=300) | headers(), version=st.sampled_from([1, 2]))
def test_the_header_codec_refuses_or_decodes(header: str, version: int) -> None:
    result = decode_payment_header(header, version=version)
    if isinstance(result, Refusal):
        assert_refusal(result)
    else:
        assert isinstance(result, PaymentPayload if version == 2 else PaymentPayloadV1)
        assert result.x402_version == version


@FUZZ_JSON
@given(header=headers())
def test_the_gate_binds_and_inspects_v2_headers_or_refuses(header: str) -> None:
    bound = bind_gate(header.encode("latin-1"), 2)
    assert_refused_or_inspected(run_bound(bound))


@st.composite
def v1_headers(draw: st.DrawFn) -> str:
    """v1 X-PAYMENT documents (scheme and network instead of `accepted`), valid or mutated."""
    document: dict[str, Any] = {
        "x402Version": 1,
        "scheme": "exact",
        "network": draw(st.sampled_from(["base-sepolia", EVM_NETWORK, "base", "solana-devnet", "BASE-SEPOLIA", ""])),
        "payload": json.loads(json.dumps(EVM_PAYLOAD)) if draw(st.booleans()) else {"transaction": SVM_TRANSACTION},
    }
    for _ in range(draw(st.integers(0, 2))):
        path = draw(st.sampled_from([["x402Version"], ["scheme"], ["network"], ["payload"], ["payload", "signature"]]))
        target = document
        for step in path[:-1]:
            target = target.setdefault(step, {}) if isinstance(target.get(step), dict) else target
        target[path[-1]] = draw(hostile_values)
    return encode_document(document)


@FUZZ_JSON
@given(header=v1_headers() | headers())
def test_the_gate_binds_and_inspects_v1_headers_or_refuses(header: str) -> None:
    bound = bind_gate(header.encode("latin-1"), 1)
    assert_refused_or_inspected(run_bound(bound))


@FUZZ_JSON
@given(raw=json_values | near_valid_documents() | st.builds(nested, st.integers(1, 3000)))
def test_the_mcp_payment_meta_binds_and_inspects_or_refuses(raw: Any) -> None:
    bound = bind_mcp(raw)
    assert_refused_or_inspected(run_bound(bound))


def test_the_valid_documents_pass_every_decoder() -> None:
    """The near-valid strategies start from payments that pass: a mutation is what makes them fail."""
    for document in valid_documents():
        bound = bind_gate(encode_document(document).encode(), 2)
        assert isinstance(run_bound(bound), Inspection)
        assert isinstance(run_bound(bind_mcp(document)), Inspection)


# ---- EVM exact ----

uint_texts = st.one_of(
    st.integers(min_value=-(2**260), max_value=2**260).map(str),
    st.integers(min_value=0, max_value=2**260),
    st.sampled_from(["1e3", "1000.0", "0x3e8", " 1000", "1000 ", "+1000", "0001000", FULLWIDTH_1000, "", "-0"]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.booleans(),
)
hex_texts = st.one_of(
    st.binary(max_size=80).map(lambda b: "0x" + b.hex()),
    st.binary(max_size=80).map(lambda b: "0X" + b.hex().upper()),
    st.binary(max_size=40).map(lambda b: b.hex()),
    st.text(max_size=70),
    st.integers(),
    st.none(),
)


@FUZZ
@given(
    field=st.sampled_from(["from", "to", "value", "validAfter", "validBefore", "nonce", "signature"]),
    value=uint_texts | hex_texts | json_values,
)
def test_evm_authorizations_with_one_hostile_field_are_refused_or_inspected(field: str, value: Any) -> None:
    payload = json.loads(json.dumps(EVM_PAYLOAD))
    if field == "signature":
        payload["signature"] = value
    else:
        payload["authorization"][field] = value
    parsed = parse_authorization(payload)
    if isinstance(parsed, Refusal):
        assert_refusal(parsed)
        assert parsed.status == 400
    result = inspect(PaymentPayload(x402_version=2, accepted=EVM_OFFER, payload=payload), EVM_OFFER, NOW)
    assert_refused_or_inspected(result)


@FUZZ_JSON
@given(payload=json_values)
def test_evm_payloads_of_any_shape_are_refused(payload: Any) -> None:
    if not isinstance(payload, dict):
        payload = {"authorization": payload, "signature": payload}
    result = inspect(PaymentPayload(x402_version=2, accepted=EVM_OFFER, payload=payload), EVM_OFFER, NOW)
    assert_refusal(result)


@FUZZ
@given(signature=st.binary(max_size=140), digest=st.binary(min_size=32, max_size=32))
def test_signature_parsing_and_recovery_never_raise(signature: bytes, digest: bytes) -> None:
    parts = split_signature(signature)
    assert parts is None or parts[0] in (27, 28)
    recovered = recover_address(digest, signature)
    assert recovered is None or (len(recovered) == 42 and recovered.startswith("0x"))


@FUZZ
@given(
    r=st.integers(0, 2**256 - 1),
    s=st.integers(0, 2**256 - 1),
    v=st.integers(0, 255),
    digest=st.binary(min_size=32, max_size=32),
)
def test_recovery_of_any_r_s_v_is_an_address_or_none(r: int, s: int, v: int, digest: bytes) -> None:
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])
    recovered = recover_address(digest, signature)
    assert recovered is None or len(recovered) == 42
    if v not in (0, 1, 27, 28) or s > 2**255:
        assert recovered is None


# ---- SVM exact ----


def _svm_inspect(transaction: Any) -> Any:
    payload = PaymentPayload(x402_version=2, accepted=SVM_OFFER, payload={"transaction": transaction})
    return inspect(payload, SVM_OFFER, NOW)


@FUZZ_JSON
@given(transaction=st.binary(max_size=1300).map(b64_text) | st.text(max_size=200) | json_values)
def test_arbitrary_transactions_are_refused(transaction: Any) -> None:
    assert_refusal(_svm_inspect(transaction))


@FUZZ
@given(data=st.data())
def test_byte_mutated_reference_transactions_are_refused_or_inspected(data: st.DataObject) -> None:
    raw = bytearray(base64.b64decode(SVM_TRANSACTION))
    for _ in range(data.draw(st.integers(1, 6))):
        edit = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        index = data.draw(st.integers(0, len(raw) - 1))
        if edit == "flip":
            raw[index] = data.draw(st.integers(0, 255))
        elif edit == "truncate":
            del raw[index:]
        elif edit == "insert":
            raw.insert(index, data.draw(st.integers(0, 255)))
        else:
            del raw[index]
        if not raw:
            break
    assert_refused_or_inspected(_svm_inspect(b64_text(bytes(raw))))


_STRANGER = Keypair.from_seed(bytes([3] * 32))
_KEYS = [
    FEE_PAYER.pubkey(),
    SVM_PAYER.pubkey(),
    _STRANGER.pubkey(),
    SVM_PAY_TO,
    Pubkey.from_string(SVM_MINT),
    programs.associated_token_address(SVM_PAYER.pubkey(), Pubkey.from_string(SVM_MINT)),
    programs.associated_token_address(SVM_PAY_TO, Pubkey.from_string(SVM_MINT)),
    programs.associated_token_address(FEE_PAYER.pubkey(), Pubkey.from_string(SVM_MINT)),
]


@st.composite
def instructions(draw: st.DrawFn) -> Instruction:
    """One instruction the exact layout knows (with any arguments), or one it does not."""
    key = st.sampled_from(_KEYS)
    kind = draw(st.integers(0, 6))
    if kind == 0:
        return programs.compute_unit_limit(draw(st.integers(0, 2**32 - 1)))
    if kind == 1:
        return programs.compute_unit_price(draw(st.integers(0, 2**64 - 1)))
    if kind == 2:
        authority = draw(st.sampled_from([SVM_PAYER.pubkey(), FEE_PAYER.pubkey(), _STRANGER.pubkey()]))
        program = draw(st.sampled_from(sorted(programs.TOKEN_PROGRAMS, key=str)))
        amount, decimals = draw(st.integers(0, 2**64 - 1)), draw(st.integers(0, 255))
        return programs.transfer_checked(draw(key), draw(key), draw(key), authority, amount, decimals, program)
    if kind == 3:
        return programs.memo(draw(st.binary(max_size=300)))
    if kind == 4:  # a known program with the wrong data length or accounts
        known = [programs.COMPUTE_BUDGET_PROGRAM, programs.TOKEN_PROGRAM, programs.MEMO_PROGRAM]
        program = draw(st.sampled_from(known))
        count = draw(st.integers(0, 4))
        accounts = [AccountMeta(draw(key), draw(st.booleans()), draw(st.booleans())) for _ in range(count)]
        return Instruction(program, draw(st.binary(max_size=12)), accounts)
    if kind == 5:
        return Instruction(programs.LIGHTHOUSE_PROGRAM, draw(st.binary(max_size=8)), [])
    return Instruction(Pubkey.new_unique(), draw(st.binary(max_size=8)), [AccountMeta(draw(key), False, True)])


@FUZZ
@given(
    body=st.lists(instructions(), max_size=8),
    reference_prefix=st.booleans(),
    fee_payer=st.sampled_from([FEE_PAYER, SVM_PAYER, _STRANGER]),
)
def test_transactions_compiled_from_random_instructions_are_refused_or_inspected(
    body: list[Instruction], reference_prefix: bool, fee_payer: Keypair
) -> None:
    if reference_prefix:  # the limit, price and transfer a client sends, then the random tail
        body = payment_instructions(SVM_PAYER.pubkey(), SVM_OFFER, decimals=6)[:3] + body
    try:
        message = MessageV0.try_compile(fee_payer.pubkey(), body, [], Hash.default())
    except Exception:  # solders refuses some combinations itself (e.g. too many accounts): not our decoder
        return
    required = message.header.num_required_signatures
    signer_keys = message.account_keys[:required]
    by_key = {k.pubkey(): k for k in (SVM_PAYER, _STRANGER, FEE_PAYER)}
    signers = [NullSigner(fee_payer.pubkey())] + [by_key[k] for k in signer_keys[1:] if k in by_key]
    if len(signers) != required:
        return
    transaction = VersionedTransaction(message, signers)
    assert_refused_or_inspected(_svm_inspect(encode_transaction(transaction)))


def test_the_reference_svm_transaction_passes() -> None:
    assert isinstance(_svm_inspect(SVM_TRANSACTION), Inspection)


# ---- the query rules and the MCP tool arguments ----

_QUERY_NAMES = ["lat", "lon", "radius_km", "bbox", "limit", "max_age", "id", "other"]
queries = st.dictionaries(st.sampled_from(_QUERY_NAMES), query_texts, max_size=6)


def assert_problem(result: object) -> None:
    assert isinstance(result, Problem), result
    assert 400 <= result.status < 500 or result.status == 503
    assert result.error and result.message


@FUZZ
@given(params=queries)
def test_filters_parse_or_raise_filter_error(params: dict[str, str]) -> None:
    try:
        filters = parse_filters(params)
        parse_max_age(params)
    except FilterError as exc:
        assert str(exc)
        return
    assert 1 <= filters.limit <= 1000


@FUZZ
@given(params=queries, stream=st.sampled_from(STREAMS))
def test_stream_queries_are_parsed_or_a_problem(params: dict[str, str], stream: Any) -> None:
    result = stream_query(stream, params)
    if not isinstance(result, StreamQuery):
        assert_problem(result)


@FUZZ
@given(params=queries)
def test_world_queries_are_parsed_or_a_problem(params: dict[str, str]) -> None:
    result = world_query(params)
    if not isinstance(result, WorldQuery):
        assert_problem(result)


tool_values = json_values | st.integers(min_value=-(10**5000), max_value=10**5000) | st.sampled_from([10**5000, 1e308])


@FUZZ
@given(
    arguments=st.dictionaries(st.sampled_from([*_QUERY_NAMES, "q"]), tool_values | query_texts, max_size=6),
    world=st.booleans(),
)
def test_tool_arguments_map_to_query_rules_or_a_problem(arguments: dict[str, Any], world: bool) -> None:
    schema = WORLD_SCHEMA if world else STREAM_SCHEMA
    params = tool_params(arguments, schema)
    if isinstance(params, Problem):
        assert_problem(params)
        return
    assert all(isinstance(v, str) for v in params.values())
    if world:
        result: Any = world_query(params)
    else:
        params.pop("id", None)
        result = stream_query(STREAMS[0], params)
    if isinstance(result, Problem):
        assert_problem(result)


# ---- the inputs that exposed bugs, kept as plain regressions ----


@pytest.mark.parametrize("version", [1, 2])
def test_a_header_with_bad_utf8_inside_a_json_string_is_invalid_payload(version: int) -> None:
    """msgspec raises UnicodeDecodeError (not its DecodeError) for it: the gate answered 500."""
    raw = b'{"x402Version":2,"scheme":"\xd1x","network":"base-sepolia","accepted":{"scheme":"\xd1x"},"payload":{}}'
    refused = decode_payment_header(b64_text(raw), version=version)
    assert isinstance(refused, Refusal) and refused.reason == Reason.INVALID_PAYLOAD and refused.status == 400


@pytest.mark.parametrize(
    "params",
    [{"limit": "²"}, {"limit": "1" * 5000}, {"limit": "٣"}, {"limit": "0" * 20 + "5"}, {"max_age": "9" * 5000}],
)
def test_query_values_found_by_the_fuzzer_are_a_400(params: dict[str, str]) -> None:
    """`limit=²` raised ValueError (isdigit() but not int()), a 5000-digit limit hit int()'s 4300-digit cap."""
    quakes = next(s for s in STREAMS if not s.point)
    result = stream_query(quakes, params)
    assert isinstance(result, Problem) and result.status == 400 and result.error == "invalid_query", result


@pytest.mark.parametrize("arguments", [{"limit": 10**5000}, {"lat": -(10**5000), "lon": 0}, {"limit": 1e300}])
def test_tool_arguments_too_long_to_print_are_a_400(arguments: dict[str, Any]) -> None:
    """str() of an integer over 4300 digits raised ValueError inside tool_params."""
    params = tool_params({"id": "quakes.usgs", **arguments}, STREAM_SCHEMA)
    assert not isinstance(params, Problem)
    params.pop("id")
    result = stream_query(next(s for s in STREAMS if not s.point), params)
    assert isinstance(result, Problem) and result.status == 400, result


def test_an_mcp_payment_nested_too_deep_to_measure_is_invalid_payload() -> None:
    """msgspec's encoder raised RecursionError measuring the size of a payment nested deeper than the interpreter's
    recursion limit (not reachable over HTTP today: the MCP transport's JSON parser stops at a lower depth)."""
    deep = nested(sys.getrecursionlimit() + 50)
    refused = bind_mcp({"x402Version": 2, "payload": deep})
    assert isinstance(refused, Refusal) and refused.reason == Reason.INVALID_PAYLOAD
