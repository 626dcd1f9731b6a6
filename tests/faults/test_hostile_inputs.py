"""Hostile payment input against the running gateway: the corpus in tests/faults/corpus/, and a fuzzer over HTTP.

The corpus
----------
One JSON file per hostile payment, `NN-short-name.json`:

    {"description": "what is wrong with it",
     "transports": ["v2-header", "v1-header", "mcp-meta"],   # where the payment is sent (where meaningful)
     <what is sent: one of>
       "header": "raw text"                  # the header value verbatim (MCP: that string as the payment)
       "header_fill": {"char": "A", "bytes": 9000}   # a raw header this long (MCP: an object this long)
       "base64_of_text": "...", "base64_of_hex": "..."   # valid base64 of these bytes
       "document": <any JSON>                # base64(JSON) in a header, the value itself over MCP
       "base": "evm" | "svm"                 # a real payment for the route's offer, signed at test time
         "sign": {...}                       # evm: overrides of the signed authorization: value, to, chain_id,
                                             #   name, asset, key ("stranger"), valid_after/valid_before ("now+N")
         "signature": "truncate64" | "high-s" | "v29" | "erc6492"   # evm: the signature bytes edited
         "svm": {...}                        # svm: the transaction's layout changed (see `_svm_transaction`)
         "mutate": {"dotted.path": value}    # the v2 document edited after signing; a value may be
                                             #   {"$delete": true}, {"$nest": depth}, {"$fill": n} or a
                                             #   "$payTo-..." / "$validBefore+60" placeholder (see `_value`)
         "mutate_v1": {...}                  # the same, on the v1 X-PAYMENT document
         "meta_as_header": true              # MCP: send the base64 header string instead of the object
         "also": "v1-valid" | "v2-valid"     # a second, valid payment header in the same request
     "query": "limit=abc", "arguments": {...}   # the HTTP query / the MCP tool arguments (an invalid query)
     "expect": {"status": 402, "reason": "..."}, "expect_mcp": {...}, "expect_v1": {...}}

Signed payments cannot be static files (signatures expire and nonces are single-use), so a file names the
mutation and the test applies it to a payment signed by a funded payer for the route's live offer. Every
entry goes to static.capitals over HTTP (GET with PAYMENT-SIGNATURE, and X-PAYMENT where listed) and over MCP
(`get_stream` with `_meta["x402/payment"]`), and each answer must be: the expected status (never 5xx) and
reason code (`error` in the JSON body, or in the tool result's structuredContent), no data, no traceback or
secret in the body; and afterwards no payment row held (a row claimed before the chain refused it must be
`released`), no settlement in the ledger, no token moved on either chain.

Unknown keys in `accepted.extra` are tolerated by design (payments/offers.py: our keys must carry our values),
so the corpus has no entry expecting a refusal for them alone.

The fuzzer sends hypothesis-generated query strings and payment headers (arbitrary and near-valid) to every
kind of paid path and asserts no 5xx and a JSON error document. Both runs are recorded in the reliability
table (section "Hostile input").
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote as urlquote

import asyncpg
import httpx
import pytest
from eth_account import Account
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.mcp.server import PAYMENT_META_KEY as PAYMENT
from app.runtime.settings import Settings
from payments.devnet.evm import EvmDevnet
from payments.devnet.solana_process import SolanaDevnetProcess

from .. import svm
from ..chain import new_payer, usdc_balance
from ..conftest import ADMIN_SECRET, Gateway
from .hostile_payments import Payer, build
from .payment_strategies import headers as header_values
from .payment_strategies import json_values, near_valid_documents, query_texts
from .report import FaultRow, record

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
CORPUS = {path.stem: json.loads(path.read_text()) for path in sorted(CORPUS_DIR.glob("*.json"))}
CASES = [(name, transport) for name, entry in CORPUS.items() for transport in entry["transports"]]
CAPITALS = "static.capitals"
PATH = f"/v1/streams/{CAPITALS}"
TRACE_MARKS = ("Traceback (most recent call last)", 'File "/', "site-packages", "asyncpg.exceptions")


# ---- what each answer must (not) carry, and the ledger and chains around it ----


class Secrets(tuple[str, ...]):
    """Strings no answer may contain; its repr hides them (hypothesis prints a failing test's arguments)."""

    def __repr__(self) -> str:
        return f"<{len(self)} secrets>"


def secrets_of(settings: Settings) -> Secrets:
    """The relayer and fee-payer keys, the admin secret, the database URL."""
    found = [ADMIN_SECRET]
    if settings.evm and settings.evm.relayer_key:
        found += [settings.evm.relayer_key, settings.evm.relayer_key.removeprefix("0x")]
    if settings.svm and settings.svm.fee_payer_key:
        found.append(settings.svm.fee_payer_key)
    if settings.database_url:
        found.append(settings.database_url)
    return Secrets(found)


def assert_clean(text: str, secrets: Secrets) -> None:
    """No traceback and no secret in an answer."""
    for mark in TRACE_MARKS:
        assert mark not in text, f"{mark!r} in the answer: {text[:500]}"
    for secret in secrets:
        assert secret not in text, "a secret in the answer"


@dataclass(frozen=True)
class Mark:
    """Where the ledger and the chains stand: read before and after every entry (cheap: two SQL counts and two
    RPC calls on one connection). A settlement on Base is a relayer transaction and one on Solana a landed
    transaction, so unmoved counters mean nothing was sent to either chain."""

    max_id: int
    settled: int
    relayer_nonce: int
    svm_landed: int


async def mark(pool: asyncpg.Pool, rpc: httpx.AsyncClient, devnet: EvmDevnet, state: dict[str, Any]) -> Mark:
    row = await pool.fetchrow(
        "SELECT coalesce(max(id), 0) AS max_id, count(*) FILTER (WHERE state = 'settled') AS settled FROM payments"
    )
    nonce = await rpc.post(devnet.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_getTransactionCount",
                                                 "params": [devnet.relayer_address, "pending"]})  # fmt: skip
    epoch = await rpc.post(state["rpc_url"], json={"jsonrpc": "2.0", "id": 1, "method": "getEpochInfo", "params": []})
    return Mark(
        max_id=int(row["max_id"]),
        settled=int(row["settled"]),
        relayer_nonce=int(nonce.json()["result"], 16),
        svm_landed=int(epoch.json()["result"]["transactionCount"]),
    )


