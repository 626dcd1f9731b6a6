"""The admin dashboard in a real browser: Debian's Chromium, driven by Playwright, against a running
gateway over a ledger of its own, seeded with payments whose totals are computed here by hand."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import os
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
from eth_account import Account

import ledger
from adapters import STREAMS as REGISTERED
from app import __version__
from app.edge.admin import dashboard
from app.edge.admin.auth import COOKIE, mint
from app.runtime.settings import AdminSettings, BatchSettings, Settings, replace
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
    """No background reconciliation: it could move the seeded (old, unsettled) payments under the test. Batch
    settlement offered (the console can flush it) to a payTo of this module's own, its timers far off."""
    assert settings.evm is not None
    pay_to = Account.from_key(hashlib.sha256(b"worldgate dashboard payTo").digest()).address
    changed = with_settings(
        settings,
        database_url=seeded.url,
        reconcile=replace(settings.reconcile, interval_s=0),
        schemes=("exact", "batch-settlement"),
        batch=BatchSettings(claim_interval_s=3600, settle_interval_s=3600),
        evm=replace(settings.evm, pay_to=pay_to),
    )
    with running_gateway(changed) as gateway:
        yield gateway


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
            ("console.js", "text/javascript"),
            ("sources.js", "text/javascript"),
            ("payments.js", "text/javascript"),
            ("console.css", "text/css"),
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
    """Signs in as a person would, checks the charts' and panels' figures against the seeded ledger, then clicks
    every console action (each asks first where it destroys something) and finds it in the page, in the admin API
    and in the audit log. Writes the README's screenshots (docs/console/) on the way, with the values that differ
    run to run (times, ages, counters) masked, so the same run writes the same pictures."""
    from playwright.async_api import async_playwright

    executable = _chromium()
    problems: list[str] = []
    api_calls: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            context = await browser.new_context(
                viewport={"width": 1200, "height": 1400}, device_scale_factor=1, base_url=site.url
            )
            page = await context.new_page()
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"failed: {r.method} {r.url} {r.failure}"))
            page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
            page.on("request", lambda r: api_calls.append(r.url) if "/admin/api/" in r.url else None)
            await page.clock.install()  # time flows as usual; the screenshots pause it (_shot)

            await _sign_in(page, site)
            await _charts_and_totals(page, seeded)
            await _system_panel(page)
            await _users_and_bans(page, site)
            await _sharing_and_fetch(page, site)
            await _payments_panel(page, site, seeded)
            await _findings_and_reconcile(page, site, seeded)
            await _api_mcp_and_audit(page, site)

            groups = {parse_qs(urlsplit(url).query).get("group_by", [""])[0] for url in api_calls}
            assert {"day", "hour", "stream", "network"} <= groups
            for view in ("system", "scheduler", "matrix", "users", "bans", "audit", "api-status", "payments/summary"):
                assert any(urlsplit(url).path == f"/admin/api/{view}" for url in api_calls), view
            await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

            # Sign out: back to the login form, the cookie gone.
            async with page.expect_navigation():
                await page.click(".session button[type=submit]")
            await page.wait_for_selector("#login-form")
            assert COOKIE not in {c["name"] for c in await context.cookies()}
            await asyncio.sleep(0.2)  # let any late console message arrive
        finally:
            await browser.close()
    assert problems == []


async def _until(page: Any, script: str, within_s: float = 30.0) -> None:
    """Wait until a JS expression is true (page.evaluate: the page's CSP forbids the eval wait_for_function uses)."""
    deadline = time.monotonic() + within_s
    while not await page.evaluate(script):
        assert time.monotonic() < deadline, f"still false after {within_s:g} s: {script}"
        await asyncio.sleep(0.05)


