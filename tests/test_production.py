"""Running behind proxies (app/edge/proxy.py) and the production settings: one configuration warning when proxy
headers come with no trusted proxy, the client a trusted proxy names used by every per-client decision, /metrics
never open tokenless to a relayed request; the access log's and the drain's settings read and refused.

The gateways here run under uvicorn with its own proxy-header handling off, as `worldgate serve` runs them, so
what is tested is worldgate's handling alone (uvicorn's default trusts 127.0.0.1's X-Forwarded-For by itself).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from app.cli.serve import settle_bound_s
from app.runtime.settings import LimitSettings, Settings, SettingsError, load_settings
from app.wiring import create_app

from .chain import unb64
from .conftest import Gateway, with_settings
from .services import ServerThread

CAPITALS = "/v1/streams/static.capitals"
METRICS_TOKEN = "scrape-token-0123456789"


@contextlib.contextmanager
def serving(settings: Settings, **create: Any) -> Iterator[Gateway]:
    """A gateway under uvicorn with uvicorn's proxy headers off (as `worldgate serve` runs it)."""
    app = create_app(settings, **create)
    server = ServerThread(app)
    server.server.config.proxy_headers = False  # read when the server starts
    server.start()
    try:
        yield Gateway(server, app)
    finally:
        server.stop()


def access_lines(text: str) -> list[dict[str, Any]]:
    """The access log's lines among whatever else was written to stderr."""
    found = []
    for line in text.splitlines():
        if line.startswith("{") and '"logger":"worldgate.access"' in line:
            found.append(json.loads(line))
    return found


