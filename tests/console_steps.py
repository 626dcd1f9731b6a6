"""The console page walked in Chromium, panel by panel: what each shows against the seeded ledger, and every
action clicked (asked first where it destroys something) and found in the page, the admin API and the audit log."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from app import __version__
from app.edge.admin.auth import COOKIE

from .conftest import Gateway
from .console_seed import (
    ARTIFACTS,
    BUNDLED,
    DOCS_CONSOLE,
    EMPTY,
    NETWORKS,
    PAYMENTS,
    SCREENSHOTS_ASKED,
    SHOT_HEIGHT_MAX,
    Seeded,
    admin_token,
    assert_page_headers,
    bearer,
    usdc,
)


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


async def sign_in(page: Any, site: Gateway) -> None:
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


async def charts_and_totals(page: Any, seeded: Seeded) -> None:
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


async def system_panel(page: Any) -> None:
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


async def users_and_bans(page: Any, site: Gateway) -> None:
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


async def sharing_and_fetch(page: Any, site: Gateway) -> None:
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


async def payments_panel(page: Any, site: Gateway, seeded: Seeded) -> None:
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


async def findings_and_reconcile(page: Any, site: Gateway, seeded: Seeded) -> None:
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


async def api_mcp_and_audit(page: Any, site: Gateway) -> None:
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
