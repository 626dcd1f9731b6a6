"""The time machine's reads, before any transport: paid history and point-in-time reads, free coverage.

Like app/usecases/reads.py, each returns an `Answer` the HTTP handlers (app/edge/history_routes.py) send
and the MCP tools return. A history answer carries each snapshot's stored records as they are (the JSON
bytes the recorder wrote, embedded unparsed) unless an area filter has to look inside them. Nothing to
sell (no snapshot in the range, the store unreachable) is a 404 or 503, and a paid request is not charged.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import msgspec

from adapters import Registry, Stream, apply_filters
from adapters.history import ColdStore, Stored, for_stream, recorded, records_from_json
from app.usecases.history_queries import HistoryBounds, at_query, history_query, iso
from app.usecases.queries import Problem
from app.usecases.reads import NO_STORE, RETRY_LATER, UNKNOWN_STREAM, Answer, problem_answer
from app.usecases.services import Services
from payments import encode_json

COVERAGE_CACHE_S = 30.0  # coverage is free and scans a stream's rows: one scan per stream per this long
NOT_CHARGED = "you were not charged"
SNAPSHOT_OVERHEAD = 96  # bytes of JSON around one snapshot's records (its t, observed_at, keys)
ANSWER_MARGIN = 4096  # the answer's own fields, license and attribution


def gap_bound_s(stream: Stream) -> float:
    """Longer than this between a snapshot's last sighting and the next snapshot is a gap in the recording:
    twice the stream's refresh interval, or its backfill's tick when that is longer."""
    backfiller = for_stream(stream.id)
    return 2.0 * max(float(stream.interval_s or 0), float(backfiller.tick_s if backfiller else 0))


def _records(stored: Stored, filters: Any, raw: bool) -> Any:
    """The snapshot's records: its stored JSON as is (no filter, `raw`), else parsed and filtered."""
    if raw and filters.bbox is None and filters.center is None:
        return msgspec.Raw(stored.raw)
    return [r.as_dict() for r in apply_filters(records_from_json(stored.raw), filters)]


def _snapshot(stored: Stored, filters: Any, raw: bool) -> dict[str, Any]:
    """One snapshot of an answer. `raw` (HTTP): its times as datetimes, which the JSON encoder writes as ISO 8601
    with a Z in C, as `iso` would; else (MCP, CSV) as those strings."""
    if raw:
        return {"t": stored.t, "observed_at": stored.observed_at, "records": _records(stored, filters, raw)}
    observed = iso(stored.observed_at) if stored.observed_at is not None else None
    return {"t": iso(stored.t), "observed_at": observed, "records": _records(stored, filters, raw)}


def _unavailable(stream: Stream, why: str) -> Answer:
    body = {"error": "history_unavailable", "stream": stream.id, "reason": why, "message": NOT_CHARGED}
    return Answer(503, body, RETRY_LATER)


def _none(stream: Stream, what: str) -> Answer:
    message = f"nothing of {stream.id} is recorded {what} (see /v1/streams/{stream.id}/coverage); {NOT_CHARGED}"
    return Answer(404, {"error": "no_history", "stream": stream.id, "message": message}, NO_STORE)


