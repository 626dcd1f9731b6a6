"""The x402 gate: pure ASGI middleware in front of the paid routes, and the one place where a
payment result becomes a ledger row.

A paid GET goes: size-capped decode → bind `accepted` to this route's offers → local inspection
(no I/O) → claim the payment key in Postgres (UNIQUE) → facilitator verify → the handler, its
response held in a buffer → settle (sync mode) → journal → release the body with PAYMENT-RESPONSE.
Any failure on the way releases the claim (nothing charged) or leaves it for reconciliation
(outcome unknown); in no case does the buffered body leave without a successful settlement.
Not BaseHTTPMiddleware: it cut throughput about 3x when measured (anchors.md §4).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import ledger
from adapters import DataTier
from ledger import PaymentRecord, claims
from payments import (
    EXPOSE_HEADERS,
    Facilitator,
    Inspection,
    PaymentError,
    PaymentPayload,
    PaymentPayloadV1,
    PaymentRequirements,
    Reason,
    Refusal,
    Settlement,
    decode_payment_header,
    encode_header,
    encode_json,
    inspect,
    match_offer,
    v1_as_v2,
)

from . import metrics
from .logs import bind
from .pricing import PaidRoute, Pricing
from .settings import Settings

log = logging.getLogger("worldgate.gate")

PAYMENT_SCOPE_KEY = "worldgate_payment"  # set in scope["state"] once a payment is verified and claimed
_V2_HEADER = b"payment-signature"
_V1_HEADER = b"x-payment"
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(?::\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$")
_JSON = (b"content-type", b"application/json")
_NO_STORE = (b"cache-control", b"no-store")
_EXPOSE = (b"access-control-expose-headers", EXPOSE_HEADERS.encode())
_LATEST_VALID_BEFORE = 253402300799  # 9999-12-31: beyond it the ledger stores no expiry
_NOT_RECORDED = "the payment could not be recorded in the ledger; nothing was charged"


@dataclass
class Services:
    """What the gate needs at request time; filled in by the app's lifespan."""

    pool: Any = None  # asyncpg.Pool
    facilitator: Facilitator | None = None
    pricing: Pricing | None = None  # built once the facilitator says what it supports
    tier: DataTier | None = None  # built in the lifespan (it needs Redis and an HTTP client)
    banned: Callable[[str], bool] = lambda _payer: False  # the operator's bans, as this worker last loaded them
    replay_url: str | None = None  # set when upstreams are answered from recordings
    settlement_mode: str = "sync"


@dataclass
class _Buffered:
    """The handler's response, held back until settlement decides whether it may leave."""

    bytes_max: int
    start: Message | None = None
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    too_large: bool = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
        elif message["type"] == "http.response.body":
            chunk = message.get("body", b"")
            self.size += len(chunk)
            if self.size > self.bytes_max:
                self.too_large = True
                self.chunks.clear()
            elif chunk:
                self.chunks.append(chunk)

    @property
    def status(self) -> int:
        return int(self.start["status"]) if self.start else 500


