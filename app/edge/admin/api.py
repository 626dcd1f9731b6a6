"""The admin API under /admin/api/: reports, payments, reconciliation and its findings, stream sharing and the
settlement queue; the console's views and actions (console.py, console_actions.py) and bans (bans.py) beside
it. Every route needs an admin token (see auth.py); answers are JSON (reports also CSV and a text table). Every
change is kept in the admin audit log (GET /admin/api/audit) with the token's subject."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import ledger
from adapters import Registry, Sharing
from app.edge.admin.auth import Admin, AdminAuth, AuthFailure
from app.edge.admin.bans import BanApi
from app.edge.admin.console import ConsoleApi
from app.edge.admin.console_actions import ActionApi
from app.edge.admin.http import (
    BadRequest,
    Endpoint,
    Handler,
    _body,
    _choice,
    _int_param,
    _json,
    _problem,
    _window,
    row_id,
)
from app.edge.admin.sessions import Sessions
from app.usecases.controls import Controls, normalize_payer
from app.usecases.services import Services
from app.usecases.source_watch import SourceWatch
from ledger import PaymentState, console, findings, operator
from ledger.reports import Grouping

__all__ = ["AdminApi", "BadRequest", "_body", "_int_param", "_json", "_problem"]  # refunds.py, history.py use them

log = logging.getLogger("worldgate.admin")
PAYMENT_STATES = tuple(PaymentState)
GROUPS = tuple(Grouping)
SHARING = tuple(Sharing)
FORMATS = {"json": "application/json", "csv": "text/csv; charset=utf-8", "table": "text/plain; charset=utf-8"}
_NO_STORE = {"cache-control": "no-store"}


def _filters(request: Request) -> dict[str, str | None]:
    payer = request.query_params.get("payer")
    return {
        "network": request.query_params.get("network") or None,
        "stream": request.query_params.get("stream") or None,
        "payer": normalize_payer(payer) if payer else None,
        "state": _choice(request, "state", PAYMENT_STATES, None),
    }


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
        self._controls: Controls | None = None
        self.reconcile: Callable[[str], Awaitable[dict[str, Any]]] | None = None  # set by the lifespan
        self.started_at = time.time()  # built with the app, as the public API's uptime counts
        self.sessions = Sessions()
        self.watch: SourceWatch | None = None

    @property
    def controls(self) -> Controls | None:
        return self._controls

    @controls.setter
    def controls(self, controls: Controls | None) -> None:
        """Set by the lifespan once bans and sharing are loaded; from then on the controls' task also runs the
        source watch (what is sold follows each source's health), which a forced fetch runs at once too."""
        self._controls = controls
        if controls is not None and self.services.pool is not None:
            self.watch = SourceWatch(self.services.pool, lambda: self.services.tier, self._base_registry)
            controls.follow(self.watch)

    def every_stream(self) -> Registry:
        return self._base_registry()

    async def matrix(self) -> list[dict[str, Any]]:
        return await self._source_matrix()

    def routes(self) -> list[Route]:
        guarded = self._guarded
        return [
            *ConsoleApi(self).routes(),  # first: /admin/api/payments/summary before /admin/api/payments/{id}
            *ActionApi(self).routes(),
            *BanApi(self).routes(),
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
        ]

    def _guarded(self, handler: Handler) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                admin = self.auth.authenticate(request)
            except AuthFailure as exc:
                return _problem(401, "unauthorized", str(exc))
            if self.services.pool is None:
                return _problem(503, "not_ready", "the ledger is not connected yet")
            try:
                await self.sessions.seen(self.services.pool, admin, request)
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
        """Search by payer, stream, network, scheme (its id, e.g. v2-eip155-exact), state, time, tx or key."""
        filters = _filters(request)
        windowed = "from" in request.query_params or "to" in request.query_params
        since, until = _window(request) if windowed else (None, None)
        found = await operator.search_payments(
            self._pool,
            payer=filters["payer"],
            state=filters["state"],
            network=filters["network"],
            stream=filters["stream"],
            tx_hash=request.query_params.get("tx_hash") or None,
            payment_key=request.query_params.get("payment_key") or None,
            scheme=request.query_params.get("scheme") or None,
            since=since,
            until=until,
            before_id=_int_param(request, "before_id", None, 1, 2**62),
            limit=_int_param(request, "limit", 100, 1, operator.SEARCH_LIMIT_MAX) or 100,
        )
        next_page = found[-1]["id"] if found else None
        return _json({"count": len(found), "payments": found, "next_before_id": next_page})

    async def payment(self, request: Request, admin: Admin) -> Response:
        if (payment_id := row_id(request.path_params["id"])) is None:
            return _problem(404, "unknown_payment", "no such payment")
        detail = await ledger.claims.payment(self._pool, payment_id)
        if detail is None:
            return _problem(404, "unknown_payment", "no such payment")
        return _json(detail)

    async def run_reconcile(self, request: Request, admin: Admin) -> Response:
        if self.reconcile is None:
            return _problem(503, "reconcile_unavailable", "reconciliation is not running in this process")
        log.info("reconcile requested", extra={"admin": admin.subject})
        run = await self.reconcile("admin")
        kept = {k: run.get(k) for k in ("run_id", "checked", "resolved", "flagged", "skipped", "errors") if k in run}
        await console.record(self._pool, admin.subject, "reconcile.run", None, kept)
        return _json(run)

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
        if action is None or (finding_id := row_id(raw)) is None:
            return _problem(404, "unknown_finding", "no such finding or action (ack, close)")
        note = (await _body(request)).get("note")
        if not isinstance(note, str) or not note.strip() or len(note) > findings.NOTE_MAX:
            raise BadRequest(f"note must be 1 to {findings.NOTE_MAX} characters")
        try:
            done = await findings.act(self._pool, finding_id, action, note, admin.subject)
        except findings.FindingNotFound:
            return _problem(404, "unknown_finding", "no such finding")
        except ledger.LedgerUnavailable:
            raise
        except ledger.LedgerError as exc:  # closed already: nothing more to do to it
            return _problem(409, "finding_closed", str(exc))
        await console.record(self._pool, admin.subject, f"finding.{action}", str(done.id), {"note": note.strip()})
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
        await operator.set_sharing(self._pool, stream_id, state, admin.subject)  # and its audit entry
        if self.controls is not None:
            await self.controls.reload()  # this worker now; the others on NOTIFY
        log.info("stream sharing changed", extra={"admin": admin.subject, "stream": stream_id, "sharing": state})
        return _json({"stream": stream_id, "sharing": state})
