"""/metrics (who may scrape it, that it parses, that it moves with payments) and the request's log context."""

from __future__ import annotations

import io
import json
import secrets

import asyncpg
from eth_account import Account
from prometheus_client.parser import text_string_to_metric_families

from adapters import STREAMS
from app.runtime.settings import Settings
from ledger import PaymentRecord, claims
from payments.devnet.evm import EvmDevnet

from .chain import new_payer, pay_for, unb64
from .conftest import Gateway, running_gateway, with_settings
from .test_admin import token

CAPITALS = "/v1/streams/static.capitals"
METRICS_TOKEN = "scrape-token-0123456789"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample by (name, sorted labels); parsing with Prometheus' own parser is part of the test."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(gateway: Gateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = await gateway.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return samples(answer.text)


async def test_metrics_parse_and_move_when_payments_happen(gateway: Gateway, devnet: EvmDevnet) -> None:
    before = await scrape(gateway)
    network = devnet.network
    offer = await gateway.offer(CAPITALS)
    key = new_payer(devnet)
    paid = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": pay_for(key, devnet, offer)})
    assert paid.status_code == 200
    after = await scrape(gateway)

    assert (
        value(after, "worldgate_quotes_issued_total", route=CAPITALS)
        >= value(before, "worldgate_quotes_issued_total", route=CAPITALS) + 1
    )
    settled = "worldgate_settlements_total"
    assert (
        value(after, settled, network=network, outcome="settled")
        >= value(before, settled, network=network, outcome="settled") + 1
    )
    assert value(after, "worldgate_payments_verified_total", network=network) >= 1 + value(
        before, "worldgate_payments_verified_total", network=network
    )
    assert value(after, "worldgate_settle_duration_seconds_count", network=network) >= 1 + value(
        before, "worldgate_settle_duration_seconds_count", network=network
    )
    requests = "worldgate_http_requests_total"
    labels = {"route": "/v1/streams/{id}", "method": "GET", "status": "200"}
    assert value(after, requests, **labels) >= value(before, requests, **labels) + 1
    circuits = {dict(labels)["source"] for name, labels in after if name == "worldgate_upstream_circuit_open"}
    assert circuits == {s.adapter for s in STREAMS if s.adapter}  # one gauge per source, read from Redis


async def test_a_refusal_is_counted_by_reason(gateway: Gateway, devnet: EvmDevnet) -> None:
    before = await scrape(gateway)
    offer = await gateway.offer(CAPITALS)
    underpaid = pay_for(new_payer(devnet), devnet, offer, value=1)
    bad = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": underpaid})
    assert bad.status_code == 402
    reason = json.loads(bad.text)["error"]
    after = await scrape(gateway)
    refused = "worldgate_payments_refused_total"
    assert value(after, refused, reason=reason) == value(before, refused, reason=reason) + 1


async def test_who_may_scrape(settings: Settings) -> None:
    with running_gateway(with_settings(settings, metrics_token=METRICS_TOKEN)) as gateway:
        assert (await gateway.get("/metrics")).status_code == 401  # loopback alone is not enough once a token is set
        wrong = await gateway.get("/metrics", headers={"authorization": "Bearer not-the-token-at-all"})
        assert wrong.status_code == 401
        right = await gateway.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
        assert right.status_code == 200 and "worldgate_http_requests_total" in right.text
        admin = await gateway.get("/metrics", headers={"authorization": f"Bearer {token()}"})
        assert admin.status_code == 200


async def test_every_line_of_a_paid_request_names_it_and_no_line_holds_the_header(
    gateway: Gateway, devnet: EvmDevnet, log_lines: io.StringIO
) -> None:
    offer = await gateway.offer(CAPITALS)
    key = new_payer(devnet)
    header = pay_for(key, devnet, offer)
    answer = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": header, "x-request-id": "trace-42"})
    assert answer.status_code == 200 and answer.headers["x-request-id"] == "trace-42"
    mine = [json.loads(line) for line in log_lines.getvalue().splitlines() if '"trace-42"' in line]
    assert mine, "the paid request logged nothing"
    payer = Account.from_key(key).address.lower()
    payload = unb64(header)["payload"]
    payment_key = f"{devnet.network}:{devnet.asset.lower()}:{payer}:{payload['authorization']['nonce'].lower()}"
    assert all(line["request_id"] == "trace-42" for line in mine)
    assert all(line["payment_key"] == payment_key and line["payer"] == payer for line in mine)
    assert any(line["msg"] == "payment settled" for line in mine)
    everything = log_lines.getvalue()
    assert header not in everything and payload["signature"] not in everything

    odd = await gateway.get("/v1/health", headers={"x-request-id": "x" * 200})
    assert odd.headers["x-request-id"] != "x" * 200 and len(odd.headers["x-request-id"]) == 16


async def test_exposure_is_read_from_the_ledger_at_scrape_time(gateway: Gateway, pool: asyncpg.Pool) -> None:
    network = "eip155:999001"  # a network of this test alone
    record = PaymentRecord(
        payment_key=f"{network}:metrics:{secrets.token_hex(8)}",
        scheme_id="v2-eip155-exact",
        network=network,
        asset="0xasset",
        payer="0xpayer",
        pay_to="0xpayto",
        amount_atomic=12_345,
        route="GET /v1/streams/{id}",
        resource=CAPITALS,
        stream="static.capitals",
        settlement_mode="sync",
        valid_before=None,
    )
    payment_id = await claims.claim(pool, record)
    assert payment_id is not None
    for before, after in (("claimed", "verified"), ("verified", "served"), ("served", "settling")):
        assert await claims.advance(pool, payment_id, before, after)
    exposed = await scrape(gateway)
    assert value(exposed, "worldgate_unsettled_exposure_atomic", network=network) == 12_345
    assert value(exposed, "worldgate_unsettled_oldest_seconds", network=network) >= 0
    assert value(exposed, "worldgate_payments_open", state="settling") >= 1
    assert await claims.advance(pool, payment_id, "settling", "failed", reason="test")
    assert ("worldgate_unsettled_exposure_atomic", (("network", network),)) not in await scrape(gateway)
