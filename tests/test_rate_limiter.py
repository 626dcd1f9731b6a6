"""The rate limiter and the client address without a gateway (app/edge/rate_limiter.py, app/edge/abuse.py): counts
summed across workers through Redis, exact shared counting for payment attempts, the proxies believed, and the
limit settings read and refused. tests/test_abuse.py drives the same controls through a running gateway."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
import redis.asyncio as aioredis

from app.edge.abuse import ClientAddress
from app.edge.rate_limiter import Limit, RateLimiter
from app.runtime.settings import SettingsError, load_settings

from .test_abuse import fresh_window


async def test_counts_are_summed_across_workers_through_redis(redis_url: str) -> None:
    await fresh_window()
    prefix = f"wgtest:{secrets.token_hex(4)}:"
    limit = Limit.parse("quote", "5/hour")
    assert limit is not None
    clients = [aioredis.from_url(redis_url) for _ in range(2)]
    try:
        first, second = (RateLimiter(c, prefix=prefix) for c in clients)
        assert [first.hit(limit, "a") for _ in range(3)] == [None] * 3
        await first.sync()
        assert [second.hit(limit, "a") for _ in range(2)] == [None] * 2  # its own 2, under 5 on its own count
        await second.sync()  # learns the fleet's 5
        assert second.hit(limit, "a") is not None
        assert second.hit(limit, "b") is None  # another key is not affected
        payer = Limit.parse("payer", "2/hour")
        assert payer is not None
        assert await first.hit_shared(payer, "p") is None and await second.hit_shared(payer, "p") is None
        assert await first.hit_shared(payer, "p") is not None  # exact at once: no sync needed
    finally:
        for client in clients:
            await client.aclose()
    alone = RateLimiter(None)  # no Redis at all: this worker's counts only
    assert [alone.hit(limit, "a") for _ in range(6)][-1] is not None
    assert await alone.hit_shared(limit, "x") is None


def scope(peer: str | None, *forwarded: str) -> dict[str, Any]:
    return {
        "client": (peer, 1234) if peer else None,
        "headers": [(b"x-forwarded-for", value.encode()) for value in forwarded],
    }


def test_the_client_address_believes_only_trusted_proxies() -> None:
    untrusting = ClientAddress()
    assert untrusting(scope("192.0.2.1", "10.9.9.9")) == "192.0.2.1"  # no trusted proxy: the header is ignored
    trusting = ClientAddress(["10.0.0.0/8", "127.0.0.1"])
    assert trusting(scope("192.0.2.1", "203.0.113.5")) == "192.0.2.1"  # the peer is not a proxy we trust
    assert trusting(scope("10.0.0.2", "203.0.113.5")) == "203.0.113.5"
    assert trusting(scope("10.0.0.2", "1.1.1.1, 203.0.113.5, 10.0.0.7")) == "203.0.113.5"  # right-most untrusted
    assert trusting(scope("10.0.0.2", "1.1.1.1", "203.0.113.5")) == "203.0.113.5"  # several header lines, in order
    assert trusting(scope("10.0.0.2", "203.0.113.5:4711")) == "203.0.113.5"
    assert trusting(scope("10.0.0.2", "10.0.0.9, 10.0.0.8")) == "10.0.0.9"  # only proxies: the left-most
    assert trusting(scope("10.0.0.2", "not-an-ip, 10.0.0.8")) == "10.0.0.8"  # junk: stay with the last trusted hop
    assert trusting(scope("10.0.0.2")) == "10.0.0.2"
    assert trusting(scope("127.0.0.1", "2001:db8:1:2:3:4:5:6")) == "2001:db8:1:2::/64"  # IPv6 per /64
    assert trusting(scope("127.0.0.1", "[2001:db8:1:2::9]:443")) == "2001:db8:1:2::/64"
    assert trusting(scope("::ffff:10.0.0.2", "203.0.113.5")) == "203.0.113.5"  # IPv4-mapped peers are IPv4
    assert untrusting(scope(None)) == "unknown"


def test_limit_settings_read_and_refuse(tmp_path: Any) -> None:
    defaults = load_settings({}).limits
    assert (defaults.free, defaults.quote, defaults.payer, defaults.trusted_proxies) == (
        "120/minute",
        "600/minute",
        "300/minute",
        (),
    )
    env = {
        "WORLDGATE_RATE_LIMIT_FREE": "off",
        "WORLDGATE_RATE_LIMIT_QUOTE": "",
        "WORLDGATE_RATE_LIMIT_PAYER": "5/second;100/minute",
        "WORLDGATE_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1",
    }
    limits = load_settings(env).limits
    assert (limits.free, limits.quote, limits.payer) == (None, None, "5/second;100/minute")
    assert limits.trusted_proxies == ("10.0.0.0/8", "192.0.2.1/32")
    config = tmp_path / "worldgate.toml"
    config.write_text('[limits]\nfree = "10/second"\ntrusted_proxies = ["172.16.0.0/12"]\nheader_bytes_max = 32768\n')
    from_file = load_settings({}, config).limits
    assert (from_file.free, from_file.trusted_proxies, from_file.header_bytes_max) == (
        "10/second",
        ("172.16.0.0/12",),
        32768,
    )
    for bad, named in (
        ({"WORLDGATE_RATE_LIMIT_QUOTE": "lots"}, "WORLDGATE_RATE_LIMIT_QUOTE"),
        ({"WORLDGATE_TRUSTED_PROXIES": "proxy.internal"}, "WORLDGATE_TRUSTED_PROXIES"),
        ({"WORLDGATE_HEADER_BYTES_MAX": "8192"}, "WORLDGATE_HEADER_BYTES_MAX"),
    ):
        with pytest.raises(SettingsError, match=named):
            load_settings(bad)
