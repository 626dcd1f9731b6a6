"""`Services`: what the use cases read at request time, filled in by the app's lifespan."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from adapters import Coverage, DataTier, live_coverage
from app.usecases.pricing import Pricing
from payments import Facilitator


@dataclass
class Services:
    """What a checkout needs at request time; filled in by the app's lifespan."""

    pool: Any = None  # asyncpg.Pool
    facilitator: Facilitator | None = None
    pricing: Pricing | None = None  # built once the facilitator says what it supports
    tier: DataTier | None = None  # built in the lifespan (it needs Redis and an HTTP client)
    banned: Callable[[str], bool] = lambda _payer: False  # the operator's bans, as this worker last loaded them
    # seconds to wait if the payer (first argument) is over its rate limit; the second says whether the attempt
    # makes the relayer send a transaction (counted exactly across workers) or not (a voucher: counted locally)
    payer_limited: Callable[[str, bool], Awaitable[int | None]] | None = None
    replay_url: str | None = None  # set when upstreams are answered from recordings
    idempotency_ttl_s: float = 86_400.0  # how long a delivered response stays replayable by its payment id
    settle_wait_s: float = 90.0  # how long a retry waits for the first attempt with its payment id
    coverage: Coverage = live_coverage  # where point reads can be answered (replay mode: near recordings)
    batch: Any = None  # BatchCheckout, when batch-settlement is offered (app/usecases/batch_setup.py)
