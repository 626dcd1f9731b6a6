"""The admin dashboard in a real browser: Debian's Chromium, driven by Playwright, against a running
gateway over a ledger of its own, seeded with payments whose totals are computed here by hand."""

from __future__ import annotations

import asyncio
import http.client
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

import ledger
from app.edge.admin import dashboard
from app.edge.admin.auth import COOKIE, mint
from app.runtime.settings import AdminSettings, Settings, replace
from app.wiring import MIGRATIONS_DIR
from ledger import PaymentRecord, claims

from .conftest import ADMIN_SECRET, Gateway, running_gateway, with_settings
from .services import Database

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


async def _seed(pool: asyncpg.Pool, url: str) -> Seeded:
    """PAYMENTS payments over 2 networks, 3 streams, ~6.5 days and every outcome; the sums, by hand."""
    seeded = Seeded(url)
    now = datetime.now(UTC)
    for i in range(PAYMENTS):
        network, scheme, asset, pay_to = NETWORKS[i % 2]
        stream = STREAMS[(i // 2) % 3]
        fate = FATES[i % len(FATES)]
        amount = 1000 * (1 + i % 5)
        record = PaymentRecord(
            payment_key=f"{network}:dashboard:{secrets.token_hex(16)}",
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
            await claims.settle(pool, payment_id, f"0x{secrets.token_hex(32)}", postings, gas_cost_atomic=gas)
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
        seeded.days.add((when + timedelta(seconds=2)).strftime("%Y-%m-%d"))
    return seeded


@pytest.fixture(scope="module")
async def seeded(database: Database) -> AsyncIterator[Seeded]:
    """A migrated database of this module's own, so the page's totals are exactly what was seeded."""
    name = f"wg_dashboard_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(database.admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = database.url.replace(database.name, name)
    try:
        await ledger.migrate(url, MIGRATIONS_DIR)
        pool = await ledger.create_pool(url, size_min=1, size_max=4)
        try:
            yield await _seed(pool, url)
        finally:
            await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="module")
def site(settings: Settings, seeded: Seeded) -> Iterator[Gateway]:
    # No background reconciliation: it could move the seeded (old, unsettled) payments under the test.
    changed = with_settings(settings, database_url=seeded.url, reconcile=replace(settings.reconcile, interval_s=0))
    with running_gateway(changed) as gateway:
        yield gateway


def admin_token(ttl_s: int = 600) -> str:
    return mint(ADMIN_SECRET, AUDIENCE, "ops@test", ttl_s)


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


async def test_login_page_and_refusals(site: Gateway) -> None:
    async with httpx.AsyncClient(base_url=site.url, timeout=30, follow_redirects=False) as client:
        bare = await client.get("/admin")
        assert bare.status_code in (301, 307, 308) and bare.headers["location"].endswith("/admin/")
        page = await client.get("/admin/")
        assert page.status_code == 200 and 'id="login-form"' in page.text
        assert_page_headers(page.headers)
        for admin_only in ("static.capitals", "/admin/api", "dashboard.js", "total-revenue"):
            assert admin_only not in page.text

        origin = {"origin": site.url}
        bad = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.not-a-signature-at-all"
        refused = await client.post("/admin/login", data={"token": bad}, headers=origin)
        assert refused.status_code == 401 and 'id="login-form"' in refused.text
        assert bad not in refused.text and "not accepted" in refused.text
        assert COOKIE not in refused.headers.get("set-cookie", "")
        assert_page_headers(refused.headers)
        for junk in ("", "x" * 20_000):
            assert (await client.post("/admin/login", data={"token": junk}, headers=origin)).status_code in (400, 401)

        # A cookie with a bad token is no session: the login form again, and the cookie dropped.
        stale = await client.get("/admin/", headers={"cookie": f"{COOKIE}={bad}"})
        assert stale.status_code == 200 and 'id="login-form"' in stale.text and "total-revenue" not in stale.text
        assert f"{COOKIE}=" in stale.headers["set-cookie"] and "Max-Age=0" in stale.headers["set-cookie"]

        # Sign-in and sign-out must come from our own pages.
        good = admin_token()
        cross = await client.post("/admin/login", data={"token": good}, headers={"origin": "https://evil.example"})
        assert cross.status_code == 403 and "set-cookie" not in cross.headers
        assert (await client.post("/admin/login", data={"token": good})).status_code == 403  # no Origin at all
        assert (await client.post("/admin/logout", headers={"origin": "https://evil.example"})).status_code == 403

        signed_in = await client.post("/admin/login", data={"token": good}, headers=origin)
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/admin/"
        cookie = signed_in.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}={good};")
        attributes = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")[1:]}
        assert {"httponly", "path", "samesite", "max-age"} <= attributes.keys() and "secure" not in attributes
        assert attributes["path"] == "Path=/admin" and attributes["samesite"].lower() == "samesite=strict"
        assert 590 <= int(attributes["max-age"].split("=")[1]) <= 600
        page = await client.get("/admin/")
        assert page.status_code == 200 and 'id="total-revenue"' in page.text and "ops@test" in page.text

        out = await client.post("/admin/logout", headers=origin)
        assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]


