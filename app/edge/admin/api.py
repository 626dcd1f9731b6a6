"""The admin API under /admin/api/: reports, payments, reconciliation and its findings, stream sharing, payer
bans and the settlement queue. Every route needs an admin token (see auth.py); answers are JSON (reports also CSV
and a text table)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import ledger
from adapters import Registry, Sharing, Stream
from app.edge.admin.auth import Admin, AdminAuth, AuthFailure
from app.runtime.times import parse_when
from app.usecases.controls import Controls, normalize_payer
from app.usecases.services import Services
from ledger import PaymentState, findings, operator
from ledger.reports import Grouping
from payments import encode_json

log = logging.getLogger("worldgate.admin")
PAYMENT_STATES = tuple(PaymentState)
GROUPS = tuple(Grouping)
SHARING = tuple(Sharing)
FORMATS = {"json": "application/json", "csv": "text/csv; charset=utf-8", "table": "text/plain; charset=utf-8"}
_NO_STORE = {"cache-control": "no-store"}

Handler = Callable[[Request, Admin], Awaitable[Response]]


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(encode_json(_plain(content)), status, {**_NO_STORE, **(headers or {})}, "application/json")


def _plain(value: Any) -> Any:
    """JSON-ready: dataclasses as dicts, datetimes as ISO, big integers as they are (msgspec keeps them exact)."""
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


def _problem(status: int, error: str, message: str) -> Response:
    headers = {"www-authenticate": 'Bearer realm="worldgate-admin"'} if status == 401 else None
    return _json({"error": error, "message": message}, status, headers)


class BadRequest(ValueError):
    """A malformed admin query: 400 with this message."""


def _choice(request: Request, name: str, choices: tuple[str, ...] | dict[str, str], default: str | None) -> str | None:
    value = request.query_params.get(name) or default
    if value is not None and value not in choices:
        raise BadRequest(f"{name} must be one of {', '.join(choices)}")
    return value


def _window(request: Request) -> tuple[datetime, datetime]:
    try:
        since = parse_when(request.query_params.get("from"), datetime(1970, 1, 1, tzinfo=UTC))
        until = parse_when(request.query_params.get("to"), datetime.now(UTC))  # ends now, as the CLI's
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    if since >= until:
        raise BadRequest("from must be before to")
    return since, until


def _filters(request: Request) -> dict[str, str | None]:
    payer = request.query_params.get("payer")
    return {
        "network": request.query_params.get("network") or None,
        "stream": request.query_params.get("stream") or None,
        "payer": normalize_payer(payer) if payer else None,
        "state": _choice(request, "state", PAYMENT_STATES, None),
    }


def _int_param(request: Request, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise BadRequest(f"{name} must be an integer from {low} to {high}")
    return int(raw)


class AdminApi:
    def __init__(
        self,
        auth: AdminAuth,
        services: Services,
        base_registry: Callable[[], Registry],
        source_matrix: Callable[[], Awaitable[list[dict[str, Any]]]],
    ) -> None:
        self.auth = auth
        self.services = services
        self._base_registry = base_registry
        self._source_matrix = source_matrix
        self.controls: Controls | None = None  # set by the lifespan
        self.reconcile: Callable[[str], Awaitable[dict[str, Any]]] | None = None  # set by the lifespan

    def routes(self) -> list[Route]:
        guarded = self._guarded
        return [
            Route("/admin/api/whoami", guarded(self.whoami)),
            Route("/admin/api/reports", guarded(self.reports)),
            Route("/admin/api/reports/summary", guarded(self.summary)),
            Route("/admin/api/payments", guarded(self.payments)),
            Route("/admin/api/payments/{id}", guarded(self.payment)),
            Route("/admin/api/reconcile", guarded(self.run_reconcile), methods=["POST"]),
            Route("/admin/api/findings", guarded(self.findings)),
            Route("/admin/api/findings/{id}/{action}", guarded(self.act_on_finding), methods=["POST"]),
            Route("/admin/api/queue", guarded(self.queue)),
            Route("/admin/api/streams", guarded(self.streams)),
            Route("/admin/api/streams/{id}/sharing", guarded(self.set_sharing), methods=["PUT"]),
            Route("/admin/api/bans", guarded(self.bans), methods=["GET", "POST"]),
            Route("/admin/api/bans/{payer}", guarded(self.unban), methods=["DELETE"]),
        ]

    def _guarded(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                admin = self.auth.authenticate(request)
            except AuthFailure as exc:
                return _problem(401, "unauthorized", str(exc))
            if self.services.pool is None:
                return _problem(503, "not_ready", "the ledger is not connected yet")
            try:
                return await handler(request, admin)
            except BadRequest as exc:
                return _problem(400, "invalid_query", str(exc))
            except ledger.LedgerUnavailable:
                return _problem(503, "ledger_unavailable", "Postgres is unreachable; try again")
            except ledger.LedgerError as exc:
                return _problem(400, "refused", str(exc))

        return endpoint

    @property
    def _pool(self) -> Any:
        return self.services.pool

    async def whoami(self, request: Request, admin: Admin) -> Response:
        return _json({"subject": admin.subject, "expires_at": admin.expires_at, "session": admin.via_cookie})

    async def reports(self, request: Request, admin: Admin) -> Response:
        group_by = _choice(request, "group_by", GROUPS, Grouping.DAY)
        fmt = _choice(request, "format", FORMATS, "json")
        assert group_by is not None and fmt is not None
        since, until = _window(request)
        rows = await ledger.reports.report(self._pool, group_by, since, until, **_filters(request))
        text = ledger.reports.render(rows, fmt, group_by)
        return Response(text, 200, _NO_STORE, FORMATS[fmt])

    async def summary(self, request: Request, admin: Admin) -> Response:
        fmt = _choice(request, "format", FORMATS, "json")
        assert fmt is not None
        since, until = _window(request)
        summary = await ledger.reports.summary(self._pool, since, until, **_filters(request))
        return Response(ledger.reports.render_summary(summary, fmt), 200, _NO_STORE, FORMATS[fmt])

    async def payments(self, request: Request, admin: Admin) -> Response:
        filters = _filters(request)
        since, until = (
            _window(request)
            if ("from" in request.query_params or "to" in request.query_params)
            else (
                None,
                None,
            )
        )
        found = await operator.search_payments(
            self._pool,
            payer=filters["payer"],
            state=filters["state"],
            network=filters["network"],
            stream=filters["stream"],
            tx_hash=request.query_params.get("tx_hash") or None,
            payment_key=request.query_params.get("payment_key") or None,
            since=since,
            until=until,
            before_id=_int_param(request, "before_id", None, 1, 2**62),
            limit=_int_param(request, "limit", 100, 1, operator.SEARCH_LIMIT_MAX) or 100,
        )
        next_page = found[-1]["id"] if found else None
        return _json({"count": len(found), "payments": found, "next_before_id": next_page})

    async def payment(self, request: Request, admin: Admin) -> Response:
        raw = request.path_params["id"]
        if not raw.isdigit() or int(raw) > 2**62:
            return _problem(404, "unknown_payment", "no such payment")
        detail = await ledger.claims.payment(self._pool, int(raw))
        if detail is None:
            return _problem(404, "unknown_payment", "no such payment")
        return _json(detail)

    async def run_reconcile(self, request: Request, admin: Admin) -> Response:
        if self.reconcile is None:
            return _problem(503, "reconcile_unavailable", "reconciliation is not running in this process")
        log.info("reconcile requested", extra={"admin": admin.subject})
        return _json(await self.reconcile("admin"))

    async def findings(self, request: Request, admin: Admin) -> Response:
        state = _choice(request, "state", findings.STATES, None)
        limit = _int_param(request, "limit", findings.LIST_MAX, 1, findings.LIST_MAX) or findings.LIST_MAX
        found = await findings.findings(self._pool, state, limit)
        return _json({"count": len(found), "findings": found})

    async def act_on_finding(self, request: Request, admin: Admin) -> Response:
        """POST findings/{id}/ack or findings/{id}/close with {"note": "..."}; kept with the admin's subject."""
        raw, action = (
            request.path_params["id"],
            {"ack": "acknowledge", "close": "close"}.get(request.path_params["action"]),
        )
        if action is None or not raw.isdigit() or int(raw) > 2**62:
            return _problem(404, "unknown_finding", "no such finding or action (ack, close)")
        note = (await _body(request)).get("note")
        if not isinstance(note, str) or not note.strip() or len(note) > findings.NOTE_MAX:
            raise BadRequest(f"note must be 1 to {findings.NOTE_MAX} characters")
        try:
            done = await findings.act(self._pool, int(raw), action, note, admin.subject)
        except findings.FindingNotFound:
            return _problem(404, "unknown_finding", "no such finding")
        except ledger.LedgerUnavailable:
            raise
        except ledger.LedgerError as exc:  # closed already: nothing more to do to it
            return _problem(409, "finding_closed", str(exc))
        log.info(
            f"finding {'acknowledged' if action == 'acknowledge' else 'closed'}",
            extra={"admin": admin.subject, "finding": done.id, "kind": done.kind, "payment_id": done.payment_id},
        )
        return _json(done)

    async def queue(self, request: Request, admin: Admin) -> Response:
        now = time.time()
        states = await operator.settlement_queue(self._pool)
        for row in states:
            oldest = row.pop("oldest_updated_at")
            row["oldest_age_s"] = round(now - oldest.timestamp(), 1) if oldest else None
        flags = await ledger.audit.open_flags(self._pool, 100)
        runs = await ledger.audit.last_runs(self._pool, 5)
        exposure = sum(
            int(r["amount_atomic"]) for r in states if r["state"] in (PaymentState.SERVED, PaymentState.SETTLING)
        )
        return _json({"states": states, "exposure_atomic": exposure, "open_flags": flags, "reconcile_runs": runs})

    async def streams(self, request: Request, admin: Admin) -> Response:
        return _json({"streams": await self._source_matrix()})

    async def set_sharing(self, request: Request, admin: Admin) -> Response:
        stream_id = request.path_params["id"]
        if not self._base_registry().exists(stream_id):
            return _problem(404, "unknown_stream", f"no stream {stream_id!r}")
        body = await _body(request)
        state = body.get("sharing")
        if state not in SHARING:
            raise BadRequest(f"sharing must be one of {', '.join(SHARING)}")
        await operator.set_sharing(self._pool, stream_id, state, admin.subject)
        if self.controls is not None:
            await self.controls.reload()  # this worker now; the others on NOTIFY
        log.info("stream sharing changed", extra={"admin": admin.subject, "stream": stream_id, "sharing": state})
        return _json({"stream": stream_id, "sharing": state})

    async def bans(self, request: Request, admin: Admin) -> Response:
        if request.method == "GET":
            return _json({"bans": list((await operator.bans(self._pool)).values())})
        body = await _body(request)
        payer, reason = body.get("payer"), body.get("reason")
        if not isinstance(payer, str) or not payer.strip() or len(payer) > 100:
            raise BadRequest("payer must be an address of at most 100 characters")
        if not isinstance(reason, str) or not reason.strip() or len(reason) > 500:
            raise BadRequest("reason must be 1 to 500 characters")
        ban = await operator.ban(self._pool, normalize_payer(payer), reason.strip(), admin.subject)
        if self.controls is not None:
            await self.controls.reload()
        log.info("payer banned", extra={"admin": admin.subject, "payer": ban.payer})
        return _json(ban, 201)

    async def unban(self, request: Request, admin: Admin) -> Response:
        payer = normalize_payer(request.path_params["payer"])
        if not await operator.unban(self._pool, payer):
            return _problem(404, "unknown_ban", "that payer is not banned")
        if self.controls is not None:
            await self.controls.reload()
        log.info("payer unbanned", extra={"admin": admin.subject, "payer": payer})
        return _json({"payer": payer, "banned": False})


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > 16_384:
        raise BadRequest("the body is too large")
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise BadRequest("the body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def stream_row(stream: Stream, price_atomic: int | None) -> dict[str, Any]:
    """The parts of a stream the operator's matrix shows that do not depend on live state."""
    return {
        "id": stream.id,
        "name": stream.name,
        "category": stream.category,
        "type": stream.type.value,
        "interval_s": stream.interval_s,
        "source": stream.adapter,
        "upstream": stream.upstream,
        "sharing": stream.sharing.value,
        "price_tier": stream.price_tier,
        "price_atomic": price_atomic,
    }