def balances(devnet: EvmDevnet, state: dict[str, Any], payer: Payer) -> tuple[int, int, int, int]:
    """USDC of the corpus' payers and of payTo, on both chains: read at the start and the end of the run."""
    return (
        usdc_balance(devnet, Account.from_key(payer.evm_key).address),
        usdc_balance(devnet, devnet.pay_to),
        svm.usdc_balance(state, payer.svm_keypair.pubkey()),
        svm.usdc_balance(state, state["pay_to"]),
    )


@dataclass
class Tally:
    requests: int = 0
    served: int = 0
    status_500: int = 0
    released: int = 0  # claimed, then released when the chain-side check refused the payment
    funds_before: tuple[int, ...] = ()  # balances() when the run started
    answers: dict[str, int] = field(default_factory=dict)  # "HTTP 402" or "MCP tool error": how many

    def count(self, status: int, served: bool, *, mcp: bool = False) -> None:
        self.requests += 1
        self.served += served
        self.status_500 += status >= 500
        label = "MCP tool error" if mcp and status == 200 and not served else f"HTTP {status}"
        self.answers[label] = self.answers.get(label, 0) + 1

    def summary(self) -> str:
        return ", ".join(f"{label}: {n}" for label, n in sorted(self.answers.items()))


# ---- fixtures ----


@pytest.fixture(scope="module")
def payer(devnet: EvmDevnet, solana: SolanaDevnetProcess) -> Payer:
    return Payer(new_payer(devnet, 10_000_000), svm.new_payer(solana.state))


@pytest.fixture(scope="module")
async def offers(gateway: Gateway) -> dict[str, dict[str, Any]]:
    return {"evm": await gateway.offer(PATH), "svm": await gateway.offer(PATH, "solana")}


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """One client for the module's requests and RPC reads (a new client per call costs ~60 ms of TLS setup)."""
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
async def corpus_tally(
    pool: asyncpg.Pool,
    http: httpx.AsyncClient,
    devnet: EvmDevnet,
    solana: SolanaDevnetProcess,
    payer: Payer,
    offers: dict[str, Any],
) -> AsyncIterator[Tally]:
    """Counts the corpus run, and records it in the reliability table with the ledger and chains' own figures."""
    before, funds_before = await mark(pool, http, devnet, solana.state), balances(devnet, solana.state, payer)
    tally = Tally(funds_before=funds_before)
    yield tally
    if not tally.requests:
        return
    after, funds_after = await mark(pool, http, devnet, solana.state), balances(devnet, solana.state, payer)
    price = int(offers["evm"]["amount"])
    charged = (funds_before[0] - funds_after[0]) // price + (funds_before[2] - funds_after[2]) // price
    record(
        FaultRow(
            section="Hostile input",
            fault=f"the hostile payment corpus: {len(CORPUS)} payloads in tests/faults/corpus/",
            action=(
                "each sent to a paid route as PAYMENT-SIGNATURE (v2), as X-PAYMENT (v1) where meaningful, and "
                'over MCP in _meta["x402/payment"] of get_stream'
            ),
            outcome=(
                "every answer the entry's status and reason code, no data, no traceback, no secret "
                f"({tally.summary()}); {tally.released} claimed and released (a signature that is not the payer's is"
                " refused before any claim)"
            ),
            requests=tally.requests,
            served=tally.served,
            settled=after.settled - before.settled,
            charged=charged,
            status_500=tally.status_500,
            notes=(
                f"relayer transactions sent: {after.relayer_nonce - before.relayer_nonce}; Solana transactions "
                f"landed: {after.svm_landed - before.svm_landed}; payer and payTo USDC unchanged on both chains: "
                f"{funds_after == funds_before}",
            ),
        )
    )