async def test_without_an_admin_key_the_page_says_so(settings: Settings, seeded: Seeded) -> None:
    closed = with_settings(settings, database_url=seeded.url, admin=AdminSettings())
    with running_gateway(closed) as gateway:
        page = await gateway.get("/admin/", headers={"cookie": f"{COOKIE}={admin_token()}"})
        anonymous = await gateway.get("/admin/")
    assert page.status_code == 200 and "not configured" in page.text and "total-revenue" not in page.text
    assert 'id="login-form"' in anonymous.text and "not configured" in anonymous.text


async def test_static_files_are_a_fixed_set(site: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    async with httpx.AsyncClient(base_url=site.url, timeout=30) as client:
        for name, media in (
            ("dashboard.js", "text/javascript"),
            ("dashboard.css", "text/css"),
            ("findings.js", "text/javascript"),
            ("vendor/uPlot.iife.min.js", "text/javascript"),
            ("vendor/uPlot.min.css", "text/css"),
        ):
            answer = await client.get(f"/admin/static/{name}")
            assert answer.status_code == 200, name
            assert answer.headers["content-type"].startswith(media) and answer.headers["x-frame-options"] == "DENY"
            assert answer.content == dashboard.STATIC[name].path.read_bytes()
        assert "uPlot" in (await client.get("/admin/static/vendor/uPlot.iife.min.js")).text

        missing = dashboard.StaticFile(dashboard.VENDOR_DIR / "not-installed.js", dashboard.JS, vendored=True)
        monkeypatch.setitem(dashboard.STATIC, "vendor/uPlot.iife.min.js", missing)
        absent = await client.get("/admin/static/vendor/uPlot.iife.min.js")
        assert absent.status_code == 503 and "make install" in absent.text

    secret_files = [b"[build-system]", b'"name": "worldgate-tools"', b"def same_origin", b"root:x:0:0"]
    for path in (
        "/admin/static/../../pyproject.toml",
        "/admin/static/../auth.py",
        "/admin/static/..%2f..%2f..%2fpyproject.toml",
        "/admin/static/%2e%2e/%2e%2e/%2e%2e/package.json",
        "/admin/static/vendor/../../../../package.json",
        "/admin/static/vendor/..%2F..%2F..%2F..%2F..%2Fpyproject.toml",
        "/admin/static/dashboard.js/../../auth.py",
        "/admin/static//etc/passwd",
        "/admin/static/%2Fetc%2Fpasswd",
        "/admin/static/vendor/uPlot.js",  # in node_modules, but not one of the served names
        "/admin/static/",
    ):
        status, body = raw_get(site, path)
        assert status in (400, 404), (path, status)
        assert not any(marker in body for marker in secret_files), path


# ---- in Chromium ----


def _chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium (make test does it first)")
    return CHROMIUM


async def test_dashboard_in_chromium(site: Gateway, seeded: Seeded) -> None:
    from playwright.async_api import async_playwright

    executable = _chromium()
    problems: list[str] = []
    api_calls: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            context = await browser.new_context(viewport={"width": 1440, "height": 900}, base_url=site.url)
            page = await context.new_page()
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"failed: {r.method} {r.url} {r.failure}"))
            page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
            page.on("request", lambda r: api_calls.append(r.url) if "/admin/api/" in r.url else None)

            # No session: a login form and nothing of the admin's.
            first = await page.goto("/admin/")
            assert first is not None and first.status == 200
            assert_page_headers(await first.all_headers())
            await page.wait_for_selector("#login-form")
            text = await page.content()
            for admin_only in ("static.capitals", "quakes.usgs", "total-revenue", "uPlot"):
                assert admin_only not in text
            assert await page.locator(".uplot").count() == 0 and api_calls == []
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "login.png"))

            # Sign in through the form.
            await page.fill("#token", admin_token())
            async with page.expect_navigation():
                await page.click("#login-form button[type=submit]")
            assert page.url == f"{site.url}/admin/"
            await page.wait_for_selector("body[data-state=ready]", timeout=30_000)
            state = await page.get_attribute("body", "data-state")
            assert state == "ready", await page.text_content("#status")

            cookies = {c["name"]: c for c in await context.cookies()}
            session = cookies[COOKIE]
            assert session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/admin"
            assert not session["secure"] and 0 < session["expires"] - time.time() <= 600
            assert COOKIE not in await page.evaluate("document.cookie")  # HttpOnly: no script sees it

            overflow = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            assert await page.evaluate(overflow) <= 0  # the layout fits the window: nothing cut off at the side

            # The charts: five uPlot instances, with bars drawn in the revenue colour.
            assert await page.locator(".uplot canvas").count() == 5
            for chart in ("chart-day", "chart-hour", "chart-outcomes", "chart-stream", "chart-network"):
                assert await page.locator(f"#{chart} .uplot canvas").count() == 1, chart
            assert await page.get_attribute("#chart-day", "data-points") == "30"
            assert await page.get_attribute("#chart-hour", "data-points") == "48"
            assert await page.get_attribute("#chart-network", "data-points") == "2"
            assert await page.get_attribute("#chart-stream", "data-points") == "3"
            for chart in ("chart-day", "chart-hour", "chart-stream", "chart-network"):
                assert await _purple_pixels(page, chart) > 50, chart

            # The page's figures are the hand-computed sums of the seeded ledger.
            assert await page.text_content("#total-revenue") == usdc(seeded.revenue)
            assert await page.text_content("#total-revenue-atomic") == str(seeded.revenue)
            for outcome in ("settled", "pending", "failed", "released", "in_flight"):
                assert await page.text_content(f"#count-{outcome}") == str(seeded.outcomes[outcome]), outcome
            assert sum(seeded.outcomes.values()) == PAYMENTS
            for network, revenue in seeded.by_network.items():
                cell = f'#table-network tr[data-key="{network}"] td.revenue'
                assert await page.text_content(cell) == usdc(revenue), network
            for network, gas in seeded.gas.items():  # each network's gas in its own unit, named
                unit = "wei" if network.startswith("eip155") else "lamports"
                cell = f'#table-network tr[data-key="{network}"] td.gas'
                assert await page.text_content(cell) == f"{gas} {unit}", network
            for stream, revenue in seeded.by_stream.items():
                cell = f'#table-stream tr[data-key="{stream}"] td.revenue'
                assert await page.text_content(cell) == usdc(revenue), stream

            # Reconcile findings: both open; acknowledge one and close the other, each with a note.
            rows = page.locator("#findings tbody tr[data-finding]")
            await page.wait_for_function("document.querySelectorAll('#findings tr[data-finding]').length == 2")
            assert [await rows.nth(i).get_attribute("data-state") for i in range(2)] == ["open", "open"]
            first, second = [await rows.nth(i).get_attribute("data-finding") for i in range(2)]
            await page.click(f'#findings tr[data-finding="{first}"] button.finding-ack')  # no note: refused here
            assert "note" in (await page.text_content("#findings-status") or "")
            await page.fill(f'#findings tr[data-finding="{first}"] input.finding-note', "looking into it")
            await page.click(f'#findings tr[data-finding="{first}"] button.finding-ack')
            await page.wait_for_selector(f'#findings tr[data-finding="{first}"][data-state=acknowledged]')
            await page.fill(f'#findings tr[data-finding="{second}"] input.finding-note', "devnet reset, no loss")
            await page.click(f'#findings tr[data-finding="{second}"] button.finding-close')
            await page.wait_for_selector(f'#findings tr[data-finding="{second}"][data-state=closed]')
            closed = page.locator(f'#findings tr[data-finding="{second}"]')
            assert await closed.locator("button").count() == 0  # nothing more to do to a closed finding
            assert await closed.locator("td.note").text_content() == "devnet reset, no loss"
            async with httpx.AsyncClient(base_url=site.url, timeout=30) as client:
                listed = await client.get("/admin/api/findings", headers={"authorization": f"Bearer {admin_token()}"})
            by_id = {str(f["id"]): f for f in listed.json()["findings"]}
            assert by_id[first]["state"] == "acknowledged" and by_id[first]["acknowledged_by"] == "ops@test"
            assert by_id[second]["state"] == "closed" and by_id[second]["closed_by"] == "ops@test"
            assert sorted(f["payment_id"] for f in by_id.values()) == sorted(seeded.findings)
            assert len(seeded.by_network) == 2 and len(seeded.by_stream) == 3 and len(seeded.days) >= 6

            # The source matrix: every stream in the catalog, with its price.
            matrix = await page.locator("#matrix tbody tr").count()
            async with httpx.AsyncClient(base_url=site.url, timeout=30) as client:
                listed = await client.get("/admin/api/streams", headers={"authorization": f"Bearer {admin_token()}"})
            assert matrix == len(listed.json()["streams"]) > 3
            row = page.locator('#matrix tr[data-stream="static.capitals"] td')
            assert await row.nth(0).text_content() == "static.capitals"
            assert await row.nth(10).text_content() == "0.001000"

            await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            groups = {parse_qs(urlsplit(url).query).get("group_by", [""])[0] for url in api_calls}
            assert any("/admin/api/findings/" in url and url.endswith("/ack") for url in api_calls)
            assert {"day", "hour", "stream", "network"} <= groups
            assert any(url.endswith("/admin/api/streams") for url in api_calls)

            # Sign out: back to the login form, the cookie gone.
            async with page.expect_navigation():
                await page.click(".session button[type=submit]")
            await page.wait_for_selector("#login-form")
            assert COOKIE not in {c["name"] for c in await context.cookies()}
            await asyncio.sleep(0.2)  # let any late console message arrive
        finally:
            await browser.close()
    assert problems == []


async def _purple_pixels(page: Any, chart: str) -> int:
    """How many pixels of the chart's canvas are the revenue bars' purple (#5f3dc4, slightly translucent)."""
    script = """(id) => {
      const canvas = document.querySelector('#' + id + ' .uplot canvas');
      const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
      let n = 0;
      for (let i = 0; i < data.length; i += 4) {
        const [r, g, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
        if (a > 100 && b > 150 && r < 150 && g < 120 && b - g > 60) n++;
      }
      return n;
    }"""
    count: int = await page.evaluate(script, chart)
    return count
