"""The API's reads, before any transport: the free catalog, search, attribution and health, and the paid reads.

Each is a transport-free function returning an `Answer` (status, JSON document, headers): the HTTP
handlers (app/edge/routes.py) send it as a response, and the MCP tools (app/mcp/server.py) return the
same document as a tool result, so both transports validate, read and shape data the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from adapters import (
    NoDataAtPoint,
    Registry,
    Sharing,
    Stream,
    StreamRead,
    Unavailable,
    apply_filters,
    distance_km,
    freshness,
)
from app import __version__
from app.usecases.paths import STREAM_PREFIX
from app.usecases.queries import Problem, WorldQuery, stream_query, uncovered, world_query
from app.usecases.services import Services

SEARCH_RESULTS_MAX = 50
WORLD_NEAR_MAX = 20  # nearest records per section of /v1/world
NO_STORE = {"cache-control": "no-store"}
RETRY_LATER = {"cache-control": "no-store", "retry-after": "30"}
UNKNOWN_STREAM = "no such stream; see GET /v1/streams"


@dataclass(frozen=True, slots=True)
class Answer:
    """What a read produced, before any transport: an HTTP status, the JSON document and the headers
    HTTP sends with it (`x-cache`, cache control). Statuses of 400 and up are errors, not data."""

    status: int
    document: Any
    headers: Mapping[str, str] | None = None

    @property
    def ok(self) -> bool:
        return self.status < 400


def problem_answer(problem: Problem) -> Answer:
    return Answer(problem.status, {"error": problem.error, "message": problem.message}, NO_STORE)


def _iso(unix_s: float | None) -> str | None:
    if unix_s is None:
        return None
    return datetime.fromtimestamp(unix_s, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _unavailable(stream_id: str, reason: str) -> Answer:
    message = "no data to sell; you were not charged"
    body = {"error": "stream_unavailable", "stream": stream_id, "reason": reason, "message": message}
    return Answer(503, body, RETRY_LATER)


def _no_data_at_point(exc: NoDataAtPoint) -> Answer:
    body = {"error": "no_data_for_point", "stream": exc.stream_id, "reason": exc.reason}
    return Answer(404, {**body, "message": "no data for this point; you were not charged"}, NO_STORE)


def _freshness_fields(read: StreamRead) -> dict[str, Any]:
    """How old the data is: measured from when the upstream says it is for (`observed_at`, the newest
    record's), against the stream's budget; `fetched_at` is only when worldgate last fetched it."""
    age = read.age_s()
    return {
        "observed_at": read.observed_at,
        "fetched_at": _iso(read.fetched_at_unix_s),
        "age_seconds": None if age is None else round(age, 1),
        "freshness_budget_s": read.stream.budget_s,
        "stale": read.stale,
        "freshness": read.freshness,
    }


def _freshness_state(interval_s: int | None, point: bool, fetched_at: float | None, now: float) -> str:
    """What the catalog and health say of a source's freshness."""
    if interval_s is None:
        return "static"  # bundled, never fetched
    if point:
        return "per_point"  # fetched per location on demand
    return freshness(now - fetched_at, interval_s) if fetched_at else "unknown"


class Reads:
    """The reads, bound to what they read: the registry and the live services (tier, pricing, pool)."""

    def __init__(self, registry: Registry, services: Services, *, info: dict[str, Any]) -> None:
        self.registry = registry
        self.services = services
        self.info = info
        self.started_at = time.time()
        self.redis: Any = None  # redis.asyncio.Redis, set by the lifespan

    # ---- free ----

    async def _fetched(self) -> dict[str, float]:
        tier = self.services.tier
        if tier is None:
            return {}
        return await tier.cache.fetched_at(sorted(self.registry.by_adapter()))

    def _describe(self, stream: Stream, fetched: dict[str, float]) -> dict[str, Any]:
        pricing = self.services.pricing
        assert pricing is not None, "the catalog is served only after startup"
        paid = pricing.lookup(STREAM_PREFIX + stream.id)
        assert paid is not None, f"stream {stream.id} has no price"
        fetched_at = fetched.get(stream.adapter) if stream.adapter and not stream.point else None
        state = _freshness_state(stream.interval_s, stream.point, fetched_at, time.time())
        return {
            "id": stream.id,
            "name": stream.name,
            "description": stream.description,
            "category": stream.category,
            "type": stream.type.value,
            "interval_s": stream.interval_s,
            "freshness": state,
            "fetched_at": _iso(fetched_at),
            "point": stream.point,
            "point_within_km": stream.point_within_km,  # how far from the asked point its record may lie
            "freshness_budget_s": stream.budget_s,  # older than this (from observed_at): stale
            "price": {
                "tier": stream.price_tier,
                "amount_atomic": str(paid.amount_atomic),
                "usdc": pricing.display(paid.amount_atomic),
                "networks": list(paid.networks),
            },
            "sharing": stream.sharing.value,
            "license": stream.license,
            "attribution": stream.attribution,
            "url": STREAM_PREFIX + stream.id,
            # field splitting: the fetch it shares with its siblings (one upstream call serves them all)
            "parent": self.registry.parent(stream),
            "resolutions_deg": list(stream.resolutions) or None,  # finer grids: `resolution=`, priced by cells
        }

    async def catalog_answer(self, category: str | None) -> Answer:
        if category and category not in self.registry.categories():
            known = ", ".join(sorted(self.registry.categories()))
            return problem_answer(Problem(404, "unknown_category", f"no category {category!r}; known: {known}"))
        fetched = await self._fetched()
        streams = [self._describe(s, fetched) for s in self.registry.all() if not category or s.category == category]
        return Answer(200, {"count": len(streams), "streams": streams})

    async def search_answer(self, q: str | None) -> Answer:
        query = (q or "").strip().lower()
        if not query or len(query) > 100:
            return problem_answer(Problem(400, "invalid_query", "q must be 1 to 100 characters"))
        fetched = await self._fetched()
        hits = [
            self._describe(s, fetched)
            for s in self.registry.all()
            if query in s.id.lower() or query in s.name.lower() or query in s.description.lower()
        ]
        return Answer(200, {"q": query, "count": len(hits), "streams": hits[:SEARCH_RESULTS_MAX]})

    def attribution_answer(self) -> Answer:
        sources = [
            {"stream": s.id, "upstream": s.upstream, "license": s.license, "attribution": s.attribution}
            for s in self.registry.all()
        ]
        return Answer(200, {"count": len(sources), "sources": sources})

    async def health_answer(self) -> Answer:
        checks: dict[str, str] = {}
        try:
            await self.services.pool.fetchval("SELECT 1")
            checks["database"] = "ok"
        except Exception as exc:  # any failure is reported, never raised from a health probe
            checks["database"] = f"error: {type(exc).__name__}"
        try:
            await self.redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__} (caching in process memory)"
        sources = await self._sources()
        healthy = checks["database"] == "ok"
        visible = self.registry.all()
        return Answer(
            200 if healthy else 503,
            {
                "status": "ok" if healthy else "degraded",
                "version": __version__,
                "uptime_s": round(time.time() - self.started_at, 1),
                "checks": checks,
                "streams": len(visible),
                "shared": sum(1 for s in visible if s.sharing is Sharing.OK),
                "sources_fetched": sum(1 for s in sources if s["fetched_at"]),
                "sources": sources,
                "upstreams": "replay (recorded payloads)" if self.services.replay_url else "live",
                **self.info,
            },
            NO_STORE,
        )

    async def _sources(self) -> list[dict[str, Any]]:
        tier = self.services.tier
        if tier is None:
            return []
        fetched = await self._fetched()
        now = time.time()
        sources = []
        for name, streams in sorted(self.registry.by_adapter().items()):
            status = await tier.cache.source_status(name)
            interval = min(s.interval_s or 0 for s in streams) or None
            fetched_at = fetched.get(name)
            sources.append(
                {
                    "source": name,
                    "upstream": streams[0].upstream,
                    "streams": [s.id for s in streams],
                    "interval_s": interval,
                    "fetched_at": _iso(fetched_at),
                    "freshness": _freshness_state(interval, streams[0].point, fetched_at, now),
                    "last_error": status.last_error,
                    "last_error_at": _iso(status.last_error_at),
                    "circuit": status.circuit(now),
                }
            )
        return sources

    # ---- paid ----

    @property
    def source(self) -> str:
        """What every data answer says it was read from: recorded payloads, or the upstreams themselves."""
        return "replay" if self.services.replay_url else "live"

    def find_stream(self, stream_id: str) -> Stream | Answer:
        """A stream the public may see, or the 404 (an unshared stream does not exist to callers)."""
        stream = self.registry.get(stream_id)
        if stream is None:
            return problem_answer(Problem(404, "unknown_stream", UNKNOWN_STREAM))
        return stream

    async def stream_answer(self, stream: Stream, params: Mapping[str, str]) -> Answer:
        """The paid read of one stream (the caller has paid): its query's rules, then the data tier."""
        query = stream_query(stream, params, self.services.coverage)
        if isinstance(query, Problem):
            return problem_answer(query)
        tier = self.services.tier
        assert tier is not None
        try:
            finer = {"resolution": query.resolution, "area": query.filters} if query.resolution is not None else {}
            read = await tier.read(stream, point=query.point, max_age_s=query.max_age_s, **finer)
        except Unavailable as exc:
            return _unavailable(stream.id, exc.reason)
        except NoDataAtPoint as exc:
            return _no_data_at_point(exc)
        if not read.records:  # an empty answer is sold only when the caller's own filter matched nothing
            return _unavailable(stream.id, "the upstream has no records right now")
        records = apply_filters(read.records, query.filters)
        return Answer(
            200,
            {
                "stream": stream.id,
                "name": stream.name,
                "type": stream.type.value,
                **({"resolution_deg": query.resolution} if query.resolution is not None else {}),
                "source": self.source,
                **_freshness_fields(read),
                "count": len(records),
                "records": [r.as_dict() for r in records],
                "license": stream.license,
                "attribution": stream.attribution,
            },
            {"x-cache": read.cache},
        )

    async def world_answer(self, params: Mapping[str, str]) -> Answer:
        """The paid picture around a point (the caller has paid): its query's rules, then every part's read."""
        query = world_query(params, self.services.coverage)
        if isinstance(query, Problem):
            return problem_answer(query)
        names = ("weather", "air_quality", "earthquakes", "disasters", "natural_events", "iss", "space_weather")
        sections = await asyncio.gather(
            self._section("weather.current", query, "point"),
            self._section("air.quality", query, "point"),
            self._section("quakes.usgs", query, "near"),
            self._section("disasters.gdacs", query, "near"),
            self._section("events.eonet", query, "near"),
            self._section("iss.position", query, "iss"),
            self._section("space.kp", query, "latest"),
        )
        picture = dict(zip(names, sections, strict=True))
        weather = picture["weather"]
        if weather.get("no_data_for_point"):  # the core of the picture: without it nothing is sold
            return _no_data_at_point(NoDataAtPoint("weather.current", weather["reason"]))
        if not weather["available"]:
            return _unavailable("weather.current", weather["reason"])
        for section in picture.values():
            section.pop("no_data_for_point", None)
        point = {"lat": query.point.lat, "lon": query.point.lon, "radius_km": query.radius_km}
        return Answer(
            200,
            {**point, "source": self.source, **picture},
            {"x-cache": ",".join(f"{n}={s.get('cache', 'n/a')}" for n, s in picture.items())},
        )

    async def _section(self, stream_id: str, query: WorldQuery, shape: str) -> dict[str, Any]:
        stream = self.registry.get(stream_id)
        if stream is None:
            return {"stream": stream_id, "available": False, "reason": "not offered"}
        within_km = stream.point_within_km
        # replayed and nothing recorded near the point: no upstream call (a 404 would count as a failure)
        if (
            stream.point
            and within_km is not None
            and (gap := uncovered(stream.id, within_km, query.point, self.services.coverage))
        ):
            return {"stream": stream_id, "available": False, "reason": gap.message}
        tier = self.services.tier
        assert tier is not None
        try:
            read = await tier.read(stream, point=query.point if stream.point else None, max_age_s=query.max_age_s)
        except Unavailable as exc:
            return {"stream": stream_id, "available": False, "reason": exc.reason}
        except NoDataAtPoint as exc:
            return {"stream": stream_id, "available": False, "reason": exc.reason, "no_data_for_point": True}
        if not read.records:  # nothing to describe: a section with no record is not data
            return {"stream": stream_id, "available": False, "reason": "the upstream has no records right now"}
        section: dict[str, Any] = {
            "stream": stream_id,
            "available": True,
            **_freshness_fields(read),
            "cache": read.cache,
        }
        if shape == "point":
            section["record"] = read.records[0].as_dict() if read.records else None
        elif shape == "near":
            near = sorted(
                (
                    (distance_km(query.point.lat, query.point.lon, r.lat, r.lon), r)
                    for r in read.records
                    if r.lat is not None and r.lon is not None
                ),
                key=lambda pair: pair[0],
            )
            within = [(d, r) for d, r in near if d <= query.radius_km][:WORLD_NEAR_MAX]
            section["count"] = len(within)
            section["records"] = [{**r.as_dict(), "distance_km": round(d, 1)} for d, r in within]
        elif shape == "iss":
            record = read.records[0] if read.records else None
            section["record"] = record.as_dict() if record else None
            if record is not None and record.lat is not None and record.lon is not None:
                section["distance_km"] = round(distance_km(query.point.lat, query.point.lon, record.lat, record.lon), 1)
        else:  # latest
            section["record"] = read.records[-1].as_dict() if read.records else None
        return section
