"""What a checkout hands its transport and gets back: `Verified` to `serve`, `Served` from it, and the
`Outcome` of one paid request (app/usecases/replies.py says what each one answers)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from payments import PaymentRequirements, Refusal, Settlement

NOT_RECORDED = "the payment could not be recorded in the ledger; nothing was charged"


@dataclass(frozen=True, slots=True)
class Verified:
    """Handed to `serve`: the payment is verified (and, but for a voucher, claimed); the handler may run."""

    payment_id: int | None  # None: a voucher, booked only once its data is ready
    payer: str


@dataclass(frozen=True, slots=True)
class Served:
    """What the handler produced. Only `ok` results are sold; `result` is the transport's own."""

    ok: bool
    result: Any
    reason: str | None = None  # why not sold (the claim's release reason), when not ok


@dataclass(frozen=True, slots=True)
class Refused:
    refusal: Refusal  # answer with a fresh quote carrying this reason (402, or the refusal's status)
    # the quote's offers, when they must say more than the route's own (a batch channel's state, so that a
    # client which lost its place can re-base); None: the route's offers
    offers: tuple[PaymentRequirements, ...] | None = None


@dataclass(frozen=True, slots=True)
class Banned:
    payer: str


@dataclass(frozen=True, slots=True)
class Unavailable:
    reason: str
    message: str  # 503: try again later; nothing was charged


@dataclass(frozen=True, slots=True)
class RateLimited(Unavailable):
    retry_after: int = 1  # 429 with Retry-After (a transport that knows only Unavailable still refuses it)


@dataclass(frozen=True, slots=True)
class NotServed:
    served: Served  # the handler failed or had no data: released, nothing charged


@dataclass(frozen=True, slots=True)
class Delivered:
    served: Served
    settlement: Settlement
    payment_id: int = 0  # the ledger's payment: the transport reports its delivery (`Checkout.delivered`)
    voucher: bool = False  # a batch-settlement sale: its delivery is marked on its voucher


@dataclass(frozen=True, slots=True)
class Unsettled:
    settlement: Settlement  # failed (nothing charged) or pending (reconciliation decides); no data
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class NotCharged:
    """A payment sent again whose claim was closed unpaid (its settlement failed, or it expired): 409
    `payment_not_charged`, the failed receipt, no data and no quote. Never a 402, which a client reads as "pay
    again" for the payment it already sent; this one can no longer be used, and nothing was charged for it."""

    settlement: Settlement
    reason: str  # why it closed: the settlement's reason (transaction_failed, ...), or its state
    message: str


@dataclass(frozen=True, slots=True)
class Replayed:
    stored: bytes  # the first delivery of this payment id, as its transport stored it


@dataclass(frozen=True, slots=True)
class IdConflict:
    message: str  # 409: this payment id belongs to another payment (or transport)


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """A payment operation done without the handler (a batch-settlement refund): 200, its receipt and a short
    document, no data."""

    settlement: Settlement
    document: dict[str, Any]


Outcome = (
    Refused
    | Banned
    | Unavailable
    | NotServed
    | Delivered
    | Unsettled
    | NotCharged
    | Replayed
    | IdConflict
    | Acknowledged
)
Serve = Callable[[Verified], Awaitable[Served]]
