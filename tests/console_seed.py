"""The console tests' ledger: payments seeded with totals computed here by hand, the admin token, the page's
security headers and the browser they drive (Debian's Chromium)."""

from __future__ import annotations

import hashlib
import http.client
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

import ledger
from adapters import STREAMS as REGISTERED
from app.edge.admin.auth import mint
from ledger import PaymentRecord, claims

from .conftest import ADMIN_SECRET, Gateway

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
# The README shows docs/console/; a run writes there only when asked (WORLDGATE_SCREENSHOTS=1) or when a picture is
# missing: text can land a pixel apart run to run, and the tree should not change on every test run. Otherwise the
# pictures go to tests/artifacts/console/ to look at.
DOCS_CONSOLE = Path(__file__).resolve().parents[1] / "docs" / "console"
SCREENSHOTS_ASKED = os.environ.get("WORLDGATE_SCREENSHOTS") == "1"
SHOT_HEIGHT_MAX = 1380  # px: the window is 1400 high
AUDIENCE = "worldgate-admin"

BASE = (
    "eip155:84532",
    "v2-eip155-exact",
    "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
    "0xe5849773dB9157b0138D83bA4A8F3924805D1250",
)
SOLANA = (
    "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1",
    "v2-solana-exact",
    "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU",
    "Bxcqse9e3UBwGdexhWBkZjaAb3JhWoBgp1ucWiqAX89D",
)
NETWORKS = (BASE, SOLANA)
BUNDLED = sum(1 for s in REGISTERED if s.interval_s is None)  # streams shipped with worldgate, never fetched
EMPTY = "\u2013"  # an en dash: what the page shows for nothing
SALE = ("served", "settling", "settled")  # the data left: a sale, final or not
UNSETTLED = ("served", "settling")
STREAMS = ("static.capitals", "quakes.usgs", "weather.current")
# Where each seeded payment ends up; 13 entries against 2 networks and 3 streams, so every pairing occurs.
FATES = (
    "settled",
    "settled",
    "settling",
    "settled",
    "failed",
    "settled",
    "released",
    "settled",
    "served",
    "settled",
    "expired",
    "claimed",
    "verified",
)
PATHS = {
    "claimed": (),
    "verified": ("verified",),
    "served": ("verified", "served"),
    "settling": ("verified", "served", "settling"),
    "failed": ("verified", "served", "settling", "failed"),
    "settled": ("verified", "served", "settling"),
    "released": ("released",),
    "expired": ("expired",),
}
OUTCOME = {  # the report's columns
    "settled": "settled",
    "settling": "pending",
    "failed": "failed",
    "released": "released",
    "expired": "released",
    "claimed": "in_flight",
    "verified": "in_flight",
    "served": "in_flight",
}
PAYMENTS = 42


def usdc(atomic: int) -> str:
    return f"{Decimal(atomic).scaleb(-6):.6f}"


@dataclass
class Seeded:
    url: str
    revenue: int = 0
    by_network: Counter[str] = field(default_factory=Counter)
    by_stream: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    days: set[str] = field(default_factory=set)
    gas: Counter[str] = field(default_factory=Counter)  # per network, in its own unit
    findings: list[int] = field(default_factory=list)  # reconcile findings raised on seeded payments
    sales: Counter[str] = field(default_factory=Counter)  # per network (each has one scheme here)
    unsettled: Counter[str] = field(default_factory=Counter)
    pending: int = 0


async def seed_ledger(pool: asyncpg.Pool, url: str) -> Seeded:
    """PAYMENTS payments over 2 networks, 3 streams, ~6.5 days and every outcome; the sums, by hand."""
    seeded = Seeded(url)
    now = datetime.now(UTC)
    for i in range(PAYMENTS):
        network, scheme, asset, pay_to = NETWORKS[i % 2]
        stream = STREAMS[(i // 2) % 3]
        fate = FATES[i % len(FATES)]
        amount = 1000 * (1 + i % 5)
        record = PaymentRecord(
            payment_key=f"{network}:dashboard:{i:032x}",  # the same every run: screenshots show them
            scheme_id=scheme,
            network=network,
            asset=asset,
            payer=f"0xpayer{i % 4}",
            pay_to=pay_to,
            amount_atomic=amount,
            route="GET /v1/streams/{id}",
            resource=f"/v1/streams/{stream}",
            stream=stream,
            settlement_mode="sync",
            valid_before=None,
        )
        payment_id = await claims.claim(pool, record)
        assert payment_id is not None
        state = "claimed"
        for step in PATHS[fate]:
            assert await claims.advance(pool, payment_id, state, step, reason="seeded" if step == "failed" else None)
            state = step
        if fate == "settled":
            gas = 21_000 + i if network.startswith("eip155") else 5_000
            postings = ledger.settlement_postings(
                network=network,
                asset=asset,
                pay_to=pay_to,
                revenue_account=stream,
                amount_atomic=amount,
                relayer="0xrelayer" if network.startswith("eip155") else "FeePayer1111",
                gas_cost_atomic=gas,
            )
            tx_hash = "0x" + hashlib.sha256(f"dashboard {i}".encode()).hexdigest()
            await claims.settle(pool, payment_id, tx_hash, postings, gas_cost_atomic=gas)
            seeded.revenue += amount
            seeded.gas[network] += gas
            if len(seeded.findings) < 2:  # two findings for the operator to acknowledge and close
                await ledger.audit.flag(pool, payment_id, "settlement_not_on_chain", f"seeded finding {i}")
                seeded.findings.append(payment_id)
            seeded.by_network[network] += amount
            seeded.by_stream[stream] += amount
        when = now - timedelta(minutes=30 + i * 222)  # every 3.7 h, back ~6.5 days; the newest inside 48 h
        await pool.execute(
            "UPDATE payments SET created_at = $2::timestamptz,"
            " settled_at = CASE WHEN state = 'settled' THEN $2::timestamptz + interval '2 s' END WHERE id = $1",
            payment_id,
            when,
        )
        seeded.outcomes[OUTCOME[fate]] += 1
        seeded.sales[network] += fate in SALE
        if fate in UNSETTLED:
            seeded.unsettled[network] += amount
            seeded.pending += 1
        seeded.days.add((when + timedelta(seconds=2)).strftime("%Y-%m-%d"))
    return seeded


def admin_token(ttl_s: int = 600) -> str:
    return mint(ADMIN_SECRET, AUDIENCE, "ops@test", ttl_s)


_TOKEN: list[str] = []


def bearer() -> dict[str, str]:
    """One token for this module's API calls: one admin session in the console's list, however many calls."""
    if not _TOKEN:
        _TOKEN.append(admin_token(1800))
    return {"authorization": f"Bearer {_TOKEN[0]}"}


def raw_get(gateway: Gateway, path: str) -> tuple[int, bytes]:
    """A GET with the path sent byte for byte (httpx would resolve `..` before sending)."""
    parts = urlsplit(gateway.url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        connection.endheaders()
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


SECURITY = {
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


def assert_page_headers(headers: Any) -> None:
    for name, value in SECURITY.items():
        assert headers[name] == value, name
    assert headers["cache-control"] == "no-store"
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "http" not in csp  # no inline code, no CDN


# ---- without a browser: the login's answers, headers and the static files ----


def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium (make test does it first)")
    return CHROMIUM
