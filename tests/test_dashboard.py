"""The admin dashboard in a real browser: Debian's Chromium, driven by Playwright, against a running
gateway over a ledger of its own, seeded with payments whose totals are computed here by hand."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
from eth_account import Account

import ledger
from app.edge.admin import dashboard
from app.edge.admin.auth import COOKIE
from app.runtime.settings import AdminSettings, BatchSettings, Settings, replace
from app.wiring import MIGRATIONS_DIR

from .conftest import Gateway, running_gateway, with_settings
from .console_seed import (
    ARTIFACTS,
    CHROMIUM_ARGS,
    Seeded,
    admin_token,
    assert_page_headers,
    chromium_path,
    raw_get,
    seed_ledger,
)
from .console_steps import (
    api_mcp_and_audit,
    charts_and_totals,
    findings_and_reconcile,
    payments_panel,
    sharing_and_fetch,
    sign_in,
    system_panel,
    users_and_bans,
)
from .services import Database


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
            yield await seed_ledger(pool, url)
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
        # a cache of its own: the page shows what was fetched, and other modules' tests fetch through the suite's
        cache_prefix=f"wgtest:dashboard:{secrets.token_hex(4)}:",
    )
    with running_gateway(changed) as gateway:
        yield gateway


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


async def test_dashboard_in_chromium(site: Gateway, seeded: Seeded) -> None:
    """Signs in as a person would, checks the charts' and panels' figures against the seeded ledger, then clicks
    every console action (each asks first where it destroys something) and finds it in the page, in the admin API
    and in the audit log. Writes the README's screenshots (docs/console/) on the way, with the values that differ
    run to run (times, ages, counters) masked, so the same run writes the same pictures."""
    from playwright.async_api import async_playwright

    executable = chromium_path()
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

            await sign_in(page, site)
            await charts_and_totals(page, seeded)
            await system_panel(page)
            await users_and_bans(page, site)
            await sharing_and_fetch(page, site)
            await payments_panel(page, site, seeded)
            await findings_and_reconcile(page, site, seeded)
            await api_mcp_and_audit(page, site)

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
