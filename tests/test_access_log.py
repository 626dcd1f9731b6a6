"""The access log (one JSON line per request, no secret in it) and OpenTelemetry traces (a span per request, with
verify, claim, handler and settle inside a paid one), on real gateways over the session's Postgres, Redis and anvil.
"""

from __future__ import annotations

import asyncio
import http.server
import threading
from typing import Any

import pytest
from eth_account import Account
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.edge.access_log import AccessLog
from app.runtime.settings import ProductionSettings, Settings
from app.runtime.tracing import Tracing
from app.wiring import create_app
from payments.devnet.evm import EvmDevnet

from .chain import new_payer, pay_for, unb64
from .conftest import Gateway, with_settings
from .services import free_port
from .test_production import CAPITALS, access_lines, serving

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def _secrets_of(header: str) -> list[str]:
    """What must never reach a log line: the header itself, and the signature and nonce inside it."""
    authorization = unb64(header)["payload"]
    return [header, header[:48], header[-48:], authorization["signature"], authorization["authorization"]["nonce"]]


async def test_each_request_leaves_one_access_line_and_no_secret(
    gateway: Gateway, devnet: EvmDevnet, capfd: pytest.CaptureFixture[str]
) -> None:
    offer = await gateway.offer(CAPITALS)
    key = new_payer(devnet)
    header = pay_for(key, devnet, offer)
    refused_header = pay_for(key, devnet, {**offer, "amount": "1"})  # signs less than the price
    capfd.readouterr()
    sent = {
        "free": await gateway.get("/v1/streams", headers={"x-request-id": "log-free"}),
        "quote": await gateway.get(CAPITALS, headers={"x-request-id": "log-quote"}),
        "paid": await gateway.get(CAPITALS, headers={"x-request-id": "log-paid", "PAYMENT-SIGNATURE": header}),
        "refused": await gateway.get(
            CAPITALS, headers={"x-request-id": "log-refused", "PAYMENT-SIGNATURE": refused_header}
        ),
        "missing": await gateway.get("/v1/nothing-here", headers={"x-request-id": "log-missing"}),
        "stream": await gateway.get("/v1/streams/no.such", headers={"x-request-id": "log-stream"}),
    }
    written = capfd.readouterr().err
    lines = {line["request_id"]: line for line in access_lines(written) if line["request_id"].startswith("log-")}
    assert sorted(lines) == sorted(f"log-{name}" for name in sent)  # one line each, no more
    assert len([line for line in access_lines(written) if line["request_id"].startswith("log-")]) == len(sent)

    routes = {name: lines[f"log-{name}"]["route"] for name in sent}
    assert routes == {
        "free": "/v1/streams",
        "quote": "/v1/streams/{id}",  # answered by the gate, before any routing
        "paid": "/v1/streams/{id}",
        "refused": "/v1/streams/{id}",
        "missing": "other",
        "stream": "/v1/streams/{id}",
    }
    for name, answer in sent.items():
        line = lines[f"log-{name}"]
        assert line["status"] == answer.status_code, name
        assert line["bytes"] == len(answer.content), name
        assert line["method"] == "GET" and line["client"] == "127.0.0.1" and line["logger"] == "worldgate.access"
        assert 0 < line["duration_ms"] < 60_000 and line["ts"].endswith("Z")
    paid = lines["log-paid"]
    assert sent["paid"].status_code == 200 and paid["path"] == CAPITALS
    assert paid["payer"].lower() == Account.from_key(key).address.lower()
    assert paid["cache"] == sent["paid"].headers["x-cache"]
    assert [lines[f"log-{n}"]["payer"] for n in ("free", "quote", "refused", "missing")] == [None] * 4
    assert lines["log-quote"]["status"] == 402 and lines["log-refused"]["status"] == 402

    receipt = sent["paid"].headers["payment-response"]
    for secret in [*_secrets_of(header), *_secrets_of(refused_header), receipt, key, key[2:]]:
        assert secret not in written, secret[:20]


