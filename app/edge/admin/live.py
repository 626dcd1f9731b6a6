"""The admin API's live feeds, beside api.py's routes and behind the same token (the dashboard's Live feeds panel,
app/edge/admin/static/live.js, reads them):

- GET /admin/api/live: per live feed: running, subscribers (every replica, and this one), keep-alive, the last
  frame's time and id, feed_status, and this process's counters: frames published, sent, dropped (skipped by a
  lagging subscriber), `lagged` events, subscribers dropped, and the longest lag of the last few seconds.
- POST /admin/api/live/{id}/start | stop: keep a feed polled without subscribers (with the scheduler on, every
  feed is refreshed anyway; the flag is kept for when it is off). Kept in the audit log.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.live import live
from app.edge.admin.api import AdminApi, _json, _problem
from app.edge.admin.auth import Admin
from app.usecases.live_feeds import LiveFeeds
from ledger import console


class LiveAdminApi:
    def __init__(self, admin: AdminApi, feeds: LiveFeeds) -> None:
        self.admin = admin  # its token check and its error answers
        self.feeds = feeds

    def routes(self) -> list[Route]:
        guarded = self.admin._guarded
        return [
            Route("/admin/api/live", guarded(self.overview)),
            Route("/admin/api/live/{id}/{action}", guarded(self.act), methods=["POST"]),
        ]

    async def overview(self, request: Request, admin: Admin) -> Response:
        streams = [s for s in self.admin.every_stream().every() if live(s)]
        rows = await self.feeds.overview(streams)
        totals = {
            "subscribers": sum(r["subscribers"] for r in rows),
            "frames_sent": sum(r["frames_sent"] for r in rows),
            "frames_dropped": sum(r["frames_dropped"] for r in rows),
        }
        return _json(
            {
                "count": len(rows),
                "window_s": self.feeds.settings.window_s,
                "scheduler": self.feeds.scheduler,
                "totals": totals,
                "feeds": rows,
            }
        )

    async def act(self, request: Request, admin: Admin) -> Response:
        stream_id, action = request.path_params["id"], request.path_params["action"]
        if action not in ("start", "stop"):
            return _problem(404, "unknown_action", "POST /admin/api/live/{id}/start or /stop")
        stream = self.admin.every_stream().get(stream_id)
        if stream is None or not live(stream):
            return _problem(404, "no_live_feed", f"{stream_id} has no live feed")
        if not self.feeds.opened:
            return _problem(503, "not_ready", "live feeds are not running yet")
        await self.feeds.keep_alive(stream_id, action == "start")
        await console.record(self.admin.services.pool, admin.subject, f"live.{action}", stream_id)
        return _json({"id": stream_id, "keep_alive": action == "start"})
