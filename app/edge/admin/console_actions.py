"""The console's actions in the admin API that are neither sharing nor bans (api.py, bans.py), behind the same token,
each kept in the audit log with the admin's subject:

- POST /admin/api/streams/{id}/fetch (optionally {"lat": .., "lon": ..} for a per-point stream): fetch the
  stream's source now, past the cache's freshness (not past an open circuit or a failure marked moments ago:
  those protect the upstream). 200 with the outcome (`fetched`, or `failed` with the reason); the source watch
  judges the source at once after it: one that keeps failing has its streams sold as maintenance now, one that
  answered again has them sold again.
- POST /admin/api/batch/flush: claim every accepted voucher and sweep to payTo now (what `worldgate batch flush`
  runs); 409 where batch settlement is not offered.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters import NoDataAtPoint, Point, StreamType, Unavailable
from app.edge.admin.auth import Admin
from app.edge.admin.console import settings_of
from app.edge.admin.http import AdminCore, BadRequest, _body, _json, _problem
from app.usecases import batch_setup
from app.usecases.services import Services
from ledger import console
from payments import PaymentError

log = logging.getLogger("worldgate.admin")


def _point(body: dict[str, Any], recorded: list[Point] | None, stream_id: str) -> Point:
    """Where to fetch a per-point stream: the body's lat and lon, else (replayed upstreams) its first recording."""
    lat, lon = body.get("lat"), body.get("lon")
    if lat is None and lon is None and recorded:
        return recorded[0]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (lat, lon)):
        raise BadRequest(f"{stream_id} is fetched at a point: give lat and lon (numbers)")
    assert isinstance(lat, int | float) and isinstance(lon, int | float)
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise BadRequest("lat must be within ±90 and lon within ±180")
    return Point(float(lat), float(lon)).rounded()


class ActionApi:
    def __init__(self, admin: AdminCore) -> None:
        self.admin = admin

    def routes(self) -> list[Route]:
        guarded = self.admin._guarded
        return [
            Route("/admin/api/streams/{id}/fetch", guarded(self.fetch), methods=["POST"]),
            Route("/admin/api/batch/flush", guarded(self.flush), methods=["POST"]),
        ]

    async def fetch(self, request: Request, admin: Admin) -> Response:
        stream_id = request.path_params["id"]
        stream = next((s for s in self.admin.every_stream().every() if s.id == stream_id), None)
        if stream is None:
            return _problem(404, "unknown_stream", f"no stream {stream_id!r}")
        services = self.admin.services
        tier = services.tier
        if tier is None:
            return _problem(503, "not_ready", "the data tier is not running yet")
        if stream.type is StreamType.STATIC or stream.adapter is None:
            return _problem(409, "bundled", f"{stream_id} is bundled with worldgate: there is nothing to fetch")
        body = await _body(request)
        point = _point(body, services.coverage(stream.id), stream.id) if stream.point else None
        live = tier.registry.get(stream.id) or stream  # its sharing as sold now; the fetch is the same either way
        started = time.time()
        outcome: dict[str, Any] = {"stream": stream.id, "source": stream.adapter}
        if point is not None:
            outcome["point"] = {"lat": point.lat, "lon": point.lon}
        try:
            read = await tier.read(live, point=point, max_age_s=0)
        except (Unavailable, NoDataAtPoint) as exc:
            outcome.update(outcome="failed", reason=exc.reason)
        else:
            fresh = read.fetched_at_unix_s >= started
            outcome.update(
                outcome="fetched" if fresh else "failed",
                cache=read.cache,
                records=len(read.records),
                fetched_at=read.fetched_at_unix_s,
                reason=None if fresh else "the source was not asked: an older value was served",
            )
        outcome["took_s"] = round(time.time() - started, 3)
        await console.record(services.pool, admin.subject, "stream.fetch", stream.id, outcome)
        watch, controls = self.admin.watch, self.admin.controls
        if watch is not None:
            before = watch.streams_down()
            if await watch.check(asked=stream.adapter) and controls is not None:
                await controls.reload()
            outcome["sharing_changed"] = sorted(before ^ watch.streams_down())
        log.info("stream fetched by an admin", extra={"admin": admin.subject, **outcome})
        return _json(outcome)

    async def flush(self, request: Request, admin: Admin) -> Response:
        settings = settings_of(request)
        if settings is None or not batch_setup.offered(settings):
            return _problem(409, "batch_not_offered", "batch settlement is not offered here (WORLDGATE_SCHEMES)")
        pool = self.admin.services.pool
        parts = batch_setup.build(settings, pool, Services(pool=pool))  # as `worldgate batch flush` does
        try:
            report = await parts.settler.flush()  # the settler's own lock: one flush or tick at a time
        except PaymentError as exc:
            await console.record(pool, admin.subject, "batch.flush", settings.evm.network, {"error": str(exc)})
            return _problem(502, "flush_failed", str(exc))
        finally:
            await parts.rpc.close()
        done = asdict(report)
        await console.record(pool, admin.subject, "batch.flush", settings.evm.network, done)
        log.info("batch settlement flushed by an admin", extra={"admin": admin.subject, "claims": report.claims})
        return _json(done)