async def _shot(page: Any, selector: str, name: str) -> None:
    """One panel as the README shows it, taken with the page's timers paused (no refresh moves it meanwhile) and
    the mouse away (no row hovered); what differs run to run (class `volatile`) is masked."""
    target = DOCS_CONSOLE / f"{name}.png"
    if not (SCREENSHOTS_ASKED or not target.exists()):
        target = ARTIFACTS / "console" / f"{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    await page.mouse.move(0, 0)
    await page.clock.pause_at(await page.evaluate("Date.now() / 1000") + 0.5)  # seconds, ahead
    await asyncio.sleep(0.5)  # a refresh asked for before the pause has come back and been drawn
    await page.evaluate("document.querySelectorAll('.scroll').forEach(el => { el.scrollLeft = 0; })")
    # masked values as one placeholder: their own widths would move the table's columns by a pixel run to run
    await page.evaluate(
        "document.querySelectorAll('.volatile').forEach(el => { if (!el.children.length) el.textContent = '\u2026'; })"
    )
    # the panel scrolled to the top of the window, then a clip of the window: no resize (a full-page shot resizes
    # the window, and what listens to that moves), no scrolling while the picture is taken
    box = await page.evaluate(
        """(selector) => {
          const el = document.querySelector(selector);
          el.scrollIntoView({block: "start"});
          const r = el.getBoundingClientRect();
          return {x: r.left, y: r.top, width: r.width, height: r.height};
        }""",
        selector,
    )
    box["height"] = min(box["height"], SHOT_HEIGHT_MAX)  # a long panel (the matrix of many streams): its top
    await page.screenshot(
        path=str(target),
        clip={k: round(v) for k, v in box.items()},
        animations="disabled",
        caret="hide",
        mask=[page.locator(".volatile")],
        mask_color="#dee2e6",
    )
    await page.clock.resume()


async def _confirm(page: Any, expected: str, *, accept: bool = True) -> None:
    """The page's own confirmation dialog: it says what will happen; confirm or cancel."""
    await page.wait_for_selector("dialog#confirm[open]")
    assert expected in (await page.text_content("#confirm-text") or "")
    await page.click("#confirm-ok" if accept else "#confirm-cancel")
    await page.wait_for_selector("dialog#confirm:not([open])", state="attached")


async def _api(site: Gateway, method: str, path: str, **kwargs: Any) -> Any:
    async with httpx.AsyncClient(base_url=site.url, timeout=30, headers=bearer()) as client:
        answer = await client.request(method, path, **kwargs)
    assert answer.status_code < 400, answer.text
    return answer.json()


async def _audited(site: Gateway, action: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = (await _api(site, "GET", "/admin/api/audit", params={"action": action}))["entries"]
    return entries


async def _sign_in(page: Any, site: Gateway) -> None:
    # No session: a login form and nothing of the admin's.
    first = await page.goto("/admin/")
    assert first is not None and first.status == 200
    assert_page_headers(await first.all_headers())
    await page.wait_for_selector("#login-form")
    text = await page.content()
    for admin_only in ("static.capitals", "quakes.usgs", "total-revenue", "uPlot", "console.js"):
        assert admin_only not in text
    assert await page.locator(".uplot").count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "login.png"))

    await page.fill("#token", admin_token())
    async with page.expect_navigation():
        await page.click("#login-form button[type=submit]")
    assert page.url == f"{site.url}/admin/"
    await page.wait_for_selector("body[data-state=ready]", timeout=30_000)
    assert await page.get_attribute("body", "data-state") == "ready", await page.text_content("#status")
    await page.wait_for_selector("body[data-live=ok]", timeout=30_000)
    await _api(site, "GET", "/admin/api/whoami")  # this test's own session (bearer), listed from now on
    await page.wait_for_selector('#sessions tr[data-via="bearer"]', timeout=30_000)

    cookies = {c["name"]: c for c in await page.context.cookies()}
    session = cookies[COOKIE]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/admin"
    assert not session["secure"] and 0 < session["expires"] - time.time() <= 600
    assert COOKIE not in await page.evaluate("document.cookie")  # HttpOnly: no script sees it
    overflow = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    assert await page.evaluate(overflow) <= 0  # the layout fits the window: nothing cut off at the side


async def _charts_and_totals(page: Any, seeded: Seeded) -> None:
    # The charts: five uPlot instances (the Time Machine draws none: nothing is recorded here).
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
    assert len(seeded.by_network) == 2 and len(seeded.by_stream) == 3 and len(seeded.days) >= 6


async def _system_panel(page: Any) -> None:
    assert await page.text_content("#sys-version") == __version__
    assert await page.text_content("#sys-mode") == "devnet · replay"
    parts = await page.locator("#sys-parts .badge").all_text_contents()
    assert {"database: configured", "chains: devnet", "upstreams: replay", "scheduler: off"} <= set(parts)
    assert {"Base Sepolia: devnet", "Solana devnet: devnet"} <= set(parts)
    assert (await page.text_content("#sys-sources") or "").startswith("0 / ")  # nothing fetched yet
    assert int(await page.text_content("#sys-points") or "0") > 0  # the bundled sets
    # two admin sessions (this browser, this test's bearer), and the payer seen in the last hour (the newest seeded
    # payment, 30 minutes old)
    assert await page.text_content("#sys-users") == "3"