def warnings_of(stream: io.StringIO, logger: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    return [line for line in lines if line["logger"] == logger and line["level"] == "warning"]


def test_production_settings_read_and_refuse() -> None:
    defaults = load_settings({}, only=("production",)).production
    assert (defaults.access_log, defaults.access_log_every, defaults.shutdown_grace_s) == ("on", 1, 30.0)
    assert defaults.otlp_endpoint is None
    read = load_settings(
        {
            "WORLDGATE_ACCESS_LOG": "Sample:10",
            "WORLDGATE_SHUTDOWN_GRACE_S": "45",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        },
        only=("production",),
    ).production
    assert (read.access_log, read.access_log_every, read.shutdown_grace_s) == ("sample:10", 10, 45.0)
    assert read.otlp_endpoint == "http://collector:4318"
    assert load_settings({"WORLDGATE_ACCESS_LOG": "off"}, only=("production",)).production.access_log_every == 0
    for env, named in [
        ({"WORLDGATE_ACCESS_LOG": "loud"}, "WORLDGATE_ACCESS_LOG"),
        ({"WORLDGATE_ACCESS_LOG": "sample:0"}, "WORLDGATE_ACCESS_LOG"),
        ({"WORLDGATE_SHUTDOWN_GRACE_S": "-1"}, "WORLDGATE_SHUTDOWN_GRACE_S"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
    ]:
        with pytest.raises(SettingsError, match=named):
            load_settings(env, only=("production",))


def test_a_settlement_under_way_is_waited_for_past_the_grace_period(settings: Settings) -> None:
    """What `serve` waits for once the grace period is over: at least the longest settlement timeout."""
    assert settings.evm is not None and settings.svm is not None
    bound = settle_bound_s(settings)
    assert bound > settings.facilitator_settle_timeout_s
    assert bound > settings.evm.receipt_timeout_s and bound > settings.svm.confirm_timeout_s


async def test_proxy_headers_with_no_trusted_proxy_warn_once_and_share_one_bucket(
    settings: Settings, log_lines: io.StringIO
) -> None:
    limits = LimitSettings(free="50/minute", quote="100000/minute", payer="100000/minute")
    with serving(with_settings(settings, limits=limits)) as gateway:
        answers = [
            await gateway.get("/v1/streams", headers={"x-forwarded-for": f"198.51.100.{n}"}) for n in range(1, 5)
        ]
        plain = await gateway.get("/v1/attribution")
    assert [a.status_code for a in answers] == [200, 200, 200, 200]
    # every "client" counted in the same bucket: the proxy's (here the loopback) address
    remaining = [int(a.headers["ratelimit-remaining"]) for a in [*answers, plain]]
    assert remaining == sorted(remaining, reverse=True) and len(set(remaining)) == 5, remaining
    [warning] = warnings_of(log_lines, "worldgate.proxy")
    assert "WORLDGATE_TRUSTED_PROXIES" in warning["msg"] and "one rate-limit bucket" in warning["msg"]
    assert warning["headers"] == "x-forwarded-for" and warning["peer"] == "127.0.0.1"


async def test_a_trusted_proxy_names_the_client_for_limits_logs_and_quotes(
    settings: Settings, log_lines: io.StringIO, capfd: pytest.CaptureFixture[str]
) -> None:
    limits = LimitSettings(
        free="3/minute", quote="100000/minute", payer="100000/minute", trusted_proxies=("127.0.0.1",)
    )
    capfd.readouterr()
    with serving(with_settings(settings, limits=limits)) as gateway:
        first = [await gateway.get("/v1/streams", headers={"x-forwarded-for": "203.0.113.7"}) for _ in range(4)]
        other = await gateway.get("/v1/streams", headers={"x-forwarded-for": "203.0.113.8"})
        # a client writing its own X-Forwarded-For gets the hop the proxy appended, never the one it wrote
        spoofed = await gateway.get("/v1/streams", headers={"x-forwarded-for": "203.0.113.8, 203.0.113.7"})
        quote = await gateway.get(CAPITALS, headers={"x-forwarded-for": "203.0.113.9", "x-forwarded-proto": "https"})
    assert [a.status_code for a in first] == [200, 200, 200, 429]
    assert other.status_code == 200 and spoofed.status_code == 429
    assert quote.status_code == 402
    resource = unb64(quote.headers["payment-required"])["resource"]["url"]
    assert resource.startswith("https://"), resource  # the scheme the client used at the proxy
    lines = access_lines(capfd.readouterr().err)
    assert [line["client"] for line in lines] == ["203.0.113.7"] * 4 + ["203.0.113.8", "203.0.113.7", "203.0.113.9"]
    assert warnings_of(log_lines, "worldgate.proxy") == []  # configured: nothing to warn about


async def test_metrics_are_never_open_tokenless_to_a_relayed_request(settings: Settings) -> None:
    relayed = [{"x-forwarded-for": "127.0.0.1"}, {"forwarded": "for=127.0.0.1"}, {"via": "1.1 nginx"}]
    for trusted in ((), ("127.0.0.1",)):
        limits = with_settings(settings, limits=LimitSettings(trusted_proxies=trusted))
        with serving(limits) as gateway:
            assert (await gateway.get("/metrics")).status_code == 200  # a scraper on this machine
            for headers in relayed:
                assert (await gateway.get("/metrics", headers=headers)).status_code == 401, (trusted, headers)
    with serving(with_settings(settings, metrics_token=METRICS_TOKEN)) as gateway:
        bearer = {"authorization": f"Bearer {METRICS_TOKEN}"}
        assert (await gateway.get("/metrics", headers={**relayed[0], **bearer})).status_code == 200
        assert (await gateway.get("/metrics", headers=relayed[0])).status_code == 401


async def test_health_probes_through_a_proxy_count_under_ops(settings: Settings) -> None:
    """The kubelet and a load balancer's health checks are `ops` requests, whoever forwards them."""
    limits = LimitSettings(free="1/minute", ops="100/minute", trusted_proxies=("127.0.0.1",))
    with serving(with_settings(settings, limits=limits)) as gateway:
        live = [await gateway.get("/v1/health/live", headers={"x-forwarded-for": "10.1.2.3"}) for _ in range(3)]
    assert [a.status_code for a in live] == [200, 200, 200]
    assert all(a.headers["ratelimit-limit"] == "100" for a in live)


async def test_a_request_without_a_peer_address_is_left_alone() -> None:
    """A request whose peer uvicorn cannot tell (a unix socket) names no client, and is keyed as unknown."""
    from app.edge.abuse import ClientAddress
    from app.edge.proxy import ProxyHeaders

    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope.get("client"))

    guard = ProxyHeaders(app, trusted=("10.0.0.0/8",))
    await guard({"type": "http", "client": None, "headers": [(b"x-forwarded-for", b"1.2.3.4")]}, None, None)
    assert seen == [None]
    assert ClientAddress(("10.0.0.0/8",))({"client": None, "headers": []}) == "unknown"
