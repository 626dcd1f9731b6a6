"""AddressGuard: pure ASGI, refuses a request from a banned client address (403 `address_banned`) before anything
else reads it. The bans are the operator's (POST /admin/api/bans with an address), held in each worker by the
controls; the client is the address ProxyHeaders resolved (scope["client"]). The admin pages stay open, so an
operator who bans their own network can still lift the ban."""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

BODY = b'{"error":"address_banned","message":"requests from this address are refused by the operator"}'
HEADERS = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]


class AddressGuard:
    def __init__(self, app: ASGIApp, *, banned: Callable[[str], bool]) -> None:
        self.app = app
        self.banned = banned  # the controls' address_banned, as this worker last loaded the bans

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not scope["path"].startswith("/admin"):
            client = scope.get("client")
            if client and self.banned(str(client[0])):
                if scope["type"] == "websocket":  # closed before the handshake: the server answers 403
                    await send({"type": "websocket.close", "code": 1008})
                    return
                await send({"type": "http.response.start", "status": 403, "headers": HEADERS})
                await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else BODY})
                return
        await self.app(scope, receive, send)