async def _users_and_bans(page: Any, site: Gateway) -> None:
    assert await page.locator("#sessions tr[data-subject]").count() == 2  # this browser, and this test's bearer
    assert await page.locator("#payers tr[data-payer]").count() == 1
    assert await page.text_content("#live-subscribers tbody td.empty") == "no live-feed subscriber"
    # address bans: the gateway's middleware has the guard, so the option is on and the page has no excuse
    assert not await page.locator("#ban-kind option[value=address]").is_disabled()
    assert (await page.text_content("#ban-address-note") or "") == ""

    # Ban the payer seen lately, from its row, for a day; the page asks first.
    await page.click('#payers tr[data-payer="0xpayer0"] button.ban-payer')
    assert await page.input_value("#ban-value") == "0xpayer0"
    await page.fill("#ban-reason", "scraping the catalog")
    await page.select_option("#ban-expiry", "86400")
    await page.click("#ban-submit")
    await _confirm(page, "Ban payer 0xpayer0 for 1 day")
    await page.wait_for_selector('#bans tr[data-ban="0xpayer0"]')
    assert "banned" in (await page.text_content("#ban-status") or "")
    [ban] = (await _api(site, "GET", "/admin/api/bans"))["bans"]
    assert ban["payer"] == "0xpayer0" and ban["reason"] == "scraping the catalog" and ban["created_by"] == "ops@test"
    expires = datetime.fromisoformat(ban["expires_at"].replace("Z", "+00:00"))
    assert timedelta(hours=23, minutes=59) < expires - datetime.now(UTC) <= timedelta(days=1)
    await _shot(page, "#users", "users")
    await _shot(page, "#banned", "bans")

    # Unban: cancelled once (nothing changes), then confirmed.
    await page.click('#bans tr[data-ban="0xpayer0"] button.unban')
    await _confirm(page, "Lift the ban on payer 0xpayer0", accept=False)
    assert (await page.text_content("#ban-status")) == "cancelled"
    assert len((await _api(site, "GET", "/admin/api/bans"))["bans"]) == 1
    await page.click('#bans tr[data-ban="0xpayer0"] button.unban')
    await _confirm(page, "Lift the ban on payer 0xpayer0")
    await page.wait_for_selector('#bans tr[data-ban="0xpayer0"]', state="detached")
    assert (await _api(site, "GET", "/admin/api/bans"))["bans"] == []
    assert [e["action"] for e in await _audited(site, "ban.")] == ["ban.remove", "ban.add"]

    # An address ban (a network, not this browser's): listed with its expiry, then lifted.
    network = "203.0.113.0/24"
    await page.select_option("#ban-kind", "address")
    await page.fill("#ban-value", network)
    await page.fill("#ban-reason", "credential stuffing")
    await page.select_option("#ban-expiry", "3600")
    await page.click("#ban-submit")
    await _confirm(page, f"Ban address {network} for 1 hour")
    await page.wait_for_selector(f'#bans tr[data-ban="{network}"]')
    [banned] = (await _api(site, "GET", "/admin/api/bans"))["address_bans"]
    assert banned["address"] == network and banned["reason"] == "credential stuffing"
    await page.click(f'#bans tr[data-ban="{network}"] button.unban')
    await _confirm(page, f"Lift the ban on address {network}")
    await page.wait_for_selector(f'#bans tr[data-ban="{network}"]', state="detached")
    assert (await _api(site, "GET", "/admin/api/bans"))["address_bans"] == []
    audited = [(e["action"], e["target"]) for e in await _audited(site, "ban.")]
    assert audited[:2] == [("ban.remove", network), ("ban.add", network)]


async def _public(site: Gateway, stream: str) -> tuple[bool, int]:
    async with httpx.AsyncClient(base_url=site.url, timeout=30) as client:
        listed = {s["id"] for s in (await client.get("/v1/streams")).json()["streams"]}
        return stream in listed, (await client.get(f"/v1/streams/{stream}")).status_code