class HistoryReads:
    """The reads over the cold layer; `store` is set by the app's lifespan (None until then)."""

    def __init__(self, registry: Callable[[], Registry], services: Services, bounds: HistoryBounds) -> None:
        self.registry = registry  # read live: an operator's sharing change swaps the registry
        self.services = services
        self.bounds = bounds
        self.store: ColdStore | None = None
        self._coverage: dict[str, tuple[float, Answer]] = {}

    @property
    def source(self) -> str:
        return "replay" if self.services.replay_url else "live"

    def find(self, stream_id: str) -> Stream | Answer:
        """A recorded stream the public may see, or why not (404)."""
        stream = self.registry().get(stream_id)
        if stream is None:
            return problem_answer(Problem(404, "unknown_stream", UNKNOWN_STREAM))
        if not recorded(stream):
            why = "bundled data does not change" if stream.interval_s is None else "it is read per point, on demand"
            message = f"{stream.id} has no recorded history: {why}"
            return Answer(404, {"error": "no_history", "stream": stream.id, "message": message}, NO_STORE)
        return stream

    async def history_answer(self, stream: Stream, params: Mapping[str, str], *, raw: bool = True) -> Answer:
        """The snapshots of `from`..`to` (the caller has paid), oldest first; `raw`: records embedded unparsed."""
        query = history_query(stream, params, self.bounds)
        if isinstance(query, Problem):
            return problem_answer(query)
        if self.store is None:
            return _unavailable(stream, "the history store is not open")
        try:
            rows = await self.store.between(
                stream.id, query.start, query.end, limit=query.limit + 1, step_s=query.step_s
            )
        except Exception as exc:  # the database is down or refusing: nothing sold
            return _unavailable(stream, f"the history store did not answer ({type(exc).__name__})")
        if not rows:
            return _none(stream, f"between {iso(query.start)} and {iso(query.end)}")
        truncated = len(rows) > query.limit
        rows = rows[: query.limit]
        if (too_large := self._too_large(stream, query.filters, rows)) is not None:
            return too_large
        document: dict[str, Any] = {
            "stream": stream.id,
            "from": iso(query.start),
            "to": iso(query.end),
            "step": query.step_s,
            "source": self.source,
            "count": len(rows),
            "truncated": truncated,
        }
        if truncated:  # more than `limit` in the range: where the next read would start
            document["next_from"] = iso(rows[-1].t + timedelta(microseconds=1))
        document["snapshots"] = [_snapshot(row, query.filters, raw) for row in rows]
        document["license"], document["attribution"] = stream.license, stream.attribution
        return Answer(200, document, {"x-history-format": query.format})

    def _too_large(self, stream: Stream, filters: Any, rows: list[Stored]) -> Answer | None:
        """A 400 (not charged) when the records alone would pass the paid answer's cap, naming a `to` that fits;
        an area filter's answer is smaller than its rows, and is left to the gate's own cap."""
        if filters.bbox is not None or filters.center is not None:
            return None
        budget, size = self.bounds.bytes_max - ANSWER_MARGIN, 0
        for index, row in enumerate(rows):
            size += len(row.raw) + SNAPSHOT_OVERHEAD
            if size > budget:
                fits = f"to={iso(rows[index - 1].t)}" if index else "a step or an area filter"
                message = (
                    f"these {len(rows)} snapshots are more than the {self.bounds.bytes_max} bytes a paid answer may "
                    f"be; {NOT_CHARGED}: ask {fits} first, or use step, limit or an area filter"
                )
                return Answer(400, {"error": "answer_too_large", "stream": stream.id, "message": message}, NO_STORE)
        return None

    async def at_answer(self, stream: Stream, params: Mapping[str, str], *, raw: bool = True) -> Answer:
        """The snapshot in force at `t` (the caller has paid)."""
        query = at_query(stream, params)
        if isinstance(query, Problem):
            return problem_answer(query)
        if self.store is None:
            return _unavailable(stream, "the history store is not open")
        try:
            row = await self.store.at(stream.id, query.moment)
        except Exception as exc:
            return _unavailable(stream, f"the history store did not answer ({type(exc).__name__})")
        if row is None:
            return _none(stream, f"at or before {iso(query.moment)}")
        return Answer(
            200,
            {
                "stream": stream.id,
                "asked": iso(query.moment),
                **_snapshot(row, query.filters, raw),
                "seen_until": iso(row.seen_until),
                # past the last sighting by more than a gap: the recording stopped; this is the last state known
                "gap": (query.moment - row.seen_until).total_seconds() > gap_bound_s(stream),
                "source": self.source,
                "license": stream.license,
                "attribution": stream.attribution,
            },
        )

    async def coverage_answer(self, stream: Stream) -> Answer:
        """Free: earliest, latest, how many snapshots, and the gaps (cached a little: it scans the stream)."""
        held = self._coverage.get(stream.id)
        if held is not None and time.monotonic() - held[0] < COVERAGE_CACHE_S:
            return held[1]
        if self.store is None:
            return _unavailable(stream, "the history store is not open")
        bound = gap_bound_s(stream)
        try:
            coverage = await self.store.coverage(stream.id, bound)
        except Exception as exc:
            return _unavailable(stream, f"the history store did not answer ({type(exc).__name__})")
        backfiller = for_stream(stream.id)
        answer = Answer(
            200,
            {
                "stream": stream.id,
                "earliest": iso(coverage.earliest) if coverage.earliest else None,
                "latest": iso(coverage.latest) if coverage.latest else None,
                "count": coverage.count,
                "interval_s": stream.interval_s,
                "gap_bound_s": bound,
                "gap_count": coverage.gap_count,
                "gaps": [
                    {"from": iso(a), "to": iso(b), "seconds": round((b - a).total_seconds(), 3)}
                    for a, b in coverage.gaps
                ],
                "backfill": {"source": backfiller.source, "max_days": backfiller.max_days} if backfiller else None,
                "history": f"/v1/streams/{stream.id}/history",
            },
            {"cache-control": f"max-age={int(COVERAGE_CACHE_S)}"},
        )
        self._coverage[stream.id] = (time.monotonic(), answer)
        return answer


def history_json(document: Mapping[str, Any]) -> bytes:
    """A history answer as the JSON bytes HTTP sends: what `encode_json(document)` gives, joined in one pass so
    the snapshots' stored records (megabytes, for a month of a grid) are copied once, not regrown into place."""
    head = {k: v for k, v in document.items() if k not in ("snapshots", "license", "attribution")}
    tail = {"license": document["license"], "attribution": document["attribution"]}
    parts = [encode_json(head)[:-1], b',"snapshots":[']
    for index, snapshot in enumerate(document["snapshots"]):
        records = snapshot["records"]
        parts += [
            b"," if index else b"",
            b'{"t":',
            encode_json(snapshot["t"]),
            b',"observed_at":',
            encode_json(snapshot["observed_at"]),
            b',"records":',
            records if isinstance(records, msgspec.Raw) else encode_json(records),  # Raw: joined without a copy
            b"}",
        ]
    parts += [b"],", encode_json(tail)[1:]]
    return b"".join(parts)


def ndjson(document: Mapping[str, Any]) -> bytes:
    """A history answer as NDJSON: one line per snapshot, each naming its stream."""
    stream = document["stream"]
    return b"".join(encode_json({"stream": stream, **snapshot}) + b"\n" for snapshot in document["snapshots"])


def csv_rows(document: Mapping[str, Any]) -> bytes:
    """A history answer (records parsed) as CSV: one row per record, its fields as columns."""
    snapshots = document["snapshots"]
    names = sorted({name for s in snapshots for r in s["records"] for name in r["fields"]})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["t", "observed_at", "record_observed_at", "lat", "lon", "source", *names])
    for snapshot in snapshots:
        for record in snapshot["records"]:
            fields = record["fields"]
            row = [snapshot["t"], snapshot["observed_at"], record["observed_at"], record["lat"], record["lon"]]
            writer.writerow([*row, record["source"], *(_cell(fields.get(name)) for name in names)])
    return out.getvalue().encode()


def _cell(value: Any) -> Any:
    return "" if value is None else encode_json(value).decode() if isinstance(value, dict | list) else value
