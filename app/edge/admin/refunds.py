"""The admin API's refunds, beside api.py's routes and behind the same token:

- POST /admin/api/payments/{id}/refund with {"reason": "..."}: refund one sale (app/usecases/sale_refund.py). 201
  with the refund; 404 an unknown payment; 409 a sale refunded already, or one that charged nothing (yet).
- GET /admin/api/refunds?payment_id=&limit=: the refunds, newest first.

Each refund keeps the admin's subject and reason in the ledger and is logged as other admin actions are.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.edge.admin.api import AdminApi, BadRequest, _body, _int_param, _json, _problem
from app.edge.admin.auth import Admin
from app.usecases.sale_refund import refund_sale
from ledger import refunds
from ledger.refunds import RefundRefused

log = logging.getLogger("worldgate.admin")
REASON_MAX = 500
LIST_MAX = 1000
_STATUS = {"unknown_payment": 404, "already_refunded": 409, "not_refundable": 409}


class RefundApi:
    def __init__(self, admin: AdminApi) -> None:
        self.admin = admin  # its token check, and the ledger's pool

    def routes(self) -> list[Route]:
        guarded = self.admin._guarded  # the admin API's own guard: token, a ready ledger, its error answers
        return [
            Route("/admin/api/payments/{id}/refund", guarded(self.refund), methods=["POST"]),
            Route("/admin/api/refunds", guarded(self.list)),
        ]

    async def refund(self, request: Request, admin: Admin) -> Response:
        raw = request.path_params["id"]
        if not raw.isdigit() or int(raw) > 2**62:
            return _problem(404, "unknown_payment", "no such payment")
        reason = (await _body(request)).get("reason")
        if not isinstance(reason, str) or not reason.strip() or len(reason) > REASON_MAX:
            raise BadRequest(f"reason must be 1 to {REASON_MAX} characters")
        done = await refund_sale(self.admin.services.pool, int(raw), reason=reason.strip(), actor=admin.subject)
        if isinstance(done, RefundRefused):
            return _problem(_STATUS[done.error], done.error, done.detail)
        log.info(
            "sale refunded",
            extra={
                "admin": admin.subject,
                "payment_id": done.payment_id,
                "refund": done.kind,
                "amount": done.amount_atomic,
                "account": done.account,
            },
        )
        return _json(done, 201)

    async def list(self, request: Request, admin: Admin) -> Response:
        payment = _int_param(request, "payment_id", None, 1, 2**62)
        limit = _int_param(request, "limit", 100, 1, LIST_MAX) or 100
        found = await refunds.recent(self.admin.services.pool, limit, payment)
        return _json({"count": len(found), "refunds": found})