async def _sharing_and_fetch(page: Any, site: Gateway) -> None:
    row = '#matrix tr[data-stream="static.volcanoes"]'
    assert await page.locator("#matrix tbody tr[data-stream]").count() == len(
        (await _api(site, "GET", "/admin/api/matrix"))["streams"]
    )
    assert await page.text_content('#matrix tr[data-stream="static.capitals"] td:nth-child(11)') == "0.001000"
    # unshare (asks first): gone from the public catalog, its URL a 404
    await page.select_option(f"{row} select.sharing", "not_shared")
    await _confirm(page, "Set static.volcanoes to not shared")
    await page.wait_for_selector(f'{row}[data-sharing="not_shared"]')
    assert await _public(site, "static.volcanoes") == (False, 404)
    # maintenance (asks first): listed, not sold
    await page.select_option(f"{row} select.sharing", "maintenance")
    await _confirm(page, "Set static.volcanoes to maintenance")
    await page.wait_for_selector(f'{row}[data-sharing="maintenance"]')
    assert await _public(site, "static.volcanoes") == (True, 503)
    # shared again: no question asked
    await page.select_option(f"{row} select.sharing", "ok")
    await page.wait_for_selector(f'{row}[data-sharing="ok"]')
    assert await _public(site, "static.volcanoes") == (True, 402)
    changes = [(e["actor"], e["detail"]["sharing"]) for e in await _audited(site, "sharing.set")]
    assert changes == [("ops@test", "ok"), ("ops@test", "maintenance"), ("ops@test", "not_shared")]

    # Force a fetch: the source is asked past the cache; the matrix and the scheduler show it fetched.
    quakes = '#matrix tr[data-stream="quakes.usgs"]'
    assert await page.text_content(f"{quakes} td:nth-child(6)") == EMPTY
    await page.click(f"{quakes} button.fetch")
    await _until(page, "(document.getElementById('matrix-status').textContent || '').startsWith('quakes.usgs fetched')")
    await _until(
        page, "document.querySelector('#matrix tr[data-stream=\"quakes.usgs\"] td.health').textContent === 'ok'"
    )
    assert await page.text_content(f"{quakes} td.points") == "1"
    await _until(
        page,
        "document.querySelector('#schedule tr[data-stream=\"quakes.usgs\"] td:nth-child(6)').textContent !== '\u2013'",
    )
    await _until(page, "document.getElementById('sys-sources').textContent.startsWith('1 / ')")
    [fetched] = await _audited(site, "stream.fetch")
    assert fetched["target"] == "quakes.usgs" and fetched["detail"]["outcome"] == "fetched"
    assert await page.is_disabled('#matrix tr[data-stream="static.capitals"] button.fetch')  # bundled
    assert await page.text_content('#tiers tr[data-tier="static"] td.bundled') == str(BUNDLED)
    await _shot(page, "#system", "system")
    await _shot(page, "#sources", "sources")
    await _shot(page, "#scheduler", "scheduler")


async def _payments_panel(page: Any, site: Gateway, seeded: Seeded) -> None:
    for (network, scheme, *_), sales in zip(NETWORKS, (seeded.sales[n[0]] for n in NETWORKS), strict=True):
        row = f'#sales tr[data-key="{network}|{scheme}"]'
        assert await page.text_content(f"{row} td.sales") == str(sales), network
        assert await page.text_content(f"{row} td.revenue") == usdc(seeded.by_network[network]), network
        assert await page.text_content(f"{row} td.unsettled") == usdc(seeded.unsettled[network]), network
    assert await page.locator("#pending tr[data-payment]").count() == seeded.pending

    # Search: one payer's settled payments; a row opens the payment's events and journal.
    await page.fill("#pay-payer", "0xpayer1")
    await page.select_option("#pay-state", "settled")
    await page.click("#pay-submit")
    await page.wait_for_selector("#pay-results tr[data-payment]")
    found = await _api(site, "GET", "/admin/api/payments", params={"payer": "0xpayer1", "state": "settled"})
    assert await page.locator("#pay-results tr[data-payment]").count() == found["count"] > 0
    first = found["payments"][0]
    await page.click(f'#pay-results tr[data-payment="{first["id"]}"]')
    await page.wait_for_selector(f'#pay-detail[data-payment="{first["id"]}"]')
    events = await page.locator("#pay-events tbody tr").count()
    detail = await _api(site, "GET", f"/admin/api/payments/{first['id']}")
    assert events == len(detail["events"]) == 5  # claimed, verified, served, settling, settled
    amounts = await page.locator("#pay-journal td.amount").all_text_contents()
    assert len(amounts) >= 2 and sum(int(a) for a in amounts) == 0  # every asset's lines balance

    # Flush batch settlement (asks first): nothing owed to this payTo, so no transaction.
    assert not await page.is_disabled("#flush")
    await page.click("#flush")
    await _confirm(page, "Flush batch settlement now?")
    await _until(page, "(document.getElementById('pay-status').textContent || '').startsWith('flushed')")
    assert "0 claim transaction(s)" in (await page.text_content("#pay-status") or "")
    [flush] = await _audited(site, "batch.flush")
    assert flush["actor"] == "ops@test" and flush["detail"]["claims"] == 0
    await _shot(page, "#payments", "payments")


