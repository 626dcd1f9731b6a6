"""The x402 gate: pure ASGI middleware in front of the paid routes (HTTP's side of the checkout).

A paid GET goes: the query's rules (400/404/503 before anything else) → no payment: a 402 quote →
size-capped decode of PAYMENT-SIGNATURE (v2) or X-PAYMENT (v1), bound to this route's offers
(app/usecases/binding.py) → the checkout (app/usecases/checkout.py: inspection, bans, payment-identifier,
claim, verify, serve, settle, journal), with the handler's response held in a buffer → its reply
(app/usecases/replies.py) as HTTP: the body with PAYMENT-RESPONSE only after a successful settlement.
Pure ASGI rather than Starlette's BaseHTTPMiddleware, which cut the paid path's throughput about 3x
when measured.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.edge.base_url import public_base_url
from app.runtime import metrics
from app.runtime.settings import Settings
from app.usecases import binding
from app.usecases.checkout import Checkout
from app.usecases.outcomes import Delivered, Refused, Served, Verified
from app.usecases.pricing import PaidRoute
from app.usecases.queries import Problem
from app.usecases.replies import Kind, Reply, reply
from app.usecases.retries import Requested
from app.usecases.services import Services
from payments import Reason, Refusal, Settlement, encode_header, encode_json

__all__ = ["FOLLOW_SCOPE_KEY", "PAYMENT_SCOPE_KEY", "PaymentGate", "Services"]

PAYMENT_SCOPE_KEY = "worldgate_payment"  # set in scope["state"] once a payment is verified and claimed
# A handler whose answer goes on after its sale (a live feed) leaves here `follow(receive, send)`: once the sale
# is delivered, the gate sends the buffered start unfinished and hands the connection over to it.
FOLLOW_SCOPE_KEY = "worldgate_follow"
_V2_HEADER = b"payment-signature"
_V1_HEADER = b"x-payment"
_ONE_HEADER = "send one payment header, once: PAYMENT-SIGNATURE (x402 v2) or X-PAYMENT (v1), not both"
_JSON = (b"content-type", b"application/json")
_NO_STORE = (b"cache-control", b"no-store")

Headers = list[tuple[bytes, bytes]]


@dataclass
class _Buffered:
    """The handler's response, held back until settlement decides whether it may leave."""

    bytes_max: int
    start: Message | None = None
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    too_large: bool = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
        elif message["type"] == "http.response.body":
            chunk = message.get("body", b"")
            self.size += len(chunk)
            if self.size > self.bytes_max:
                self.too_large = True
                self.chunks.clear()
            elif chunk:
                self.chunks.append(chunk)

    @property
    def status(self) -> int:
        return int(self.start["status"]) if self.start else 500

    def served(self) -> Served:
        if self.too_large or self.start is None:
            return Served(False, self, "response_too_large" if self.too_large else "handler_sent_nothing")
        if self.status >= 400:
            return Served(False, self, f"handler_status_{self.status}")
        return Served(True, self)


class _Departure:
    """Watches the connection while a paid request is verified and served. A client that has gone by the
    time its data is ready is not sold it: the claim is released and nothing is charged. (Paid routes
    take no body, so after the request message the next one is the disconnect.)"""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._messages: asyncio.Queue[Message] = asyncio.Queue()
        self.gone = False

    async def watch(self) -> None:
        while not self.gone:
            message = await self._receive()
            self.gone = message["type"] == "http.disconnect"
            self._messages.put_nowait(message)

    async def receive(self) -> Message:
        """The handler's receive: the same messages, read through the watcher."""
        return await self._messages.get()


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _has_body(scope: Scope) -> bool:
    for key, value in scope["headers"]:
        if (key == b"content-length" and value.strip() != b"0") or key == b"transfer-encoding":
            return True
    return False


async def _respond(send: Send, status: int, headers: Headers, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _receipt(settlement: Settlement, version: int) -> tuple[bytes, bytes]:
    name = b"payment-response" if version == 2 else b"x-payment-response"
    return name, encode_header(settlement.response()).encode()


def _delivery(buffered: _Buffered, settlement: Settlement, version: int) -> tuple[int, Headers, bytes]:
    """The sold response: the handler's, with the receipt, marked private (it was bought by one payer)."""
    assert buffered.start is not None
    extra = [(b"cache-control", b"private"), _receipt(settlement, version)]  # CORS headers: app/edge/cors.py
    replaced = {name for name, _ in extra} | {b"content-length"}
    headers = [(bytes(k), bytes(v)) for k, v in buffered.start.get("headers", []) if bytes(k).lower() not in replaced]
    return buffered.status, [*headers, *extra], b"".join(buffered.chunks)


def _delivery_start(buffered: _Buffered, settlement: Settlement, version: int) -> Message:
    """A followed sale's response start: the handler's, with the receipt, and no length (it goes on)."""
    status, headers, _ = _delivery(buffered, settlement, version)
    return {"type": "http.response.start", "status": status, "headers": headers}


def _stored(response: tuple[int, Headers, bytes]) -> bytes:
    """A delivery as the payment-identifier store keeps it, to replay byte for byte."""
    status, headers, body = response
    document = {
        "status": status,
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in headers],
        "body": base64.b64encode(body).decode(),
    }
    return json.dumps(document).encode()


