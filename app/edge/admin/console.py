"""The console's views in the admin API, beside api.py's routes and behind the same token (all GET, all JSON):

- /admin/api/system: version, uptime, mode (embedded or configured parts, mainnet, testnet or devnet, replay or
  live), connected users (admin sessions, payers of the last hour, live-feed subscribers), sources fetched, total
  points, stream counts by sharing, and which actions this gateway offers (batch flush, address bans, live feeds).
- /admin/api/scheduler: the fetch tiers and each stream's schedule (app/usecases/scheduler_view.py).
- /admin/api/matrix: every stream with its schedule, health, sharing (and who set it), price, points, parent
  fetch and backfill coverage (app/usecases/matrix_view.py).
- /admin/api/users: admin sessions seen in the last ACTIVE_S, payers seen in the last hour, and the live feeds
  with subscribers (or kept alive), with how many.
- /admin/api/audit?action=&actor=&before_id=&limit=: the audit log, newest first.
- /admin/api/api-status: requests per public route and status class since this worker started.
- /admin/api/payments/summary?from=&to=: sales, revenue and unsettled value by network and scheme.
- /admin/api/payments/pending?limit=: the sales whose settlement is not final, the longest waiting first.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app import __version__
from app.edge.admin.auth import Admin
from app.edge.admin.bans import enforces_addresses
from app.edge.admin.http import AdminCore, _int_param, _json, _window
from app.runtime import metrics
from app.usecases import batch_setup, system_view
from app.usecases.matrix_view import backfill_coverage
from app.usecases.scheduler_view import scheduler_view
from ledger import console, operator

ACTIVE_S = 120.0  # an admin session seen this recently is connected (the page polls every few seconds)
PAYERS_S = 3600.0
LIVE_OFF = "live feeds are off here (WORLDGATE_LIVE=false)"


def settings_of(request: Request) -> Any:
    """The app's settings (the wiring keeps them in app.state), or None in an app built without them."""
    return getattr(request.app.state, "settings", None)


async def live_subscribers(request: Request, streams: list[Any]) -> list[dict[str, Any]] | None:
    """Per live feed with subscribers: how many (every replica) and whether it is kept alive; None: live feeds are
    off in this gateway. Read from the live feeds the wiring keeps in app.state (app/usecases/live_feeds.py)."""
    feeds = getattr(request.app.state, "live", None)
    if feeds is None:
        return None
    rows = await feeds.overview(streams)
    return [
        {k: r[k] for k in ("id", "subscribers", "subscribers_here", "keep_alive", "feed_status")}
        for r in rows
        if r["subscribers"] or r["keep_alive"]
    ]


def _status_class(status: str) -> str:
    return "402" if status == "402" else f"{status[:1]}xx"


def route_counts() -> list[dict[str, Any]]:
    """Requests per public route (this worker's counters), by status class: 2xx, 402, 4xx, 5xx."""
    counts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for family in metrics.REQUESTS.metric.collect():
        for sample in family.samples:
            route = sample.labels.get("route", "")
            if sample.name.endswith("_total") and (route.startswith("/v1") or route in ("/metrics", "/mcp")):
                counts[route][_status_class(sample.labels.get("status", ""))] += sample.value
    return [
        {"route": route, "requests": int(sum(by.values())), **{k: int(v) for k, v in sorted(by.items())}}
        for route, by in sorted(counts.items())
    ]


