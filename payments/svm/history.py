"""An address's transaction history, newest first, paged past one `getSignaturesForAddress` answer.

A node answers at most `limit` signatures (1000 at most, 100 asked here) per call; the next page starts
`before` the last signature seen, and a scan may stop at a known signature (`until`, exclusive). A busy
token account has far more history than one page, so a scan is bounded by a count and a deadline instead:
whoever asks learns whether it reached the end of the history or stopped at a bound.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from .rpc import RpcUnavailable, SvmRpc

PAGE = 100  # signatures per call: what one call answered before paging existed
MAX_PAGE = 1000  # the most a node gives per call


@dataclass
class Scan:
    """How a history scan ended: `exhausted` (no older signature), or stopped by its count or its deadline."""

    seen: int = 0
    pages: int = 0
    exhausted: bool = False


async def signatures(
    rpc: SvmRpc,
    address: str,
    *,
    scan: Scan,
    max_count: int,
    deadline_s: float,
    until: str | None = None,
    page: int = PAGE,
    commitment: str = "confirmed",
) -> AsyncIterator[dict[str, Any]]:
    """The address's signature entries (`signature`, `slot`, `err`, `blockTime`...), newest first, until the
    history ends, `until` is reached, `max_count` entries were given or `deadline_s` seconds have passed. Every
    RpcError is the caller's (a node without history refuses the method)."""
    deadline = time.monotonic() + deadline_s
    before: str | None = None
    last_page: set[str] = set()
    size = max(1, min(page, MAX_PAGE))
    while scan.seen < max_count and time.monotonic() < deadline:
        config: dict[str, Any] = {"limit": min(size, max_count - scan.seen), "commitment": commitment}
        if before is not None:
            config["before"] = before
        if until is not None:
            config["until"] = until
        answer = await rpc.request("getSignaturesForAddress", [address, config])
        if not isinstance(answer, list):
            raise RpcUnavailable("getSignaturesForAddress: the node answered something that is not a list")
        scan.pages += 1
        entries = [e for e in answer if isinstance(e, dict) and isinstance(e.get("signature"), str)]
        if entries and entries[0]["signature"] in last_page:  # a node that ignores `before`: the same page again
            raise RpcUnavailable("getSignaturesForAddress: the node does not page with `before`")
        last_page = {e["signature"] for e in entries}
        for entry in entries:
            scan.seen += 1
            yield entry
        if len(answer) < config["limit"] or not entries:
            scan.exhausted = True  # a short page is the oldest one
            return
        before = entries[-1]["signature"]