def _unstored(raw: bytes) -> tuple[int, Headers, bytes]:
    document = json.loads(raw)
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in document["headers"]]
    return int(document["status"]), headers, base64.b64decode(document["body"])


class PaymentGate:
    def __init__(self, app: ASGIApp, *, services: Services, settings: Settings) -> None:
        self.app = app
        self.services = services
        self.checkout = Checkout(services)
        self.public_url = settings.public_url.rstrip("/") if settings.public_url else None
        self.header_bytes_max = settings.payment_header_bytes_max
        self.response_bytes_max = settings.response_bytes_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        pricing = self.services.pricing
        if pricing is None:  # not started: the handlers refuse paid paths without the gate's mark anyway
            await self.app(scope, receive, send)
            return
        paid = pricing.lookup(scope["path"])
        if paid is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):  # never quoted, never read for a payment, never settled
            body = encode_json({"error": "method_not_allowed", "message": "paid routes answer GET and HEAD only"})
            await _respond(send, 405, [_JSON, _NO_STORE, (b"allow", b"GET, HEAD")], body)
            return
        if _has_body(scope):  # a paid GET takes no body: refused before any payment header is read
            body = encode_json({"error": "body_not_allowed", "message": "paid routes take no request body"})
            # no `connection: close`: the guard capped the body, and uvicorn discards it unread before the next request
            await _respond(send, 413, [_JSON, _NO_STORE], body if scope["method"] == "GET" else b"")
            return
        problem = paid.query_string(scope["query_string"])
        if isinstance(problem, Problem):  # unknown, repeated or breaking the rules: refused before any quote
            body = encode_json({"error": problem.error, "message": problem.message})
            await _respond(send, problem.status, [_JSON, _NO_STORE], body if scope["method"] == "GET" else b"")
            return
        paid = pricing.for_query(paid, problem)  # a history range is priced by what it asks
        base_url = public_base_url(scope, self.public_url)
        header, version = _header(scope, _V2_HEADER), 2
        if header is None:
            header, version = _header(scope, _V1_HEADER), 1
        if header is None or scope["method"] == "HEAD":  # a HEAD is quoted, never settled
            quote = pricing.quote(paid, base_url)
            body = quote.body if scope["method"] == "GET" else b""
            headers = [_JSON, _NO_STORE, (b"payment-required", quote.header.encode())]
            metrics.QUOTES(paid.path).inc()
            await _respond(send, 402, headers, body)
            return
        await self._paid(scope, receive, send, paid, base_url, header, version, Requested(scope["method"], problem))

    async def _quote(self, send: Send, paid: PaidRoute, base_url: str, status: int, error: str, message: str) -> None:
        """A fresh quote naming why the payment was refused."""
        assert self.services.pricing is not None
        quote = self.services.pricing.encode(paid, base_url, error, message)
        headers = [_JSON, _NO_STORE, (b"payment-required", quote.header.encode())]
        await _respond(send, status, headers, quote.body)

    async def _paid(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        paid: PaidRoute,
        base_url: str,
        header: bytes,
        version: int,
        requested: Requested,  # what a payment-identifier is bound to
    ) -> None:
        # Two payment headers (v2 and v1, or one twice) make it ambiguous which payment is charged: refuse both.
        sent = sum(1 for key, _ in scope["headers"] if key in (_V2_HEADER, _V1_HEADER))
        bound = (
            binding.bind_header(header, version, paid.offers, bytes_max=self.header_bytes_max, resources=(paid.path,))
            if sent == 1
            else Refusal(Reason.INVALID_PAYLOAD, _ONE_HEADER)
        )
        if isinstance(bound, Refusal):
            refused = binding.refused(paid, bound, x402_version=version)
            await self._render(send, paid, base_url, version, reply(Refused(refused)))
            return
        payload, offer = bound
        departure = _Departure(receive)

        async def serve(verified: Verified) -> Served:
            scope.setdefault("state", {})[PAYMENT_SCOPE_KEY] = {
                "payment_id": verified.payment_id,
                "payer": verified.payer,
                "scheme": offer.scheme,
                "network": offer.network,
                "payload": payload.payload,
            }
            buffered = _Buffered(self.response_bytes_max)
            if not departure.gone:  # gone during verification: do not even read the data
                await self.app(scope, departure.receive, buffered.send)
            if departure.gone:  # checked last: the settlement starts right after this returns
                return Served(False, buffered, "client_disconnected")
            return buffered.served()

        def stored(delivered: Delivered) -> bytes:
            return _stored(_delivery(delivered.served.result, delivered.settlement, version))

        watcher = asyncio.create_task(departure.watch())
        try:
            outcome = await self.checkout.pay(
                paid, payload, offer, serve, transport="http", store=stored, request=requested
            )
            present = not departure.gone  # at the start of the answer: TCP cannot tell us more
        finally:
            watcher.cancel()
        follow = scope.get("state", {}).pop(FOLLOW_SCOPE_KEY, None)
        if follow is not None and isinstance(outcome, Delivered) and present:
            buffered: _Buffered = outcome.served.result
            await send(_delivery_start(buffered, outcome.settlement, version))
            await send({"type": "http.response.body", "body": b"".join(buffered.chunks), "more_body": True})
            await self.checkout.delivered(outcome)
            await follow(receive, send)  # the connection is the handler's from here (receive: its disconnect)
            return
        await self._render(send, paid, base_url, version, reply(outcome))
        if isinstance(outcome, Delivered) and present:
            await self.checkout.delivered(outcome)  # after the answer: its latency is not the caller's

    async def _render(self, send: Send, paid: PaidRoute, base_url: str, version: int, answer: Reply) -> None:
        """A paid request's reply, in HTTP."""
        if answer.kind is Kind.DELIVERED:
            assert answer.served is not None and answer.settlement is not None
            await _respond(send, *_delivery(answer.served.result, answer.settlement, version))
        elif answer.kind is Kind.QUOTE:
            assert answer.status is not None and answer.error is not None
            quoted = dataclasses.replace(paid, offers=answer.offers) if answer.offers else paid
            await self._quote(send, quoted, base_url, answer.status, answer.error, answer.message or "")
        elif answer.kind is Kind.REPLAYED:
            assert answer.stored is not None
            await _respond(send, *_unstored(answer.stored))
        elif answer.kind is Kind.ACKNOWLEDGED:  # no data: the receipt and a short document
            assert answer.settlement is not None and answer.status is not None
            headers = [_JSON, _NO_STORE, _receipt(answer.settlement, version)]
            await _respond(send, answer.status, headers, encode_json(dict(answer.fields)))
        elif answer.kind is Kind.NOT_SERVED:
            assert answer.served is not None
            buffered: _Buffered = answer.served.result
            if buffered.too_large or buffered.start is None:
                error = "response_too_large" if buffered.too_large else "no_response"
                await _respond(send, 502, [_JSON, _NO_STORE], encode_json({"error": error}))
            else:
                await self._forward(send, buffered, [_NO_STORE])
        elif answer.kind is Kind.UNSETTLED:
            settlement = answer.settlement
            assert settlement is not None and answer.status is not None
            body = encode_json(
                {
                    "x402Version": 2,
                    "error": answer.error,
                    **answer.fields,
                    "message": answer.message,
                    "transaction": settlement.transaction,
                    "network": settlement.network,
                }
            )
            headers = [_JSON, _NO_STORE, _receipt(settlement, version)]
            if answer.retry_after is not None:  # pending: wait, then send the same payment again
                headers.append((b"retry-after", str(answer.retry_after).encode()))
            await _respond(send, answer.status, headers, body)
        else:
            assert answer.kind is Kind.ERROR and answer.status is not None
            headers = [_JSON, _NO_STORE]
            if answer.retry_after is not None:
                headers.append((b"retry-after", str(answer.retry_after).encode()))
            await _respond(send, answer.status, headers, encode_json(answer.document()))

    async def _forward(self, send: Send, buffered: _Buffered, extra: Headers) -> None:
        assert buffered.start is not None
        replaced = {name for name, _ in extra}
        headers = [(k, v) for k, v in buffered.start.get("headers", []) if bytes(k).lower() not in replaced]
        await send({**buffered.start, "headers": [*headers, *extra]})
        await send({"type": "http.response.body", "body": b"".join(buffered.chunks)})
