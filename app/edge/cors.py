"""CORS for browser payers: pure ASGI, outside the abuse guard and the gate.

A preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered here with 204: it
never reaches the guard's counters, is never quoted and never read for a payment. Every other answer
(admin and /metrics aside: an operator's pages are same-origin only) gets Access-Control-Allow-Origin
and Access-Control-Expose-Headers, so a page's script can read the 402's PAYMENT-REQUIRED and the
receipt in PAYMENT-RESPONSE. Any such headers set further in are replaced, never doubled.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.usecases.paths import MCP_PATH
from payments import EXPOSE_HEADERS, encode_json

ALLOW_METHODS = b"GET, HEAD"
MCP_ALLOW_METHODS = b"GET, POST, HEAD"  # MCP is JSON-RPC over POST
ALLOW_HEADERS = (
    b"PAYMENT-SIGNATURE, X-PAYMENT, Content-Type, Accept, X-Request-Id, Mcp-Protocol-Version, Mcp-Session-Id"
)
MAX_AGE_S = b"600"
UNCORSED_PREFIXES = ("/admin", "/metrics")  # the operator's, same-origin only
_CORS_NAMES = frozenset(
    {
        b"access-control-allow-origin",
        b"access-control-expose-headers",
        b"access-control-allow-methods",
        b"access-control-allow-headers",
        b"access-control-max-age",
    }
)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


class Cors:
    """`origins`: ("*",) for any origin, or the exact origins allowed (echoed, with Vary: Origin); ()
    turns CORS off (the app's answers pass untouched)."""

    def __init__(self, app: ASGIApp, *, origins: tuple[str, ...]) -> None:
        self.app = app
        self.any = origins == ("*",)
        self.origins = frozenset(origins)
        self.expose = (b"access-control-expose-headers", EXPOSE_HEADERS.encode())

    def _allowed(self, origin: bytes | None) -> bytes | None:
        """The Access-Control-Allow-Origin value for this request's Origin, or None."""
        if self.any:
            return b"*"
        if origin is not None and origin.decode("latin-1").lower().rstrip("/") in self.origins:
            return origin
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.origins or scope["path"].startswith(UNCORSED_PREFIXES):
            await self.app(scope, receive, send)
            return
        origin = _header(scope, b"origin")
        allowed = self._allowed(origin)
        if scope["method"] == "OPTIONS" and origin is not None and _header(scope, b"access-control-request-method"):
            await self._preflight(scope, send, allowed)
            return
        extra = [self.expose] if allowed is None else [(b"access-control-allow-origin", allowed), self.expose]
        if not self.any:
            extra.append((b"vary", b"Origin"))

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", ()) if bytes(k).lower() not in _CORS_NAMES]
                message["headers"] = [*kept, *extra]
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, scope: Scope, send: Send, allowed: bytes | None) -> None:
        vary = [] if self.any else [(b"vary", b"Origin")]
        if allowed is None:
            body = encode_json({"error": "origin_not_allowed", "message": "this origin may not call the API"})
            headers = [(b"content-type", b"application/json"), *vary, (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 403, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        methods = MCP_ALLOW_METHODS if scope["path"] == MCP_PATH else ALLOW_METHODS
        headers = [
            (b"access-control-allow-origin", allowed),
            (b"access-control-allow-methods", methods),
            (b"access-control-allow-headers", ALLOW_HEADERS),
            (b"access-control-max-age", MAX_AGE_S),
            (b"cache-control", b"no-store"),
            *vary,
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
