"""The admin API's time machine, beside api.py's routes and behind the same token (the dashboard's Time Machine
panel, app/edge/admin/static/history.js, reads these):

- GET /admin/api/history: per recorded stream its coverage (earliest, latest, snapshots, gaps) and its
  backfill (the upstream's reach, the days finished).
- GET /admin/api/history/{id}/timeline: the newest snapshots' times and record counts (the scrubber's chart).
- GET /admin/api/history/{id}/at?t=: the snapshot in force at t (unix seconds or ISO 8601), its first records.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters import Stream
from adapters.history import BACKFILLERS, recorded, records_from_json
from app.edge.admin.api import AdminApi, BadRequest, _json, _problem
from app.edge.admin.auth import Admin
from app.usecases.history_queries import parse_time
from app.usecases.history_reads import HistoryReads, gap_bound_s
from app.usecases.queries import Problem

TIMELINE_MAX = 5000
RECORDS_SHOWN = 50


class HistoryAdminApi:
    def __init__(self, admin: AdminApi, reads: HistoryReads) -> None:
        self.admin = admin  # its token check and its error answers
        self.reads = reads  # the recorded streams and the cold layer

    def routes(self) -> list[Route]:
        guarded = self.admin._guarded
        return [
            Route("/admin/api/history", guarded(self.overview)),
            Route("/admin/api/history/{id}/timeline", guarded(self.timeline)),
            Route("/admin/api/history/{id}/at", guarded(self.at)),
        ]

    def _recorded(self) -> list[Stream]:
        """Every recorded stream, shared or not (the operator sees them all)."""
        return [s for s in self.admin._base_registry().every() if recorded(s)]

    def _stream(self, stream_id: str) -> Stream | None:
        return next((s for s in self._recorded() if s.id == stream_id), None)

    def _store(self) -> Any:
        if self.reads.store is None:
            raise BadRequest("the history store is not open yet")
        return self.reads.store

    async def overview(self, request: Request, admin: Admin) -> Response:
        store = self._store()
        done = await store.backfilled()
        rows = []
        for stream in self._recorded():
            coverage = await store.coverage(stream.id, gap_bound_s(stream))
            backfiller = next((b for b in BACKFILLERS.values() if stream.id in b.streams), None)
            progress = done.get(backfiller.source) if backfiller else None
            rows.append(
                {
                    "id": stream.id,
                    "earliest": coverage.earliest,
                    "latest": coverage.latest,
                    "count": coverage.count,
                    "gap_count": coverage.gap_count,
                    "interval_s": stream.interval_s,
                    "backfill": None
                    if backfiller is None
                    else {
                        "source": backfiller.source,
                        "max_days": backfiller.max_days,
                        "days_done": progress["days"] if progress else 0,
                        "last_day": progress["last_day"].isoformat() if progress else None,
                    },
                }
            )
        return _json({"count": len(rows), "streams": rows})

    async def timeline(self, request: Request, admin: Admin) -> Response:
        stream_id = request.path_params["id"]
        if self._stream(stream_id) is None:
            return _problem(404, "no_history", f"{stream_id} is not a recorded stream")
        points = await self._store().timeline(stream_id, TIMELINE_MAX)
        return _json({"stream": stream_id, "count": len(points), "points": [[t, n] for t, n in points]})

    async def at(self, request: Request, admin: Admin) -> Response:
        stream_id = request.path_params["id"]
        if self._stream(stream_id) is None:
            return _problem(404, "no_history", f"{stream_id} is not a recorded stream")
        moment = parse_time(request.query_params.get("t"), "t")
        if isinstance(moment, Problem):
            raise BadRequest(moment.message)
        found = await self._store().at(stream_id, moment)
        if found is None:
            return _problem(404, "no_history", f"nothing of {stream_id} is recorded at or before that time")
        records = records_from_json(found.raw)
        return _json(
            {
                "stream": stream_id,
                "asked": moment,
                "t": found.t,
                "observed_at": found.observed_at,
                "seen_until": found.seen_until,
                "count": len(records),
                "records": [r.as_dict() for r in records[:RECORDS_SHOWN]],
            }
        )