@pytest.fixture(scope="module")
def secrets(settings: Settings) -> Secrets:
    return secrets_of(settings)


@pytest.fixture(scope="module")
def recent_blockhash(solana: SolanaDevnetProcess) -> Any:
    return svm.blockhash(solana.state)


# ---- the corpus ----


def test_the_corpus_covers_the_issue() -> None:
    assert len(CORPUS) >= 40
    transports = {t for entry in CORPUS.values() for t in entry["transports"]}
    assert transports == {"v2-header", "v1-header", "mcp-meta"}
    for name, entry in CORPUS.items():
        assert entry["description"] and entry["expect"]["reason"], name
        assert 400 <= entry["expect"]["status"] < 500, name


MCP_HEADERS = {
    "content-type": "application/json",
    "accept": "application/json, text/event-stream",
    "mcp-protocol-version": "2025-11-25",
}


async def call_get_stream(http: httpx.AsyncClient, gateway: Gateway, arguments: dict[str, Any], meta: Any) -> Any:
    """`tools/call get_stream` as JSON-RPC over the streamable HTTP transport (stateless: no session needed).

    Raw JSON-RPC rather than the `mcp` client (tests/test_mcp.py drives that one): a hostile caller is not
    bound by a client library, which refuses to serialize some of the corpus (1500 levels of nesting)."""
    params = {"name": "get_stream", "arguments": {"id": CAPITALS, **arguments}, "_meta": {PAYMENT: meta}}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params})
    return await http.post(gateway.url + "/mcp", content=body, headers=MCP_HEADERS)


@pytest.mark.parametrize(("name", "transport"), CASES, ids=[f"{n}-{t}" for n, t in CASES])
async def test_hostile_payment_is_refused_uncharged(
    name: str,
    transport: str,
    gateway: Gateway,
    secrets: Secrets,
    devnet: EvmDevnet,
    solana: SolanaDevnetProcess,
    pool: asyncpg.Pool,
    http: httpx.AsyncClient,
    payer: Payer,
    offers: dict[str, dict[str, Any]],
    recent_blockhash: Any,
    corpus_tally: Tally,
) -> None:
    entry = CORPUS[name]
    expect = {
        **entry["expect"],
        **entry.get({"mcp-meta": "expect_mcp", "v1-header": "expect_v1"}.get(transport, "expect_v2"), {}),
    }
    sent = build(entry, transport, payer, offers, devnet, solana.state, recent_blockhash)
    before = await mark(pool, http, devnet, solana.state)

    if transport == "mcp-meta":
        answer = await call_get_stream(http, gateway, sent.arguments, sent.meta)
        reply = answer.json()
        if "error" in reply:  # refused by the JSON-RPC layer, before the tool ran
            result, reason = {}, f"jsonrpc:{reply['error']['code']}"
        else:
            result = reply["result"]
            reason = (result.get("structuredContent") or {}).get("error")
        served = bool(result) and not result.get("isError")
        corpus_tally.count(answer.status_code, served, mcp=True)
        assert answer.status_code < 500, answer.text
        assert not served, f"served: {answer.text[:300]}"
        assert reason == expect["reason"], answer.text[:600]
    else:
        url = gateway.url + PATH + (f"?{sent.query}" if sent.query else "")
        answer = await http.get(url, headers=sent.headers)
        corpus_tally.count(answer.status_code, served=answer.status_code == 200)
        assert answer.status_code < 500, answer.text
        assert answer.status_code == expect["status"], answer.text
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.json()["error"] == expect["reason"], answer.text
        assert answer.json().get("message")
    assert_clean(answer.text, secrets)
    assert '"records"' not in answer.text  # a refusal carries no data, not even the 402's example answer

    after = await mark(pool, http, devnet, solana.state)
    rows = await pool.fetch("SELECT state FROM payments WHERE id > $1", before.max_id)
    assert all(r["state"] == "released" for r in rows), [r["state"] for r in rows]  # claimed at most, then let go
    corpus_tally.released += len(rows)
    assert after.settled == before.settled
    assert (after.relayer_nonce, after.svm_landed) == (before.relayer_nonce, before.svm_landed), "sent to a chain"