class ConsoleApi:
    def __init__(self, admin: AdminCore) -> None:
        self.admin = admin

    def routes(self) -> list[Route]:
        guarded = self.admin._guarded
        return [
            Route("/admin/api/system", guarded(self.system)),
            Route("/admin/api/scheduler", guarded(self.scheduler)),
            Route("/admin/api/matrix", guarded(self.matrix)),
            Route("/admin/api/users", guarded(self.users)),
            Route("/admin/api/audit", guarded(self.audit)),
            Route("/admin/api/api-status", guarded(self.api_status)),
            Route("/admin/api/payments/summary", guarded(self.sales)),
            Route("/admin/api/payments/pending", guarded(self.pending)),
        ]

    @property
    def _pool(self) -> Any:
        return self.admin.services.pool

    async def _rows(self) -> list[dict[str, Any]]:
        """The matrix's rows with who last set each stream's sharing and its backfill coverage."""
        rows = await self.admin.matrix()
        stored = await operator.sharing_rows(self._pool)
        coverage = await backfill_coverage(self._pool, self.admin.every_stream().every())
        down = self.admin.watch.streams_down() if self.admin.watch is not None else set()
        for row in rows:
            kept = stored.get(row["id"])
            row["sharing_set_by"] = kept["updated_by"] if kept else None  # None: the settings' default
            row["sharing_set_at"] = kept["updated_at"] if kept else None
            # sold as maintenance while its source is down (the source watch), over what the operator set
            row["sharing_automatic"] = row["id"] in down and row["sharing"] == "maintenance"
            row["recorded"] = row["id"] in coverage
            row["backfill"] = coverage.get(row["id"])
        return rows

    async def system(self, request: Request, admin: Admin) -> Response:
        settings = settings_of(request)
        services = self.admin.services
        rows = await self.admin.matrix()
        sources = {r["source"] for r in rows if r["source"] and r["interval_s"] and not r["point"]}
        fetched = {r["source"] for r in rows if r["source"] in sources and r["fetched_at"]}
        sessions = await console.sessions(self._pool, ACTIVE_S)
        payers = {p["payer"] for p in await console.payers(self._pool, PAYERS_S)}
        live = await live_subscribers(request, self.admin.every_stream().every())
        listening = sum(r["subscribers"] for r in live) if live is not None else None
        sharing: dict[str, int] = defaultdict(int)
        for row in rows:
            sharing[row["sharing"]] += 1
        batch = settings is not None and batch_setup.offered(settings)
        tier = services.tier
        return _json(
            {
                "version": __version__,
                "started_at": datetime.fromtimestamp(self.admin.started_at, UTC),
                "uptime_s": round(time.time() - self.admin.started_at, 1),
                "mode": system_view.mode(settings, services.replay_url),
                "connected_users": {
                    "total": len(sessions) + len(payers) + (listening or 0),
                    "admin_sessions": len(sessions),
                    "payers_last_hour": len(payers),
                    "live_subscribers": listening,  # None: live feeds are off here
                },
                "sources_total": len(sources),
                "sources_fetched": len(fetched),
                "total_points": sum(r["points"] or 0 for r in rows),
                "streams": {"total": len(rows), **dict(sharing)},
                "redis": "ok" if tier is not None and tier.cache.redis_ok else "down (caching in process memory)",
                "actions": {
                    "batch_flush": {
                        "available": batch,
                        "why": None if batch else "batch settlement is not offered here (WORLDGATE_SCHEMES)",
                    },
                    "address_bans": {
                        "available": enforces_addresses(request),
                        "why": None if enforces_addresses(request) else "this gateway's middleware lacks the guard",
                    },
                    "live_feeds": {"available": live is not None, "why": None if live is not None else LIVE_OFF},
                    "reconcile": {
                        "available": self.admin.reconcile is not None,
                        "why": None if self.admin.reconcile is not None else "not running in this process",
                    },
                },
            }
        )

    async def scheduler(self, request: Request, admin: Admin) -> Response:
        settings = settings_of(request)
        running = settings.scheduler if settings is not None else None
        return _json(scheduler_view(await self.admin.matrix(), running))

    async def matrix(self, request: Request, admin: Admin) -> Response:
        rows = await self._rows()
        return _json({"count": len(rows), "streams": rows})

    async def users(self, request: Request, admin: Admin) -> Response:
        sessions = await console.sessions(self._pool, ACTIVE_S)
        payers = await console.payers(self._pool, PAYERS_S)
        feeds = await live_subscribers(request, self.admin.every_stream().every())
        live = {"available": feeds is not None, "feeds": feeds or [], "why": None if feeds is not None else LIVE_OFF}
        return _json({"admin_sessions": sessions, "payers": payers, "live_subscribers": live, "active_s": ACTIVE_S})

    async def audit(self, request: Request, admin: Admin) -> Response:
        entries = await console.audit_log(
            self._pool,
            action=request.query_params.get("action") or None,
            actor=request.query_params.get("actor") or None,
            before_id=_int_param(request, "before_id", None, 1, 2**62),
            limit=_int_param(request, "limit", 100, 1, console.AUDIT_LIST_MAX) or 100,
        )
        return _json({"count": len(entries), "entries": entries, "next_before_id": entries[-1].id if entries else None})

    async def api_status(self, request: Request, admin: Admin) -> Response:
        return _json({"since": datetime.fromtimestamp(self.admin.started_at, UTC), "routes": route_counts()})

    async def sales(self, request: Request, admin: Admin) -> Response:
        since, until = _window(request)
        rows = await console.sales(self._pool, since, until)
        totals = {
            key: sum(int(r[key]) for r in rows)
            for key in ("sales", "settled", "revenue_atomic", "unsettled_atomic", "not_charged")
        }
        return _json({"from": since, "to": until, "rows": rows, "totals": totals})

    async def pending(self, request: Request, admin: Admin) -> Response:
        limit = _int_param(request, "limit", 100, 1, console.PENDING_MAX) or 100
        found = await console.pending(self._pool, limit)
        return _json({"count": len(found), "payments": found})
