"""The time machine sold: `worldgate backfill` in replay mode, free coverage, paid history and point-in-time
reads priced by what they ask (the 402 states it; paying serves exactly that range), their query rules, their
formats, and the MCP tools, on a gateway over the session's Postgres, Redis, devnet and replay server."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from eth_account import Account
from x402 import x402Client
from x402.http.clients import x402HttpxClient
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact.register import register_exact_evm_client

from adapters import ReplayServer
from app.runtime.settings import Settings
from payments.devnet.evm import EvmDevnet

from .chain import new_payer, pay_for, unb64
from .conftest import Gateway, running_gateway, with_settings
from .services import Database
from .test_mcp import PAYMENT, connected, evm_offer, payment, quote

ROOT = Path(__file__).resolve().parents[1]
GRID = "weather.grid.temperature"
HISTORY = f"/v1/streams/{GRID}/history"
FIRST, LAST = "2024-05-20T00:00:00Z", "2024-05-21T23:00:00Z"  # the recorded history payload's hours
BASIC = 1000  # the grid's tier price, atomic USDC: the price of one block of 24 snapshots


def backfill(database: Database, replay: ReplayServer, *arguments: str) -> subprocess.CompletedProcess[str]:
    """`worldgate backfill` as a user runs it, on the session's database, reading the replay server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORLDGATE_")}
    env.update(
        WORLDGATE_DATABASE_URL=database.url,
        WORLDGATE_UPSTREAM_REPLAY_URL=replay.url,
        WORLDGATE_AUTO_MIGRATE="0",
    )
    return subprocess.run(
        [sys.executable, "-m", "app", "backfill", *arguments], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


@pytest.fixture(scope="module")
async def emptied(pool: asyncpg.Pool) -> None:
    await pool.execute("TRUNCATE history_snapshots, history_backfill")


@pytest.fixture(scope="module")
def gateway_h(settings: Settings, emptied: None) -> Iterator[Gateway]:
    """A gateway of this module's own: its coverage cache starts with the backfill."""
    with running_gateway(settings) as running:
        yield running


@pytest.fixture(scope="module")
def backfilled(database: Database, replay: ReplayServer, emptied: None) -> subprocess.CompletedProcess[str]:
    done = backfill(database, replay, GRID, "--days", "2")
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture
async def ledger_rows(pool: asyncpg.Pool) -> AsyncIterator[Any]:
    async def rows(tx_hash: str) -> list[asyncpg.Record]:
        return await pool.fetch("SELECT * FROM payments WHERE tx_hash = $1", tx_hash)

    yield rows


def quoted(answer: Any) -> dict[str, Any]:
    assert answer.status_code == 402, answer.text
    required: dict[str, Any] = unb64(answer.headers["payment-required"])
    return required


def evm_amount(required: dict[str, Any]) -> int:
    return int(evm_offer(required)["amount"])


# ---- the acceptance path ----


async def test_backfill_coverage_and_the_official_client_paying_for_it(
    gateway_h: Gateway,
    backfilled: subprocess.CompletedProcess[str],
    database: Database,
    replay: ReplayServer,
    devnet: EvmDevnet,
    pool: asyncpg.Pool,
    ledger_rows: Any,
) -> None:
    assert "144 snapshots stored" in backfilled.stdout  # three grid streams, 48 hours each
    assert "3/3 days" in backfilled.stderr and "ETA" in backfilled.stderr  # the progress bar

    coverage = await gateway_h.get(f"/v1/streams/{GRID}/coverage")
    assert coverage.status_code == 200, coverage.text
    covered = coverage.json()
    assert covered["count"] >= 24 and covered["gap_count"] == 0
    assert (covered["earliest"], covered["latest"]) == (FIRST, LAST)

    client = x402Client()
    register_exact_evm_client(client, EthAccountSigner(Account.from_key(new_payer(devnet))))
    url = f"{gateway_h.url}{HISTORY}?from={covered['earliest']}&to={covered['latest']}"
    async with x402HttpxClient(client) as http:
        answer = await http.get(url)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    times = [s["t"] for s in body["snapshots"]]
    assert len(set(times)) == len(times) >= 24
    assert all(covered["earliest"] <= t <= covered["latest"] for t in times)
    assert (body["from"], body["to"], body["truncated"]) == (FIRST, LAST, False)
    assert {len(s["records"]) for s in body["snapshots"]} == {4}  # the recording's four cells, every hour
    settle = json.loads(base64.b64decode(answer.headers["payment-response"]))
    [row] = await ledger_rows(settle["transaction"])
    assert row["amount_atomic"] == 2 * BASIC  # 48 hourly snapshots asked: two blocks of 24
    assert row["stream"] == GRID and row["route"] == "GET /v1/streams/{id}/history" and row["state"] == "settled"

    again = backfill(database, replay, GRID, "--days", "2")  # a rerun adds nothing
    assert again.returncode == 0, again.stderr
    assert "0 snapshots stored" in again.stdout and "2 finished before" in again.stdout
    count = await pool.fetchval("SELECT count(*) FROM history_snapshots WHERE stream = $1", GRID)
    assert count == covered["count"]


# ---- the price follows the range ----


async def test_the_402_states_the_range_price_and_paying_serves_exactly_that_range(
    gateway_h: Gateway, backfilled: Any, devnet: EvmDevnet, ledger_rows: Any
) -> None:
    six_hours = f"{HISTORY}?from=2024-05-20T06:00:00Z&to=2024-05-20T12:00:00Z"
    two_days = f"{HISTORY}?from={FIRST}&to={LAST}"
    ten_days = f"{HISTORY}?from=2024-05-12T00:00:00Z&to=2024-05-21T23:00:00Z"
    capped = f"{ten_days}&limit=5"
    prices = {}
    for path in (six_hours, two_days, ten_days, capped):
        required = quoted(await gateway_h.get(path))
        prices[path] = evm_amount(required)
        assert str(prices[path] // BASIC) + " block" in required["resource"]["description"]
    assert prices == {six_hours: BASIC, two_days: 2 * BASIC, ten_days: 10 * BASIC, capped: BASIC}
    body = quoted(await gateway_h.get(six_hours))
    assert "from 2024-05-20T06:00:00Z to 2024-05-20T12:00:00Z" in body["resource"]["description"]
    page = await gateway_h.get(six_hours)
    assert page.json()["about"]["price"]["amount_atomic"] == str(BASIC)  # the readable body says it too

    key = new_payer(devnet)
    offer = evm_offer(quoted(await gateway_h.get(six_hours)))
    header = pay_for(key, devnet, offer)
    bigger = await gateway_h.get(two_days, headers={"PAYMENT-SIGNATURE": header})
    assert bigger.status_code == 402  # a payment for six hours does not buy two days
    assert evm_amount(quoted(bigger)) == 2 * BASIC
    served = await gateway_h.get(six_hours, headers={"PAYMENT-SIGNATURE": header})
    assert served.status_code == 200, served.text
    body = served.json()
    assert (body["from"], body["to"]) == ("2024-05-20T06:00:00Z", "2024-05-20T12:00:00Z")
    assert [s["t"] for s in body["snapshots"]] == [f"2024-05-20T{h:02d}:00:00Z" for h in range(6, 13)]
    settle = json.loads(base64.b64decode(served.headers["payment-response"]))
    [row] = await ledger_rows(settle["transaction"])
    assert row["amount_atomic"] == BASIC


async def test_history_queries_are_refused_before_any_quote(gateway_h: Gateway) -> None:
    refused = {
        f"{HISTORY}": (400, "give from"),
        f"{HISTORY}?from={LAST}&to={FIRST}": (400, "to must be after from"),
        f"{HISTORY}?from=yesterday&to={LAST}": (400, "ISO 8601"),
        f"{HISTORY}?from=2020-01-01T00:00:00Z&to={LAST}": (400, "more than 366 days"),
        "/v1/streams/quakes.usgs/history?from=2024-05-01T00:00:00Z&to=2024-05-31T00:00:00Z": (400, "step="),
        f"{HISTORY}?from={FIRST}&to={LAST}&step=5": (400, "step must be"),
        f"{HISTORY}?from={FIRST}&to={LAST}&format=xml": (400, "format must be"),
        f"{HISTORY}?from={FIRST}&to={LAST}&limit=0": (400, "limit must be"),
        f"{HISTORY}?from={FIRST}&to={LAST}&bbox=0,0,10,10&lat=1&lon=1": (400, "either bbox"),
        f"{HISTORY}?from={FIRST}&to={LAST}&since=x": (400, "unknown query parameter"),
        f"{HISTORY}?from={FIRST}&from={FIRST}&to={LAST}": (400, "more than once"),
        f"/v1/streams/{GRID}/at": (400, "give t"),
        "/v1/streams/weather.current/history?from=2024-05-20T00:00:00Z&to=2024-05-21T00:00:00Z": (404, "per point"),
        "/v1/streams/static.capitals/coverage": (404, "bundled"),
        "/v1/streams/no.such/history": (404, "no such stream"),
    }
    for path, (status, words) in refused.items():
        answer = await gateway_h.get(path)
        assert answer.status_code == status, (path, answer.text)
        assert "payment-required" not in answer.headers, path
        assert words in answer.json()["message"], (path, answer.text)


async def test_nothing_recorded_in_a_range_is_not_charged(gateway_h: Gateway, devnet: EvmDevnet) -> None:
    path = f"{HISTORY}?from=2024-01-01T00:00:00Z&to=2024-01-01T06:00:00Z"
    header = pay_for(new_payer(devnet), devnet, await gateway_h.offer(path))
    answer = await gateway_h.get(path, headers={"PAYMENT-SIGNATURE": header})
    assert answer.status_code == 404 and answer.json()["error"] == "no_history"
    assert "payment-response" not in answer.headers


async def test_an_answer_over_the_paid_size_cap_is_refused_uncharged_naming_a_range_that_fits(
    settings: Settings, backfilled: Any, devnet: EvmDevnet
) -> None:
    with running_gateway(with_settings(settings, response_bytes_max=16_384)) as small:
        path = f"{HISTORY}?from={FIRST}&to={LAST}"
        header = pay_for(new_payer(devnet), devnet, await small.offer(path))
        refused = await small.get(path, headers={"PAYMENT-SIGNATURE": header})
        assert refused.status_code == 400 and refused.json()["error"] == "answer_too_large", refused.text
        assert "payment-response" not in refused.headers and "not charged" in refused.json()["message"]
        fits = refused.json()["message"].split("ask to=")[1].split(" ")[0]
        smaller = f"{HISTORY}?from={FIRST}&to={fits}"
        header = pay_for(new_payer(devnet), devnet, await small.offer(smaller))
        served = await small.get(smaller, headers={"PAYMENT-SIGNATURE": header})
        assert served.status_code == 200, served.text
        assert served.json()["snapshots"][-1]["t"] == fits


# ---- the point-in-time read, filters and formats ----


async def paid(gateway: Gateway, devnet: EvmDevnet, path: str) -> Any:
    header = pay_for(new_payer(devnet), devnet, await gateway.offer(path))
    answer = await gateway.get(path, headers={"PAYMENT-SIGNATURE": header})
    assert answer.status_code == 200, answer.text
    return answer


async def test_at_filters_and_formats(gateway_h: Gateway, backfilled: Any, devnet: EvmDevnet) -> None:
    at = (await paid(gateway_h, devnet, f"/v1/streams/{GRID}/at?t=2024-05-20T12:30:00Z")).json()
    assert (at["asked"], at["t"], at["gap"]) == ("2024-05-20T12:30:00Z", "2024-05-20T12:00:00Z", False)
    assert len(at["records"]) == 4
    later = (await paid(gateway_h, devnet, f"/v1/streams/{GRID}/at?t=2024-06-20T00:00:00Z")).json()
    assert later["t"] == LAST and later["gap"] is True  # the last state known, long after its last sighting

    window = "from=2024-05-20T00:00:00Z&to=2024-05-20T03:00:00Z"
    near = (await paid(gateway_h, devnet, f"{HISTORY}?{window}&lat=55.75&lon=37.6&radius_km=50")).json()
    assert [len(s["records"]) for s in near["snapshots"]] == [1, 1, 1, 1]  # only the Moscow cell
    assert near["snapshots"][0]["records"][0]["lat"] == 55.75
    stepped = (await paid(gateway_h, devnet, f"{HISTORY}?{window}&step=7200")).json()
    assert [s["t"] for s in stepped["snapshots"]] == ["2024-05-20T00:00:00Z", "2024-05-20T02:00:00Z"]

    lines = (await paid(gateway_h, devnet, f"{HISTORY}?{window}&format=ndjson")).text.splitlines()
    assert [json.loads(line)["t"] for line in lines] == [f"2024-05-20T0{h}:00:00Z" for h in range(4)]
    table = await paid(gateway_h, devnet, f"{HISTORY}?{window}&format=csv")
    assert table.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert len(rows) == 4 * 4 and rows[0]["t"] == "2024-05-20T00:00:00Z" and float(rows[0]["temperature_c"])


# ---- MCP ----


async def test_mcp_coverage_is_free_and_history_costs_what_http_quotes(
    gateway_h: Gateway, backfilled: Any, devnet: EvmDevnet
) -> None:
    arguments = {"id": GRID, "from": FIRST, "to": LAST}
    http_price = evm_amount(quoted(await gateway_h.get(f"{HISTORY}?from={FIRST}&to={LAST}")))
    async with connected(gateway_h) as client:
        listed = {tool.name for tool in (await client.list_tools()).tools}
        coverage = await client.call_tool("get_coverage", {"id": GRID})
        offer = evm_offer(await quote(client, "get_history", arguments))
        paying = payment(new_payer(devnet), devnet, offer)
        served = await client.call_tool("get_history", arguments, meta={PAYMENT: paying})
        bad = await client.call_tool("get_history", {"id": GRID, "from": LAST, "to": FIRST})
    assert {"get_history", "get_coverage"} <= listed
    assert not coverage.is_error and coverage.structured_content["count"] >= 24
    assert int(offer["amount"]) == http_price == 2 * BASIC
    assert not served.is_error, served
    assert len(served.structured_content["snapshots"]) == 48
    assert bad.is_error and "to must be after from" in bad.structured_content["message"]
