"""Admin sessions seen, for the console's connected users: each token that called the admin API, by its hash
(never the token), with its subject, whether a browser (the cookie) or a program (a bearer) holds it, and its
client. Written at most every WRITE_S per session and worker, so a polling page costs few writes."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from starlette.requests import Request

import ledger
from app.edge.admin.auth import COOKIE, Admin
from ledger import console

log = logging.getLogger("worldgate.admin")
WRITE_S = 15.0
REMEMBERED_MAX = 4096  # sessions whose last write this worker remembers


def session_id(request: Request) -> str | None:
    """The first 16 hex digits of the SHA-256 of the token this request carries."""
    header = request.headers.get("authorization", "")
    token = header.partition(" ")[2].strip() if header else request.cookies.get(COOKIE, "")
    return hashlib.sha256(token.encode()).hexdigest()[:16] if token else None


class Sessions:
    def __init__(self) -> None:
        self._written: dict[str, float] = {}

    async def seen(self, pool: Any, admin: Admin, request: Request) -> None:
        session = session_id(request)
        if session is None:
            return
        now = time.monotonic()
        if now - self._written.get(session, -WRITE_S) < WRITE_S:
            return
        if len(self._written) >= REMEMBERED_MAX:
            self._written.clear()
        self._written[session] = now
        client = request.client.host if request.client else None
        via = "browser" if admin.via_cookie else "bearer"
        try:
            await console.session_seen(pool, session, admin.subject, via, client, admin.expires_at)
        except ledger.LedgerError as exc:  # who is connected is worth less than the call itself
            log.warning("could not note an admin session", extra={"error": str(exc)})
