"""The admin API's refunds, beside api.py's routes and behind the same token:

- POST /admin/api/payments/{id}/refund with {"reason": "..."}: refund one sale (app/usecases/sale_refund.py). 201
  with the refund; 404 an unknown payment; 409 a sale refunded already, or one that charged nothing (yet).
- POST /admin/api/refunds/{id}/sent with {"transaction": "0x..."}: book the transfer that paid a refund owed, once
  the chain shows it (app/usecases/refund_transfer.py). 201 with the transfer; 404 an unknown refund; 409 one not
  owed, paid already, a transaction that paid another refund, or one still pending; 422 a transaction that did not
  move the amount from payTo to the payer; 503 the chain did not answer.
- GET /admin/api/refunds?payment_id=&limit=: the refunds, newest first, with the transfer that paid each.

Each refund and transfer keeps the admin's subject in the ledger and is logged as other admin actions are.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.edge.admin.api import AdminApi, BadRequest, _body, _int_param, _json, _problem
from app.edge.admin.auth import Admin
from app.edge.admin.http import row_id
from app.usecases import resolution
from app.usecases.refund_transfer import CHAIN_UNAVAILABLE, record_refund_transfer
from app.usecases.sale_refund import refund_sale
from ledger import refunds
from ledger.refunds import RefundRefused

log = logging.getLogger("worldgate.admin")
REASON_MAX = 500
LIST_MAX = 1000
TX_MAX = 128  # a 0x hash is 66 characters, a Solana signature at most 88
_STATUS = {
    "unknown_payment": 404,
    "already_refunded": 409,
    "not_refundable": 409,
    "unknown_refund": 404,
    "not_owed": 409,
    "already_sent": 409,
    "transfer_already_used": 409,
    "transfer_pending": 409,
    "network_not_configured": 409,
    "transfer_not_found": 422,
    "transfer_reverted": 422,
    "transfer_mismatch": 422,
}


class RefundApi:
    def __init__(self, admin: AdminApi) -> None:
        self.admin = admin  # its token check, and the ledger's pool

    def routes(self) -> list[Route]:
        guarded = self.admin._guarded  # the admin API's own guard: token, a ready ledger, its error answers
        return [
            Route("/admin/api/payments/{id}/refund", guarded(self.refund), methods=["POST"]),
            Route("/admin/api/refunds/{id}/sent", guarded(self.sent), methods=["POST"]),
            Route("/admin/api/refunds", guarded(self.list)),
        ]

    async def refund(self, request: Request, admin: Admin) -> Response:
        if (payment_id := row_id(request.path_params["id"])) is None:
            return _problem(404, "unknown_payment", "no such payment")
        reason = (await _body(request)).get("reason")
        if not isinstance(reason, str) or not reason.strip() or len(reason) > REASON_MAX:
            raise BadRequest(f"reason must be 1 to {REASON_MAX} characters")
        done = await refund_sale(self.admin.services.pool, payment_id, reason=reason.strip(), actor=admin.subject)
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

    async def sent(self, request: Request, admin: Admin) -> Response:
        if (refund_id := row_id(request.path_params["id"])) is None:
            return _problem(404, "unknown_refund", "no such refund")
        tx = (await _body(request)).get("transaction")
        if not isinstance(tx, str) or not tx.strip() or len(tx) > TX_MAX:
            raise BadRequest(f"transaction must be the transfer's hash or signature (1 to {TX_MAX} characters)")
        # the chains the gateway settles on, read through the nodes it settles through
        auditors = resolution.readers(self.admin.services.facilitator)
        done = await record_refund_transfer(self.admin.services.pool, auditors, refund_id, tx, actor=admin.subject)
        if isinstance(done, RefundRefused) and done.error == CHAIN_UNAVAILABLE:
            return _json({"error": done.error, "message": done.detail}, 503, {"retry-after": "5"})
        if isinstance(done, RefundRefused):
            return _problem(_STATUS[done.error], done.error, done.detail)
        log.info(
            "refund transfer recorded",
            extra={
                "admin": admin.subject,
                "refund_id": done.refund_id,
                "tx_hash": done.tx_hash,
                "amount": done.amount_atomic,
            },
        )
        return _json(done, 201)

    async def list(self, request: Request, admin: Admin) -> Response:
        payment = _int_param(request, "payment_id", None, 1, 2**62)
        limit = _int_param(request, "limit", 100, 1, LIST_MAX) or 100
        found = await refunds.recent(self.admin.services.pool, limit, payment)
        return _json({"count": len(found), "refunds": found})