@dataclass
class _Attempt:
    """One paid request past its claim: where it answers, what it pays, and where its ledger row stands."""

    send: Send
    paid: PaidRoute
    base_url: str
    version: int
    payload: PaymentPayload
    offer: PaymentRequirements
    payment_id: int
    context: dict[str, Any]  # log fields: route, payment key, payer, payment id
    state: str = "claimed"

    @property
    def response_header(self) -> bytes:
        return b"payment-response" if self.version == 2 else b"x-payment-response"


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _unavailable(reason: str, message: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = encode_json({"error": "service_unavailable", "reason": reason, "message": message})
    return 503, [_JSON, _NO_STORE, (b"retry-after", b"5")], body


class PaymentGate:
    def __init__(self, app: ASGIApp, *, services: Services, settings: Settings) -> None:
        self.app = app
        self.services = services
        self.public_url = settings.public_url.rstrip("/") if settings.public_url else None
        self.header_bytes_max = settings.payment_header_bytes_max
        self.response_bytes_max = settings.response_bytes_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        pricing = self.services.pricing
        if pricing is None:  # not started: the handlers refuse paid paths without the gate's mark anyway
            await self.app(scope, receive, send)
            return
        paid = pricing.lookup(scope["path"])
        if paid is None or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)  # free route, or a method the router will refuse
            return
        query = scope["query_string"]
        problem = paid.check(dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True)) if query else {})
        if problem is not None:  # a query that cannot be served costs nothing: refused before any quote
            body = encode_json({"error": problem.error, "message": problem.message})
            await _respond(send, problem.status, [_JSON, _NO_STORE], body if scope["method"] == "GET" else b"")
            return
        base_url = self._base_url(scope)
        header, version = _header(scope, _V2_HEADER), 2
        if header is None:
            header, version = _header(scope, _V1_HEADER), 1
        if header is None or scope["method"] == "HEAD":  # a HEAD is quoted, never settled
            quote = pricing.quote(paid, base_url)
            body = quote.body if scope["method"] == "GET" else b""
            headers = [_JSON, _NO_STORE, _EXPOSE, (b"payment-required", quote.header.encode())]
            metrics.QUOTES(paid.path).inc()
            await _respond(send, 402, headers, body)
            return
        await self._paid(scope, receive, send, paid, base_url, header, version)

    def _base_url(self, scope: Scope) -> str:
        if self.public_url:
            return self.public_url
        host = (_header(scope, b"host") or b"").decode("latin-1")
        if not host or len(host) > 255 or not _HOST.match(host):
            server = scope.get("server") or ("localhost", None)
            host = f"{server[0]}:{server[1]}" if server[1] else str(server[0])
        return f"{scope.get('scheme', 'http')}://{host}"

    async def _refuse(self, send: Send, paid: PaidRoute, base_url: str, refusal: Refusal, version: int) -> None:
        assert self.services.pricing is not None
        quote = self.services.pricing.encode(paid, base_url, refusal.reason, refusal.message)
        headers = [_JSON, _NO_STORE, _EXPOSE, (b"payment-required", quote.header.encode())]
        log.info("payment refused", extra={"route": paid.path, "reason": refusal.reason, "x402_version": version})
        metrics.REFUSED(refusal.reason).inc()
        await _respond(send, refusal.status, headers, quote.body)

    async def _paid(
        self, scope: Scope, receive: Receive, send: Send, paid: PaidRoute, base_url: str, header: bytes, version: int
    ) -> None:
        bound = self._bind(paid, header, version)
        if isinstance(bound, Refusal):
            await self._refuse(send, paid, base_url, bound, version)
            return
        payload, offer = bound
        inspection = inspect(payload, offer, int(time.time()))
        if isinstance(inspection, Refusal):
            await self._refuse(send, paid, base_url, inspection, version)
            return
        bind(payment_key=inspection.payment_key, payer=inspection.payer)  # on every later log line of this request
        if self.services.banned(inspection.payer):  # before verification: a banned payer costs us no RPC call
            log.info("banned payer refused", extra={"route": paid.path})
            metrics.REFUSED("payer_banned").inc()
            body = encode_json({"error": "payer_banned", "message": "this payer may not buy here; nothing was charged"})
            await _respond(send, 403, [_JSON, _NO_STORE], body)
            return
        pool = self.services.pool
        if pool is None or self.services.facilitator is None:
            await _respond(send, *_unavailable(Reason.UNEXPECTED_VERIFY_ERROR, "payments are not ready yet"))
            return
        context = {"route": paid.path}  # the payment key and payer are bound to every line already
        try:
            payment_id = await claims.claim(pool, self._record(paid, inspection))
        except ledger.LedgerUnavailable:
            log.error("ledger unavailable: refusing paid request", extra=context)
            await _respond(send, *_unavailable("ledger_unavailable", _NOT_RECORDED))
            return
        if payment_id is None:
            await self._refuse(send, paid, base_url, await self._already_claimed(inspection.payment_key), version)
            return
        attempt = _Attempt(
            send, paid, base_url, version, payload, offer, payment_id, {**context, "payment_id": payment_id}
        )
        await self._claimed(scope, receive, attempt)

    def _bind(
        self, paid: PaidRoute, header: bytes, version: int
    ) -> tuple[PaymentPayload, PaymentRequirements] | Refusal:
        """Decode the header and bind it to one of this route's offers (ours, never the client's copy)."""
        decoded = decode_payment_header(header.decode("latin-1"), version=version, bytes_max=self.header_bytes_max)
        if isinstance(decoded, Refusal):
            return decoded
        if isinstance(decoded, PaymentPayloadV1):
            payload = v1_as_v2(decoded, list(paid.offers))
            return payload if isinstance(payload, Refusal) else (payload, payload.accepted)
        offer = match_offer(decoded.accepted, list(paid.offers))
        return offer if isinstance(offer, Refusal) else (decoded, offer)

    def _record(self, paid: PaidRoute, inspection: Inspection) -> PaymentRecord:
        valid_before = inspection.valid_before_unix_s
        return PaymentRecord(
            payment_key=inspection.payment_key,
            scheme_id=inspection.scheme_id,
            network=inspection.network,
            asset=inspection.asset,
            payer=inspection.payer,
            pay_to=inspection.pay_to,
            amount_atomic=inspection.amount_atomic,
            route=paid.route,
            resource=paid.path,
            stream=paid.stream.id if paid.stream else None,
            settlement_mode=self.services.settlement_mode,
            valid_before=(
                datetime.fromtimestamp(valid_before, UTC)
                if valid_before is not None and valid_before <= _LATEST_VALID_BEFORE
                else None
            ),
        )

    async def _already_claimed(self, payment_key: str) -> Refusal:
        try:
            holder = await claims.holder(self.services.pool, payment_key)
        except ledger.LedgerUnavailable:
            holder = None
        state = holder.state if holder else "unknown"
        what = {
            "settled": "was already used: it settled for an earlier request",
            "failed": "failed to settle for an earlier request",
            "expired": "expired unsettled",
        }.get(state, "is being used by another request right now")
        return Refusal(Reason.PAYMENT_ALREADY_CLAIMED, f"this payment {what}; sign a new one")

    async def _advance(self, attempt: _Attempt, to_state: str, reason: str | None = None) -> bool:
        """Move the attempt's payment one edge; False if the ledger is down or someone else moved it."""
        try:
            moved = await claims.advance(self.services.pool, attempt.payment_id, attempt.state, to_state, reason=reason)
        except ledger.LedgerError:
            log.error("ledger write failed", extra={**attempt.context, "from": attempt.state, "to": to_state})
            return False
        if moved:
            attempt.state = to_state
        return moved

    async def _release(self, attempt: _Attempt, reason: str) -> None:
        # If this fails the claim stays open, and reconciliation releases claims that never reached `settling`.
        await self._advance(attempt, "released", reason)

    async def _claimed(self, scope: Scope, receive: Receive, attempt: _Attempt) -> None:
        facilitator = self.services.facilitator
        assert facilitator is not None
        try:
            verification = await facilitator.verify(attempt.payload, attempt.offer)
        except Exception as exc:
            # Infrastructure (PaymentError) or a bug: either way the payer keeps an unspent authorization.
            reason = exc.reason if isinstance(exc, PaymentError) else Reason.UNEXPECTED_VERIFY_ERROR
            log.error(
                "verification unavailable",
                extra={**attempt.context, "reason": reason},
                exc_info=not isinstance(exc, PaymentError),
            )
            await self._release(attempt, reason)
            await _respond(
                attempt.send, *_unavailable(reason, "the payment could not be verified right now; nothing was charged")
            )
            return
        if not verification.valid:
            reason = verification.reason or Reason.UNEXPECTED_VERIFY_ERROR
            await self._release(attempt, reason)
            refusal = Refusal(reason, verification.message or "payment refused")
            await self._refuse(attempt.send, attempt.paid, attempt.base_url, refusal, attempt.version)
            return
        metrics.VERIFIED(attempt.offer.network).inc()
        if not await self._advance(attempt, "verified"):
            await _respond(attempt.send, *_unavailable("ledger_unavailable", _NOT_RECORDED))
            return

        scope.setdefault("state", {})[PAYMENT_SCOPE_KEY] = {
            "payment_id": attempt.payment_id,
            "payer": verification.payer,
        }
        buffered = _Buffered(self.response_bytes_max)
        try:
            await self.app(scope, receive, buffered.send)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._release(attempt, "handler_error")
            raise
        if buffered.too_large or buffered.start is None:
            await self._release(attempt, "response_too_large" if buffered.too_large else "handler_sent_nothing")
            error = "response_too_large" if buffered.too_large else "no_response"
            await _respond(attempt.send, 502, [_JSON, _NO_STORE], encode_json({"error": error}))
            return
        if buffered.status >= 400:
            await self._release(attempt, f"handler_status_{buffered.status}")
            await self._forward(attempt.send, buffered, [_NO_STORE])
            return
        # From here on the payment may be charged: finish it even if the client goes away.
        with anyio.CancelScope(shield=True):
            await self._settle(attempt, buffered)

    async def _settle(self, attempt: _Attempt, buffered: _Buffered) -> None:
        pool, facilitator = self.services.pool, self.services.facilitator
        assert facilitator is not None
        if not (await self._advance(attempt, "served") and await self._advance(attempt, "settling")):
            await self._release(attempt, "ledger_unavailable")
            await _respond(attempt.send, *_unavailable("ledger_unavailable", _NOT_RECORDED))
            return

        async def record_broadcast(tx_hash: str) -> None:
            await claims.record_tx_hash(pool, attempt.payment_id, tx_hash)

        network = attempt.offer.network
        started = time.perf_counter()
        try:
            settlement = await facilitator.settle(attempt.payload, attempt.offer, record_broadcast)
        except ledger.LedgerError as exc:
            # The hash could not be written ahead, so nothing was broadcast.
            log.error("settlement not started: ledger write failed", extra={**attempt.context, "detail": str(exc)})
            message = "ledger unavailable; nothing was broadcast"
            settlement = Settlement(False, network, reason=Reason.UNEXPECTED_SETTLE_ERROR, message=message)
        except Exception:
            # A bug somewhere under settle: a transaction may or may not have left. Keep the row
            # `settling` (reconciliation asks the chain) and withhold the body.
            log.exception("settlement raised; outcome unknown", extra=attempt.context)
            message = "internal error during settlement"
            settlement = Settlement(False, network, reason=Reason.SETTLEMENT_PENDING, message=message)
        metrics.SETTLE_SECONDS(network).observe(time.perf_counter() - started)
        outcome = "settled" if settlement.success else "pending" if settlement.pending else "failed"
        metrics.SETTLEMENTS(network, outcome).inc()
        if not settlement.success:
            await self._settle_failed(attempt, settlement)
            return
        postings = ledger.settlement_postings(
            network=network,
            asset=attempt.offer.asset,
            pay_to=attempt.offer.pay_to,
            revenue_account=attempt.paid.revenue_account,
            amount_atomic=int(attempt.offer.amount),
            relayer=settlement.gas_payer,
            gas_cost_atomic=settlement.gas_cost_atomic,
        )
        try:
            await claims.settle(
                pool, attempt.payment_id, settlement.transaction, postings, gas_cost_atomic=settlement.gas_cost_atomic
            )
        except ledger.LedgerError as exc:
            # Charged on chain: the payer gets the data. The row stays `settling` with its hash
            # (written ahead), and reconciliation books it.
            log.error(
                "settled on chain but not booked",
                extra={**attempt.context, "tx": settlement.transaction, "detail": str(exc)},
            )
        log.info("payment settled", extra={**attempt.context, "tx": settlement.transaction})
        receipt = (attempt.response_header, encode_header(settlement.response()).encode())
        await self._forward(attempt.send, buffered, [(b"cache-control", b"private"), _EXPOSE, receipt])

    async def _settle_failed(self, attempt: _Attempt, settlement: Settlement) -> None:
        reason = settlement.reason or Reason.UNEXPECTED_SETTLE_ERROR
        extra = {**attempt.context, "tx": settlement.transaction, "reason": reason}
        if settlement.pending:
            message = "settlement outcome unknown; the payment stays open until reconciliation checks the chain"
            log.warning("settlement pending", extra=extra)
        else:
            message = settlement.message or "settlement failed; you were not charged"
            log.warning("settlement failed", extra=extra)
            try:
                await claims.advance(
                    self.services.pool,
                    attempt.payment_id,
                    "settling",
                    "failed",
                    reason=reason,
                    tx_hash=settlement.transaction or None,
                )
            except ledger.LedgerError:
                log.error("could not mark settlement failed", extra=attempt.context)
        receipt = (attempt.response_header, encode_header(settlement.response()).encode())
        body = encode_json(
            {
                "x402Version": 2,
                "error": reason,
                "message": message,
                "transaction": settlement.transaction,
                "network": settlement.network,
            }
        )
        await _respond(attempt.send, 402, [_JSON, _NO_STORE, _EXPOSE, receipt], body)

    async def _forward(self, send: Send, buffered: _Buffered, extra: list[tuple[bytes, bytes]]) -> None:
        assert buffered.start is not None
        replaced = {name for name, _ in extra}
        headers = [(k, v) for k, v in buffered.start.get("headers", []) if bytes(k).lower() not in replaced]
        await send({**buffered.start, "headers": [*headers, *extra]})
        await send({"type": "http.response.body", "body": b"".join(buffered.chunks)})