async def _findings_and_reconcile(page: Any, site: Gateway, seeded: Seeded) -> None:
    # Reconcile findings: both open; acknowledge one and close the other (closing asks first), each with a note.
    rows = page.locator("#findings tbody tr[data-finding]")
    await _until(page, "document.querySelectorAll('#findings tr[data-finding]').length == 2")
    assert [await rows.nth(i).get_attribute("data-state") for i in range(2)] == ["open", "open"]
    first, second = [await rows.nth(i).get_attribute("data-finding") for i in range(2)]
    await page.click(f'#findings tr[data-finding="{first}"] button.finding-ack')  # no note: refused here
    assert "note" in (await page.text_content("#findings-status") or "")
    await page.fill(f'#findings tr[data-finding="{first}"] input.finding-note', "looking into it")
    await page.click(f'#findings tr[data-finding="{first}"] button.finding-ack')
    await page.wait_for_selector(f'#findings tr[data-finding="{first}"][data-state=acknowledged]')
    await page.fill(f'#findings tr[data-finding="{second}"] input.finding-note', "devnet reset, no loss")
    await page.click(f'#findings tr[data-finding="{second}"] button.finding-close')
    await _confirm(page, f"Close finding {second}?")
    await page.wait_for_selector(f'#findings tr[data-finding="{second}"][data-state=closed]')
    closed = page.locator(f'#findings tr[data-finding="{second}"]')
    assert await closed.locator("button").count() == 0  # nothing more to do to a closed finding
    assert await closed.locator("td.note").text_content() == "devnet reset, no loss"
    listed = await _api(site, "GET", "/admin/api/findings")
    by_id = {str(f["id"]): f for f in listed["findings"]}
    assert by_id[first]["state"] == "acknowledged" and by_id[first]["acknowledged_by"] == "ops@test"
    assert by_id[second]["state"] == "closed" and by_id[second]["closed_by"] == "ops@test"
    assert sorted(f["payment_id"] for f in by_id.values()) == sorted(seeded.findings)
    assert [e["action"] for e in await _audited(site, "finding.")] == ["finding.close", "finding.acknowledge"]

    # Run reconcile (asks first): the page says what it did, as the audit log does.
    await page.click("#run-reconcile")
    await _confirm(page, "Run reconcile now?")
    await _until(
        page, "(document.getElementById('findings-status').textContent || '').startsWith('reconcile run')", within_s=60
    )
    [run] = await _audited(site, "reconcile.run")
    said = await page.text_content("#findings-status") or ""
    assert f"reconcile run {run['detail']['run_id']}: {run['detail']['checked']} checked" in said


async def _api_mcp_and_audit(page: Any, site: Gateway) -> None:
    assert await page.text_content("#api-verdict") == "ok"
    await page.wait_for_selector('#api-routes tr[data-route="/v1/streams"]')
    tools = {
        t: await page.text_content(f'#mcp-tools tr[data-tool="{t}"] td:nth-child(2)')
        for t in ("get_stream", "get_world_state", "list_streams", "health")
    }
    assert tools == {"get_stream": "paid", "get_world_state": "paid", "list_streams": "free", "health": "free"}

    # Keep a live feed alive (the Live feeds panel, live.js): the Connected users panel lists it as kept alive.
    await page.click('#live-table tr[data-stream="iss.position"] button')
    await page.wait_for_selector('#live-subscribers tr[data-feed="iss.position"]', timeout=15_000)
    assert await page.text_content('#live-subscribers tr[data-feed="iss.position"] td:nth-child(4)') == "yes"
    await page.click('#live-table tr[data-stream="iss.position"] button')  # and stop
    await page.wait_for_selector('#live-subscribers tr[data-feed="iss.position"]', state="detached", timeout=15_000)

    # The audit log shows every action this test took, newest first, each with who took it.
    await page.click("#refresh")
    await page.wait_for_selector('#audit tr[data-action="live.stop"]')
    actions = await page.locator("#audit tbody tr").evaluate_all("rows => rows.map(r => r.dataset.action)")
    assert actions == [
        "live.stop",
        "live.start",
        "reconcile.run",
        "finding.close",
        "finding.acknowledge",
        "batch.flush",
        "stream.fetch",
        "sharing.set",
        "sharing.set",
        "sharing.set",
        "ban.remove",
        "ban.add",
        "ban.remove",
        "ban.add",
    ]
    assert set(await page.locator("#audit tbody td:nth-child(3)").all_text_contents()) == {"ops@test"}
    await _shot(page, "#audit-card", "audit")
    await page.select_option("#audit-filter", "ban.")
    await _until(page, "document.querySelectorAll('#audit tbody tr').length == 4")


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
