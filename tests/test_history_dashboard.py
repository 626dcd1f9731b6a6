"""The dashboard's Time Machine panel in a real browser (Chromium, driven by Playwright, as tests/test_dashboard.py
does): coverage per stream, the timeline drawn by uPlot, the scrubber showing the snapshot in force at the chosen
moment, and the backfill column of the source table, over a ledger of its own filled by the backfill."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

import ledger
from adapters import Fetcher, ReplayServer
from adapters.history import BACKFILLERS, ColdStore, run
from app.runtime.settings import Settings, replace
from app.wiring import MIGRATIONS_DIR

from .conftest import Gateway, running_gateway, with_settings
from .console_seed import ARTIFACTS, CHROMIUM_ARGS, admin_token, chromium_path
from .services import Database

GRID = "weather.grid.temperature"
NOON_THIRTY = datetime(2024, 5, 20, 12, 30, tzinfo=UTC).timestamp()


@pytest.fixture(scope="module")
async def filled(database: Database, replay: ReplayServer) -> AsyncIterator[str]:
    """A migrated database of this module's own, with two days of the grid and the quakes backfilled."""
    name = f"wg_history_dash_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(database.admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = database.url.replace(database.name, name)
    try:
        await ledger.migrate(url, MIGRATIONS_DIR)
        pool = await ledger.create_pool(url, size_min=1, size_max=2)
        try:
            async with httpx.AsyncClient() as http:
                fetch = Fetcher(http, replay_url=replay.url).get
                for source in ("open-meteo.grid", "usgs.earthquakes"):
                    await run(BACKFILLERS[source], ColdStore(pool), fetch, days=2, replayed=True)
        finally:
            await pool.close()
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="module")
def site(settings: Settings, filled: str) -> Iterator[Gateway]:
    changed = with_settings(settings, database_url=filled, reconcile=replace(settings.reconcile, interval_s=0))
    with running_gateway(changed) as gateway:
        yield gateway


async def test_the_admin_history_api(site: Gateway) -> None:
    headers = {"authorization": f"Bearer {admin_token()}"}
    async with httpx.AsyncClient(base_url=site.url, timeout=30, headers=headers) as client:
        overview = (await client.get("/admin/api/history")).json()
        timeline = (await client.get(f"/admin/api/history/{GRID}/timeline")).json()
        at = (await client.get(f"/admin/api/history/{GRID}/at", params={"t": str(NOON_THIRTY)})).json()
        bad = await client.get(f"/admin/api/history/{GRID}/at", params={"t": "noon"})
        bundled = await client.get("/admin/api/history/static.capitals/timeline")
        anonymous = await client.get("/admin/api/history", headers={"authorization": ""})
    rows = {row["id"]: row for row in overview["streams"]}
    assert "weather.current" not in rows and "static.capitals" not in rows  # not recorded
    assert rows[GRID]["count"] == 48 and rows[GRID]["gap_count"] == 0
    assert rows[GRID]["backfill"] == {
        "source": "open-meteo.grid",
        "max_days": 90,
        "days_done": 2,
        "last_day": "2024-05-20",
    }
    assert rows["iss.position"]["backfill"] is None and rows["iss.position"]["count"] == 0
    assert timeline["count"] == 48 and timeline["points"][0] == [datetime(2024, 5, 20, tzinfo=UTC).timestamp(), 4]
    assert at["t"] == "2024-05-20T12:00:00Z" and at["count"] == 4 and len(at["records"]) == 4
    assert bad.status_code == 400 and bundled.status_code == 404 and anonymous.status_code == 401


async def test_the_time_machine_panel_in_chromium(site: Gateway) -> None:
    from playwright.async_api import async_playwright

    executable = chromium_path()
    problems: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            context = await browser.new_context(viewport={"width": 1440, "height": 900}, base_url=site.url)
            page = await context.new_page()
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
            await page.goto("/admin/")
            await page.fill("#token", admin_token())
            async with page.expect_navigation():
                await page.click("#login-form button[type=submit]")
            await page.wait_for_selector("body[data-state=ready]", timeout=30_000)

            # Coverage per recorded stream, and the chosen stream's timeline drawn by uPlot.
            await page.wait_for_selector(f'#tm-chart[data-stream="{GRID}"][data-points="48"] .uplot canvas')
            grid = page.locator(f'#tm-coverage tr[data-stream="{GRID}"]')
            assert await grid.locator("td.count").text_content() == "48"
            assert await grid.locator("td.gaps").text_content() == "0"
            assert await grid.locator("td").nth(1).text_content() == "2024-05-20 00:00:00Z"
            assert await grid.locator("td").nth(2).text_content() == "2024-05-21 23:00:00Z"
            assert await page.locator('#tm-coverage tr[data-stream="weather.current"]').count() == 0
            assert await page.locator(".uplot canvas").count() == 6  # the five ledger charts and the timeline
            assert await page.input_value("#tm-stream") == GRID

            # The scrubber: the snapshot in force at 12:30 is the 12:00 one, its four cells listed.
            await page.eval_on_selector(
                "#tm-scrub", "(el, v) => { el.value = String(v); el.dispatchEvent(new Event('input')); }", NOON_THIRTY
            )
            await page.wait_for_selector('#tm-snapshot[data-t="2024-05-20T12:00:00Z"][data-count="4"]')
            summary = await page.text_content("#tm-summary") or ""
            assert "In force at 2024-05-20 12:30:00Z" in summary and "2024-05-20 12:00:00Z" in summary
            assert await page.locator("#tm-records tbody tr").count() == 4
            assert await page.text_content("#tm-moment") == "2024-05-20 12:30:00Z"
            assert await _marker_pixels(page) > 20  # the scrubber's line drawn on the timeline

            ARTIFACTS.mkdir(exist_ok=True)
            await page.locator("#time-machine").screenshot(path=str(ARTIFACTS / "time-machine.png"))

            # Another stream: its own timeline, and its snapshot at the scrubber's end.
            await page.select_option("#tm-stream", "quakes.usgs")
            await page.wait_for_selector('#tm-chart[data-stream="quakes.usgs"][data-points="1"]')
            await page.wait_for_selector('#tm-snapshot[data-t="2023-08-05T01:29:30Z"][data-count="1"]')

            # The source table's backfill column.
            await page.wait_for_selector(f'#matrix tr[data-stream="{GRID}"] td.backfill')
            backfill = {
                stream: await page.text_content(f'#matrix tr[data-stream="{stream}"] td.backfill')
                for stream in (GRID, "space.kp", "iss.position", "static.capitals")
            }
            assert backfill == {
                GRID: "2 of 90 days (to 2024-05-20)",
                "space.kp": "0 of 7 days",
                "iss.position": "not kept upstream",
                "static.capitals": "\u2013",  # an en dash: no backfill for bundled data
            }
            overflow = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            assert await page.evaluate(overflow) <= 0
            await asyncio.sleep(0.2)
        finally:
            await browser.close()
    assert problems == []


async def _marker_pixels(page: Any) -> int:
    """Pixels of the timeline canvas in the scrubber line's orange (#e8590c)."""
    script = """() => {
      const canvas = document.querySelector('#tm-chart .uplot canvas');
      const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
      let n = 0;
      for (let i = 0; i < data.length; i += 4) {
        if (data[i + 3] > 100 && data[i] > 200 && data[i + 1] > 60 && data[i + 1] < 120 && data[i + 2] < 60) n++;
      }
      return n;
    }"""
    count: int = await page.evaluate(script)
    return count
