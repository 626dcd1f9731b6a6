"""The admin API's bans, beside api.py's routes and behind the same token:

- GET /admin/api/bans: the bans in force: `bans` (payers) and `address_bans` (client addresses or networks), each
  with its reason, who set it, when, and when it ends (`expires_at`, null: until lifted); and whether this
  gateway enforces address bans (`addresses_enforced`: its middleware has the AddressGuard).
- POST /admin/api/bans with {"payer": ...} or {"address": ...}, a "reason", and optionally "expires_in_s" (60 s
  to a year) or "expires_at" (ISO 8601): 201 with the ban. A payer is refused before verification, an address
  before anything reads its request. An address ban where it is not enforced answers 409.
- DELETE /admin/api/bans/{payer or address}: 200, or 404 when it is not banned.

Each ban and unban is kept in the audit log with the admin's subject, in the transaction that makes it.
"""

from __future__ import annotations

import ipaddress
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.edge.admin.address_guard import AddressGuard
from app.edge.admin.auth import Admin
from app.edge.admin.http import AdminCore, BadRequest, _body, _json, _problem, _text
from app.runtime.times import parse_when
from app.usecases.controls import normalize_payer
from ledger import operator

log = logging.getLogger("worldgate.admin")
REASON_MAX = 500
EXPIRY_S_MIN, EXPIRY_S_MAX = 60, 366 * 86400


def enforces_addresses(request: Request) -> bool:
    """Whether this app's middleware refuses banned addresses (app/wiring.py adds the AddressGuard)."""
    return any(getattr(m, "cls", None) is AddressGuard for m in getattr(request.app, "user_middleware", ()))


def _expiry(body: dict[str, Any]) -> datetime | None:
    seconds, at = body.get("expires_in_s"), body.get("expires_at")
    if seconds is not None and at is not None:
        raise BadRequest("give expires_in_s or expires_at, not both")
    now = datetime.now(UTC)
    if seconds is not None:
        if not isinstance(seconds, int) or isinstance(seconds, bool) or not EXPIRY_S_MIN <= seconds <= EXPIRY_S_MAX:
            raise BadRequest(f"expires_in_s must be an integer from {EXPIRY_S_MIN} to {EXPIRY_S_MAX}")
        return now + timedelta(seconds=seconds)
    if at is not None:
        try:
            when = parse_when(str(at), now)
        except ValueError as exc:
            raise BadRequest(f"expires_at: {exc}") from None
        if when <= now:
            raise BadRequest("expires_at must be in the future")
        return when
    return None


def _network(text: str) -> str | None:
    """An IP address or network as Postgres will store it, or None when `text` is neither."""
    try:
        return str(ipaddress.ip_network(text.strip(), strict=True))
    except ValueError:
        return None


class BanApi:
    def __init__(self, admin: AdminCore) -> None:
        self.admin = admin

    def routes(self) -> list[Route]:
        guarded = self.admin._guarded
        return [
            Route("/admin/api/bans", guarded(self.bans), methods=["GET", "POST"]),
            Route("/admin/api/bans/{payer:path}", guarded(self.unban), methods=["DELETE"]),
        ]

    async def _reload(self) -> None:
        if self.admin.controls is not None:
            await self.admin.controls.reload()  # this worker now; the others on NOTIFY

    async def bans(self, request: Request, admin: Admin) -> Response:
        pool = self.admin.services.pool
        if request.method == "GET":
            payers = [{"kind": "payer", **_fields(b)} for b in (await operator.bans(pool)).values()]
            addresses = [{"kind": "address", **_fields(b)} for b in await operator.address_bans(pool)]
            enforced = enforces_addresses(request)
            return _json({"bans": payers, "address_bans": addresses, "addresses_enforced": enforced})
        body = await _body(request)
        reason = _text(body, "reason", REASON_MAX)
        expires_at = _expiry(body)
        if ("payer" in body) == ("address" in body):
            raise BadRequest("name a payer or an address to ban (one of them)")
        if "address" in body:
            address = _network(str(body["address"])) if isinstance(body["address"], str) else None
            if address is None:
                raise BadRequest("address must be an IP address or network (203.0.113.7, 2001:db8::/64)")
            if not enforces_addresses(request):
                message = "this gateway does not refuse banned addresses: its middleware lacks the AddressGuard"
                return _problem(409, "address_bans_not_enforced", message)
            banned = await operator.ban_address(pool, address, reason, admin.subject, expires_at)
            await self._reload()
            log.info("address banned", extra={"admin": admin.subject, "address": banned.address})
            return _json({"kind": "address", **_fields(banned)}, 201)
        payer = body["payer"]
        if not isinstance(payer, str) or not payer.strip() or len(payer) > 100:
            raise BadRequest("payer must be an address of at most 100 characters")
        ban = await operator.ban(pool, normalize_payer(payer), reason, admin.subject, expires_at)
        await self._reload()
        log.info("payer banned", extra={"admin": admin.subject, "payer": ban.payer})
        return _json({"kind": "payer", **_fields(ban)}, 201)

    async def unban(self, request: Request, admin: Admin) -> Response:
        pool = self.admin.services.pool
        raw = request.path_params["payer"]
        address = _network(raw)
        if address is not None:  # payers are 0x… hex or base58: never an IP address
            gone = await operator.unban_address(pool, address, admin.subject)
            if gone is None:
                return _problem(404, "unknown_ban", "that address is not banned")
            await self._reload()
            log.info("address unbanned", extra={"admin": admin.subject, "address": gone})
            return _json({"address": gone, "banned": False})
        payer = normalize_payer(raw)
        if not await operator.unban(pool, payer, admin.subject):
            return _problem(404, "unknown_ban", "that payer is not banned")
        await self._reload()
        log.info("payer unbanned", extra={"admin": admin.subject, "payer": payer})
        return _json({"payer": payer, "banned": False})


def _fields(ban: Any) -> dict[str, Any]:
    return {name: getattr(ban, name) for name in ban.__slots__}