def test_the_corpus_moved_no_money(
    corpus_tally: Tally, devnet: EvmDevnet, solana: SolanaDevnetProcess, payer: Payer
) -> None:
    """After the corpus (file order): the payers' and payTo's USDC on both chains are what they were before it."""
    if not corpus_tally.requests:
        pytest.skip("no corpus entry ran in this session")
    assert balances(devnet, solana.state, payer) == corpus_tally.funds_before


# ---- the fuzzer, over HTTP ----

# every kind of paid path, with a query it serves: most generated requests then reach the payment decoders
PAID_PATHS = {
    PATH: "",
    "/v1/streams/quakes.usgs": "",
    "/v1/streams/weather.current": "lat=40.42&lon=-3.7",
    "/v1/world": "lat=40.42&lon=-3.7",
}
HTTP_FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def fuzz_tally() -> Iterator[Tally]:
    tally = Tally()
    yield tally
    if tally.requests:
        record(
            FaultRow(
                section="Hostile input",
                fault="hypothesis-generated requests: arbitrary and near-valid payments, queries and tool arguments",
                action=(
                    f"{tally.requests} requests: GETs to paid routes with PAYMENT-SIGNATURE, X-PAYMENT, both or none, "
                    'and get_stream calls over MCP with any _meta["x402/payment"] and arguments'
                ),
                outcome=f"never a 5xx; every answer a JSON error document ({tally.summary()})",
                requests=tally.requests,
                served=tally.served,
                settled=0,  # every generated payment is expired, unsigned or malformed: checked per answer
                charged=0,
                status_500=tally.status_500,
            )
        )


_names = ["lat", "lon", "radius_km", "bbox", "limit", "max_age", "q", "lat"]


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]]]:
    path = draw(st.sampled_from(sorted(PAID_PATHS)))
    query = PAID_PATHS[path]
    if draw(st.integers(0, 3)) == 0:  # a quarter of them with generated query parameters as well
        pairs = draw(st.lists(st.tuples(st.sampled_from(_names), query_texts), min_size=1, max_size=4))
        query = "&".join([query, *(f"{urlquote(k)}={urlquote(v[:200], safe=',')}" for k, v in pairs)]).strip("&")
    # what HTTP can carry: latin-1 without control characters (h11 refuses to send them), no outer spaces
    header = "".join(c for c in draw(header_values()) if c == "\t" or not (ord(c) < 32 or ord(c) == 127)).strip()
    how = draw(st.sampled_from(["v2", "v2", "v1", "both", "none"]))
    headers = {"v2": [("PAYMENT-SIGNATURE", header)], "v1": [("X-PAYMENT", header)],
               "both": [("PAYMENT-SIGNATURE", header), ("X-PAYMENT", header)], "none": []}[how]  # fmt: skip
    return path + (f"?{query}" if query else ""), headers


@HTTP_FUZZ
@given(request=requests())
async def test_generated_requests_never_get_a_server_error(
    request: tuple[str, list[tuple[str, str]]],
    gateway: Gateway,
    http: httpx.AsyncClient,
    secrets: Secrets,
    fuzz_tally: Tally,
) -> None:
    target, request_headers = request
    encoded = [(k, v.encode("latin-1")) for k, v in request_headers]
    answer = await http.get(gateway.url + target, headers=encoded)
    fuzz_tally.count(answer.status_code, served=answer.status_code == 200)
    assert answer.status_code < 500, answer.text
    assert answer.status_code != 200, answer.text  # nothing generated here is a payment that can pass
    assert answer.json()["error"]
    assert_clean(answer.text, secrets)


_argument_names = ["id", "lat", "lon", "radius_km", "bbox", "limit", "max_age", "other"]


@HTTP_FUZZ
@given(
    meta=json_values | near_valid_documents() | st.text(max_size=60),
    arguments=st.dictionaries(st.sampled_from(_argument_names), json_values | query_texts, max_size=3),
)
async def test_generated_mcp_payments_never_get_a_server_error(
    meta: Any,
    arguments: dict[str, Any],
    gateway: Gateway,
    http: httpx.AsyncClient,
    secrets: Secrets,
    fuzz_tally: Tally,
) -> None:
    answer = await call_get_stream(http, gateway, arguments, meta)
    reply = answer.json()
    served = "result" in reply and not reply["result"].get("isError")
    fuzz_tally.count(answer.status_code, served, mcp=True)
    assert answer.status_code < 500, answer.text
    assert not served, answer.text[:300]
    assert "error" in reply or (reply["result"].get("structuredContent") or {}).get("error"), answer.text[:300]
    assert_clean(answer.text, secrets)
