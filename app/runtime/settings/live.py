"""Live feeds' settings (adapters/live, app/usecases/live_*): the paid window, its prices, backpressure, caps."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator

from .fields import From, Frozen

# A window's price per price tier (a stream's tier, as for its per-request price). A tier missing here is
# priced at LIVE_PRICE_MULTIPLE times its per-request price.
DEFAULT_LIVE_PRICE_TIERS: dict[str, str | int] = {"basic": "$0.01", "standard": "$0.02", "premium": "$0.1"}
LIVE_PRICE_MULTIPLE = 10


class LiveSettings(Frozen):
    # serve live feeds (SSE, WebSocket) at all
    enabled: Annotated[bool, From("WORLDGATE_LIVE", "live.enabled")] = True
    # how long one payment keeps a live connection open
    window_s: Annotated[float, From("WORLDGATE_LIVE_WINDOW_S", "live.window_s"), Field(ge=1, le=86_400)] = 600.0
    # a window's price per tier; merged over the defaults
    price_tiers: Annotated[dict[str, str | int], From("WORLDGATE_LIVE_PRICE_TIERS", "live.price_tiers")] = Field(
        default_factory=lambda: dict(DEFAULT_LIVE_PRICE_TIERS)
    )
    # an SSE comment (a WebSocket heartbeat message) after this long without anything else
    heartbeat_s: Annotated[float, From("WORLDGATE_LIVE_HEARTBEAT_S", "live.heartbeat_s"), Field(gt=0, le=300)] = 15.0
    # a batch-settlement session whose window ended waits this long for its next voucher, frames held
    renew_grace_s: Annotated[
        float, From("WORLDGATE_LIVE_RENEW_GRACE_S", "live.renew_grace_s"), Field(ge=1, le=3600)
    ] = 60.0
    # a WebSocket ticket must be used within this long of its purchase
    ticket_ttl_s: Annotated[float, From("WORLDGATE_LIVE_TICKET_TTL_S", "live.ticket_ttl_s"), Field(ge=5, le=3600)] = (
        60.0
    )
    # frames queued for one subscriber before it skips frames (and gets a `lagged` event)
    lag_frames: Annotated[int, From("WORLDGATE_LIVE_LAG_FRAMES", "live.lag_frames"), Field(ge=1, le=100_000)] = 32
    # frames behind (queued + skipped) before a subscriber is dropped
    drop_frames: Annotated[int, From("WORLDGATE_LIVE_DROP_FRAMES", "live.drop_frames"), Field(ge=2, le=1_000_000)] = 256
    # live connections open at once, per client address (IPv6: per /64) and per payer, across replicas
    connections_per_address: Annotated[
        int, From("WORLDGATE_LIVE_CONNECTIONS_PER_ADDRESS", "live.connections_per_address"), Field(ge=1)
    ] = 20
    connections_per_payer: Annotated[
        int, From("WORLDGATE_LIVE_CONNECTIONS_PER_PAYER", "live.connections_per_payer"), Field(ge=1)
    ] = 50

    @field_validator("price_tiers", mode="before")
    @classmethod
    def _tiers(cls, value: Any) -> Any:
        return {**DEFAULT_LIVE_PRICE_TIERS, **value} if isinstance(value, dict) else value