async def test_a_sampled_access_log_keeps_every_paid_request(
    settings: Settings, devnet: EvmDevnet, capfd: pytest.CaptureFixture[str]
) -> None:
    sampled = with_settings(settings, production=ProductionSettings(access_log="sample:4"))
    with serving(sampled) as gateway:
        offer = await gateway.offer(CAPITALS)
        capfd.readouterr()
        for n in range(8):
            await gateway.get(CAPITALS, headers={"x-request-id": f"sampled-{n}"})
        header = pay_for(new_payer(devnet), devnet, offer)
        paid = await gateway.get(CAPITALS, headers={"x-request-id": "sampled-paid", "PAYMENT-SIGNATURE": header})
    assert paid.status_code == 200
    ids = [line["request_id"] for line in access_lines(capfd.readouterr().err)]
    assert len([i for i in ids if i.startswith("sampled-") and i != "sampled-paid"]) == 2  # one quote in four
    assert "sampled-paid" in ids  # paid requests are never sampled away


async def test_the_access_log_off_writes_nothing(settings: Settings, capfd: pytest.CaptureFixture[str]) -> None:
    off = with_settings(settings, production=ProductionSettings(access_log="off"))
    app = create_app(off)
    assert AccessLog not in [m.cls for m in app.user_middleware]
    with serving(off) as gateway:
        capfd.readouterr()
        assert (await gateway.get("/v1/streams")).status_code == 200
    assert access_lines(capfd.readouterr().err) == []


def test_without_an_endpoint_no_tracing_code_is_on_the_path(settings: Settings) -> None:
    assert settings.production.otlp_endpoint is None and Tracing.from_endpoint(None) is None
    app = create_app(settings)
    names = [getattr(m.cls, "__qualname__", repr(m.cls)) for m in app.user_middleware]
    assert names == ["ProxyHeaders", "AddressGuard", "AccessLog", "RequestMetrics", "Cors", "AbuseGuard", "PaymentGate"]


async def test_a_paid_request_is_traced_verify_claim_handler_settle(
    settings: Settings, devnet: EvmDevnet, capfd: pytest.CaptureFixture[str]
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with serving(settings, tracing=Tracing(provider)) as gateway:
        offer = await gateway.offer(CAPITALS)
        header = pay_for(new_payer(devnet), devnet, offer)
        exporter.clear()
        capfd.readouterr()
        traceparent = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
        paid = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": header, "traceparent": traceparent})
        for _ in range(200):  # the request's span ends once its delivery is marked, just after the answer
            spans = list(exporter.get_finished_spans())
            if any(s.kind.name == "SERVER" for s in spans):
                break
            await asyncio.sleep(0.01)
    assert paid.status_code == 200, paid.text

    [server] = [s for s in spans if s.kind.name == "SERVER"]
    assert server.name == "GET /v1/streams/{id}"
    assert f"{server.context.trace_id:032x}" == TRACE_ID  # the caller's trace, continued
    assert server.parent is not None and f"{server.parent.span_id:016x}" == CALLER_SPAN
    assert server.attributes["http.route"] == "/v1/streams/{id}"
    assert server.attributes["http.response.status_code"] == 200
    children = {s.name: s for s in spans if s.parent is not None and s.parent.span_id == server.context.span_id}
    assert {"verify", "claim", "handler", "settle"} <= children.keys(), sorted(children)
    order = sorted(("claim", "verify", "handler", "settle"), key=lambda name: children[name].start_time)
    assert order == ["claim", "verify", "handler", "settle"]
    assert children["verify"].attributes["x402.valid"] is True
    assert children["settle"].attributes["x402.success"] is True
    assert children["settle"].attributes["x402.network"] == devnet.network
    assert all(s.context.trace_id == server.context.trace_id for s in spans)
    attributes = " ".join(str(v) for s in spans for v in s.attributes.values())
    for secret in _secrets_of(header):
        assert secret not in attributes
    [line] = [line for line in access_lines(capfd.readouterr().err) if line["status"] == 200]
    assert line["trace_id"] == TRACE_ID  # the log line and the trace name each other


class _Collector(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        _Collector.received.append((self.path, self.headers["content-type"], body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


async def test_spans_reach_an_otlp_collector_over_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real exporter, as OTEL_EXPORTER_OTLP_ENDPOINT configures it, against a collector on loopback."""
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    port = free_port()
    server = http.server.HTTPServer(("127.0.0.1", port), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        tracing = Tracing.from_endpoint(f"http://127.0.0.1:{port}")
        assert tracing is not None
        with tracing.tracer.start_as_current_span("verify"):
            pass
        await tracing.shutdown()  # flushes the batch
    finally:
        server.shutdown()
        thread.join(5)
    [(path, content_type, body)] = _Collector.received
    assert path == "/v1/traces" and content_type == "application/x-protobuf"
    assert b"worldgate" in body and b"verify" in body  # the service name and the span, protobuf-encoded
