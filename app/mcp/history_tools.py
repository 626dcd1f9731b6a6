"""The time machine as MCP tools: `get_history` (paid, as GET /v1/streams/{id}/history, at the same price for
the same range) and `get_coverage` (free, as /coverage). The server (app/mcp/server.py) wraps these specs as
its tools and sells `get_history` through its one paid sequence (`sell`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from app.usecases.history_queries import HISTORY_SUFFIX, history_params
from app.usecases.history_reads import HistoryReads
from app.usecases.paths import STREAM_PREFIX
from app.usecases.queries import Problem
from app.usecases.reads import Answer, problem_answer

Sell = Callable[[str, str, Mapping[str, str], Mapping[str, Any], Callable[[], Awaitable[Answer]]], Awaitable[Any]]
Call = Callable[[dict[str, str], Mapping[str, Any]], Awaitable[Any]]
Spec = tuple[str, str, str, dict[str, Any], Call, bool]  # name, title, description, input schema, call, paid

_ID = {"type": "string", "minLength": 1, "description": "A recorded stream's id, e.g. weather.grid.temperature."}


def history_tools(reads: HistoryReads, sell: Sell, result: Callable[[Answer], Any]) -> list[Spec]:
    params = tuple(p for p in history_params(reads.bounds) if p.name != "format")  # a tool answers JSON
    history_schema = {
        "type": "object",
        "properties": {"id": _ID, **{p.name: p.schema(full=True) for p in params}},
        "required": ["id", *(p.name for p in params if p.required)],
        "additionalProperties": False,
    }
    coverage_schema = {"type": "object", "properties": {"id": _ID}, "required": ["id"], "additionalProperties": False}

    def found(params: dict[str, str]) -> Any:
        stream_id = params.pop("id", None)
        if not stream_id:
            return problem_answer(Problem(400, "invalid_query", "give id: a recorded stream's id (list_streams)"))
        return reads.find(stream_id)

    async def get_history(params: dict[str, str], meta: Mapping[str, Any]) -> Any:
        stream = found(params)
        if isinstance(stream, Answer):
            return result(stream)

        async def read() -> Answer:
            return await reads.history_answer(stream, params, raw=False)

        return await sell("get_history", STREAM_PREFIX + stream.id + HISTORY_SUFFIX, params, meta, read)

    async def get_coverage(params: dict[str, str], meta: Mapping[str, Any]) -> Any:
        stream = found(params)
        return result(stream if isinstance(stream, Answer) else await reads.coverage_answer(stream))

    return [
        (
            "get_history",
            "Recorded history of a stream",
            "Paid, like GET /v1/streams/{id}/history: the recorded snapshots of a stream from `from` to `to` (each "
            "with t, observed_at and its records, filtered by bbox or lat/lon/radius_km), at most one per `step` "
            f"seconds, at most `limit`. Priced by what is asked: the stream's price per started block of "
            f"{reads.bounds.block_snapshots} snapshots the range holds at its cadence; the PaymentRequired says it.",
            history_schema,
            get_history,
            True,
        ),
        (
            "get_coverage",
            "What history is recorded",
            "Free, like GET /v1/streams/{id}/coverage: a recorded stream's earliest and latest times, how many "
            "snapshots, and the gaps in its recording.",
            coverage_schema,
            get_coverage,
            False,
        ),
    ]
