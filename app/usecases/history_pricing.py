"""The time machine's paid routes as the pricing table holds them: per recorded stream, `/history` (priced by
what the query asks) and `/at` (one snapshot, at the stream's price).

Built here as plain terms (Pricing adds the offers and the extensions), so pricing stays the one table the
gate and the MCP tools look paths up in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from adapters import Stream
from app.usecases.examples import _example_record
from app.usecases.history_queries import (
    AT_PARAMS,
    AT_ROUTE,
    AT_SUFFIX,
    HISTORY_ROUTE,
    HISTORY_SUFFIX,
    HistoryBounds,
    at_query,
    history_params,
    history_query,
    iso,
)
from app.usecases.paths import STREAM_PREFIX
from app.usecases.queries import Problem


def history_example(stream: Stream) -> dict[str, Any]:
    """A 200 of /history, two snapshots long."""
    snapshot = {"t": "2024-05-21T12:00:00Z", "observed_at": "2024-05-21T12:00:00Z"}
    later = {"t": "2024-05-21T13:00:00Z", "observed_at": "2024-05-21T13:00:00Z"}
    return {
        "stream": stream.id,
        "from": "2024-05-21T12:00:00Z",
        "to": "2024-05-21T13:00:00Z",
        "count": 2,
        "snapshots": [
            {**snapshot, "records": [_example_record(stream.id, stream.upstream)]},
            {**later, "records": [_example_record(stream.id, stream.upstream)]},
        ],
    }


def at_example(stream: Stream) -> dict[str, Any]:
    return {
        "stream": stream.id,
        "t": "2024-05-21T12:00:00Z",
        "asked": "2024-05-21T12:30:00Z",
        "observed_at": "2024-05-21T12:00:00Z",
        "records": [_example_record(stream.id, stream.upstream)],
    }


def _checked(parse: Callable[[Mapping[str, str]], Any]) -> Callable[[Mapping[str, str]], Problem | None]:
    def check(params: Mapping[str, str]) -> Problem | None:
        parsed = parse(params)
        return parsed if isinstance(parsed, Problem) else None

    return check


def history_terms(
    stream: Stream, amount: int, tier: str | None, bounds: HistoryBounds, display: Callable[[int], str]
) -> list[dict[str, Any]]:
    """The PaidRoute fields (all but offers) of a recorded stream's /history and /at."""

    def priced(params: Mapping[str, str]) -> tuple[int, str]:
        query = history_query(stream, params, bounds)
        assert not isinstance(query, Problem), "priced only once the query's rules passed"
        blocks = query.blocks(bounds.block_snapshots)
        description = (
            f"{stream.name}, history from {iso(query.start)} to {iso(query.end)}: up to {query.asked} snapshot"
            f"{'s' if query.asked != 1 else ''} at {query.step_s or stream.interval_s:g} s, {blocks} block"
            f"{'s' if blocks != 1 else ''} of {bounds.block_snapshots} at {display(amount)} USDC each"
        )
        return amount * blocks, description

    history_path = STREAM_PREFIX + stream.id + HISTORY_SUFFIX
    return [
        {
            "route": HISTORY_ROUTE,
            "path": history_path,
            "stream": stream,
            "amount_atomic": amount,
            "description": f"{stream.name}, recorded history: {display(amount)} USDC per started block of "
            f"{bounds.block_snapshots} snapshots asked",
            "check": _checked(lambda params: history_query(stream, params, bounds)),
            "price_tier": tier,
            "params": history_params(bounds),
            "example": history_example(stream),
            "price_for": priced,
        },
        {
            "route": AT_ROUTE,
            "path": STREAM_PREFIX + stream.id + AT_SUFFIX,
            "stream": stream,
            "amount_atomic": amount,
            "description": f"{stream.name}, the recorded snapshot in force at a moment",
            "check": _checked(lambda params: at_query(stream, params)),
            "price_tier": tier,
            "params": AT_PARAMS,
            "example": at_example(stream),
        },
    ]
