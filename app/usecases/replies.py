"""What a paid request answers, before any transport: one `Reply` per checkout outcome.

`reply(outcome)` is the one table of statuses, error codes and messages; the HTTP gate renders a Reply
as a response (app/edge/gate.py) and the MCP server as a tool result (app/mcp/server.py). Only what
is in a transport's own terms stays there: the handler's result (a buffered HTTP response, an API
answer), the quote's shape and where a receipt goes (a header, `_meta`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from app.usecases.outcomes import (
    Acknowledged,
    Banned,
    Delivered,
    IdConflict,
    NotCharged,
    NotServed,
    Outcome,
    RateLimited,
    Refused,
    Replayed,
    Served,
    Unavailable,
    Unsettled,
)
from payments import PaymentRequirements, Settlement

UNAVAILABLE_RETRY_AFTER_S = 5  # what a 503 asks the client to wait; nothing was charged
# A settlement whose outcome is unknown: 503 with Retry-After, never a 402 (which invites a second payment);
# the same payment sent again after this gets the outcome (the data, or "not charged").
PENDING_RETRY_AFTER_S = 10
BANNED = "this payer may not buy here; nothing was charged"


class Kind(StrEnum):
    DELIVERED = "delivered"  # the handler's data, with the settlement's receipt
    REPLAYED = "replayed"  # the first delivery of this payment id, as its transport stored it
    NOT_SERVED = "not_served"  # the handler's own answer (no data, an error): nothing charged
    QUOTE = "quote"  # a fresh quote naming `error` (the payment was refused)
    UNSETTLED = "unsettled"  # settlement failed, is pending, or closed unpaid earlier (409): the receipt, no data
    ERROR = "error"  # an error document: `document()`
    ACKNOWLEDGED = "acknowledged"  # 200, the receipt and `fields` as the document: no handler ran (a batch refund)


@dataclass(frozen=True, slots=True)
class Reply:
    kind: Kind
    status: int | None  # the HTTP status (MCP: 400 and up is a tool error); None: the handler's own
    error: str | None = None  # the error code (a quote's `error`: the refusal's reason)
    message: str | None = None
    retry_after: int | None = None  # seconds; HTTP sends Retry-After
    settlement: Settlement | None = None  # the receipt the answer carries (delivered, unsettled)
    served: Served | None = None  # the handler's result (delivered, not served)
    stored: bytes | None = None  # a replayed delivery
    fields: Mapping[str, Any] = field(default_factory=dict)  # more of the error document, after `error`
    offers: tuple[PaymentRequirements, ...] | None = None  # a QUOTE's offers when not the route's own

    def document(self) -> dict[str, Any]:
        """An ERROR reply's JSON document."""
        return {"error": self.error, **self.fields, "message": self.message}


def reply(outcome: Outcome) -> Reply:
    """The answer to a checkout's outcome, in no transport's terms."""
    if isinstance(outcome, Delivered):
        return Reply(Kind.DELIVERED, None, settlement=outcome.settlement, served=outcome.served)
    if isinstance(outcome, Replayed):
        return Reply(Kind.REPLAYED, None, stored=outcome.stored)
    if isinstance(outcome, Acknowledged):
        return Reply(Kind.ACKNOWLEDGED, 200, settlement=outcome.settlement, fields=outcome.document)
    if isinstance(outcome, Refused):
        refusal = outcome.refusal
        return Reply(Kind.QUOTE, refusal.status, refusal.reason, refusal.message, offers=outcome.offers)
    if isinstance(outcome, NotServed):
        return Reply(Kind.NOT_SERVED, None, served=outcome.served)
    if isinstance(outcome, Unsettled):
        if outcome.settlement.pending:
            wait = PENDING_RETRY_AFTER_S
            return Reply(Kind.UNSETTLED, 503, outcome.reason, outcome.message, wait, settlement=outcome.settlement)
        return Reply(Kind.UNSETTLED, 402, outcome.reason, outcome.message, settlement=outcome.settlement)
    if isinstance(outcome, NotCharged):  # no quote: a new payment is asked for by asking again, unpaid
        fields = {"reason": outcome.reason}
        return Reply(
            Kind.UNSETTLED, 409, "payment_not_charged", outcome.message, settlement=outcome.settlement, fields=fields
        )
    if isinstance(outcome, Banned):
        return Reply(Kind.ERROR, 403, "payer_banned", BANNED)
    if isinstance(outcome, IdConflict):
        return Reply(Kind.ERROR, 409, "payment_identifier_conflict", outcome.message)
    if isinstance(outcome, RateLimited):  # the payer's attempts, counted alike on both transports
        wait = outcome.retry_after
        return Reply(Kind.ERROR, 429, "rate_limited", outcome.message, wait, fields={"retry_after": wait})
    assert isinstance(outcome, Unavailable)
    return Reply(
        Kind.ERROR,
        503,
        "service_unavailable",
        outcome.message,
        UNAVAILABLE_RETRY_AFTER_S,
        fields={"reason": outcome.reason},
    )
