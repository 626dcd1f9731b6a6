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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import ledger
from ledger import PaymentRecord, claims
from payments import (
    EXPOSE_HEADERS,
    Facilitator,
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


@dataclass
class Services:
    """What the gate needs at request time; filled in by the app's lifespan."""

    pool: Any = None  # asyncpg.Pool
    facilitator: Facilitator | None = None
    relayer_address: str | None = None
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
    def __init__(self, app: ASGIApp, *, pricing: Pricing, services: Services, settings: Settings) -> None:
        self.app = app
        self.pricing = pricing
        self.services = services
        self.public_url = settings.public_url.rstrip("/") if settings.public_url else None
        self.header_bytes_max = settings.payment_header_bytes_max
        self.response_bytes_max = settings.response_bytes_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        paid = self.pricing.lookup(scope["path"])
        if paid is None or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)  # free route, or a method the router will refuse
            return
        base_url = self._base_url(scope)
        header, version = _header(scope, _V2_HEADER), 2
        if header is None:
            header, version = _header(scope, _V1_HEADER), 1
        if header is None or scope["method"] == "HEAD":  # a HEAD is quoted, never settled
            quote = self.pricing.quote(paid, base_url)
            body = quote.body if scope["method"] == "GET" else b""
            headers = [_JSON, _NO_STORE, _EXPOSE, (b"payment-required", quote.header.encode())]
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
        quote = self.pricing.encode(paid, base_url, refusal.reason, refusal.message)
        headers = [_JSON, _NO_STORE, _EXPOSE, (b"payment-required", quote.header.encode())]
        log.info("payment refused", extra={"route": paid.path, "reason": refusal.reason, "x402_version": version})
        await _respond(send, refusal.status, headers, quote.body)

    async def _paid(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        paid: PaidRoute,
        base_url: str,
        header: bytes,
        version: int,
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
        pool, facilitator = self.services.pool, self.services.facilitator
        if pool is None or facilitator is None:
            await _respond(send, *_unavailable(Reason.UNEXPECTED_VERIFY_ERROR, "payments are not ready yet"))
            return
        valid_before = inspection.valid_before_unix_s
        record = PaymentRecord(
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
            valid_before=datetime.fromtimestamp(valid_before, UTC) if valid_before <= _LATEST_VALID_BEFORE else None,
        )
        context = {"route": paid.path, "payment_key": inspection.payment_key, "payer": inspection.payer}
        try:
            payment_id = await claims.claim(pool, record)
        except ledger.LedgerUnavailable:
            log.error("ledger unavailable: refusing paid request", extra=context)
            await _respond(
                send,
                *_unavailable("ledger_unavailable", "the payment ledger is unreachable; nothing was charged"),
            )
            return
        if payment_id is None:
            await self._refuse(send, paid, base_url, await self._already_claimed(pool, inspection.payment_key), version)
            return
        context["payment_id"] = payment_id
        await self._claimed(scope, receive, send, paid, base_url, version, payload, offer, payment_id, context)

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

    async def _already_claimed(self, pool: Any, payment_key: str) -> Refusal:
        try:
            holder = await claims.holder(pool, payment_key)
        except ledger.LedgerUnavailable:
            holder = None
        state = holder.state if holder else "unknown"
        what = {
            "settled": "was already used: it settled for an earlier request",
            "failed": "failed to settle for an earlier request",
            "expired": "expired unsettled",
        }.get(state, "is being used by another request right now")
        return Refusal(Reason.PAYMENT_ALREADY_CLAIMED, f"this payment {what}; sign a new one")

    async def _release(self, pool: Any, payment_id: int, from_state: str, reason: str, context: dict[str, Any]) -> None:
        try:
            await claims.advance(pool, payment_id, from_state, "released", reason=reason)
        except ledger.LedgerError:
            # The claim stays open; reconciliation releases claims that never reached `settling`.
            log.error("could not release claim", extra={**context, "reason": reason})

    async def _claimed(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        paid: PaidRoute,
        base_url: str,
        version: int,
        payload: PaymentPayload,
        offer: PaymentRequirements,
        payment_id: int,
        context: dict[str, Any],
    ) -> None:
        pool, facilitator = self.services.pool, self.services.facilitator
        assert facilitator is not None
        try:
            verification = await facilitator.verify(payload, offer)
        except Exception as exc:
            # Infrastructure (PaymentError) or a bug: either way the payer keeps an unspent authorization.
            reason = exc.reason if isinstance(exc, PaymentError) else Reason.UNEXPECTED_VERIFY_ERROR
            log.error(
                "verification unavailable",
                extra={**context, "reason": reason},
                exc_info=not isinstance(exc, PaymentError),
            )
            await self._release(pool, payment_id, "claimed", reason, context)
            await _respond(
                send,
                *_unavailable(reason, "the payment could not be verified right now; nothing was charged"),
            )
            return
        if not verification.valid:
            reason = verification.reason or Reason.UNEXPECTED_VERIFY_ERROR
            await self._release(pool, payment_id, "claimed", reason, context)
            await self._refuse(
                send, paid, base_url, Refusal(reason, verification.message or "payment refused"), version
            )
            return
        try:
            moved = await claims.advance(pool, payment_id, "claimed", "verified")
        except ledger.LedgerUnavailable:
            moved = False
        if not moved:  # the ledger is down, or the claim was resolved underneath this request
            await _respond(
                send,
                *_unavailable("ledger_unavailable", "the payment could not be recorded; nothing was charged"),
            )
            return

        scope.setdefault("state", {})[PAYMENT_SCOPE_KEY] = {
            "payment_id": payment_id,
            "payer": verification.payer,
        }
        buffered = _Buffered(self.response_bytes_max)
        try:
            await self.app(scope, receive, buffered.send)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._release(pool, payment_id, "verified", "handler_error", context)
            raise
        if buffered.too_large:
            await self._release(pool, payment_id, "verified", "response_too_large", context)
            await _respond(send, 502, [_JSON, _NO_STORE], encode_json({"error": "response_too_large"}))
            return
        if buffered.start is None:
            await self._release(pool, payment_id, "verified", "handler_sent_nothing", context)
            await _respond(send, 502, [_JSON, _NO_STORE], encode_json({"error": "no_response"}))
            return
        if buffered.status >= 400:
            await self._release(pool, payment_id, "verified", f"handler_status_{buffered.status}", context)
            await self._forward(send, buffered, [_NO_STORE])
            return
        # From here on the payment may be charged: finish it even if the client goes away.
        with anyio.CancelScope(shield=True):
            await self._settle(send, buffered, payload, offer, payment_id, paid, version, context)

    async def _settle(
        self,
        send: Send,
        buffered: _Buffered,
        payload: PaymentPayload,
        offer: PaymentRequirements,
        payment_id: int,
        paid: PaidRoute,
        version: int,
        context: dict[str, Any],
    ) -> None:
        pool, facilitator = self.services.pool, self.services.facilitator
        assert facilitator is not None
        state = "verified"
        try:
            for next_state in ("served", "settling"):
                if not await claims.advance(pool, payment_id, state, next_state):
                    raise ledger.LedgerUnavailable(f"payment left {state} underneath this request")
                state = next_state
        except ledger.LedgerUnavailable:
            await self._release(pool, payment_id, state, "ledger_unavailable", context)
            await _respond(
                send,
                *_unavailable("ledger_unavailable", "the payment ledger is unreachable; nothing was charged"),
            )
            return

        async def record_broadcast(tx_hash: str) -> None:
            await claims.record_tx_hash(pool, payment_id, tx_hash)

        try:
            settlement = await facilitator.settle(payload, offer, record_broadcast)
        except ledger.LedgerError as exc:
            # The hash could not be written ahead, so nothing was broadcast.
            log.error("settlement not started: ledger write failed", extra={**context, "detail": str(exc)})
            await self._settle_failed(
                send,
                pool,
                payment_id,
                Settlement(
                    False,
                    offer.network,
                    reason=Reason.UNEXPECTED_SETTLE_ERROR,
                    message="ledger unavailable; nothing was broadcast",
                ),
                version,
                context,
            )
            return
        except Exception:
            # A bug somewhere under settle: a transaction may or may not have left. Keep the row
            # `settling` (reconciliation asks the chain) and withhold the body.
            log.exception("settlement raised; outcome unknown", extra=context)
            settlement = Settlement(
                False, offer.network, reason=Reason.SETTLEMENT_PENDING, message="internal error during settlement"
            )
        if not settlement.success:
            await self._settle_failed(send, pool, payment_id, settlement, version, context)
            return
        postings = ledger.settlement_postings(
            network=offer.network,
            asset=offer.asset,
            pay_to=offer.pay_to,
            revenue_account=paid.revenue_account,
            amount_atomic=int(offer.amount),
            relayer=self.services.relayer_address,
            gas_cost_atomic=settlement.gas_cost_atomic,
        )
        try:
            await claims.settle(
                pool, payment_id, settlement.transaction, postings, gas_cost_atomic=settlement.gas_cost_atomic
            )
        except ledger.LedgerError as exc:
            # Charged on chain: the payer gets the data. The row stays `settling` with its hash
            # (written ahead), and reconciliation books it.
            log.error(
                "settled on chain but not booked",
                extra={**context, "tx": settlement.transaction, "detail": str(exc)},
            )
        log.info("payment settled", extra={**context, "tx": settlement.transaction})
        receipt = encode_header(settlement.response()).encode()
        response_header = b"payment-response" if version == 2 else b"x-payment-response"
        await self._forward(send, buffered, [(b"cache-control", b"private"), _EXPOSE, (response_header, receipt)])

    async def _settle_failed(
        self,
        send: Send,
        pool: Any,
        payment_id: int,
        settlement: Settlement,
        version: int,
        context: dict[str, Any],
    ) -> None:
        reason = settlement.reason or Reason.UNEXPECTED_SETTLE_ERROR
        if settlement.pending:
            message = "settlement outcome unknown; the payment stays open until reconciliation checks the chain"
            log.warning("settlement pending", extra={**context, "tx": settlement.transaction, "reason": reason})
        else:
            message = settlement.message or "settlement failed; you were not charged"
            log.warning("settlement failed", extra={**context, "tx": settlement.transaction, "reason": reason})
            try:
                await claims.advance(
                    pool,
                    payment_id,
                    "settling",
                    "failed",
                    reason=reason,
                    tx_hash=settlement.transaction or None,
                )
            except ledger.LedgerError:
                log.error("could not mark settlement failed", extra=context)
        receipt = encode_header(settlement.response()).encode()
        response_header = b"payment-response" if version == 2 else b"x-payment-response"
        body = encode_json(
            {
                "x402Version": 2,
                "error": reason,
                "message": message,
                "transaction": settlement.transaction,
                "network": settlement.network,
            }
        )
        await _respond(send, 402, [_JSON, _NO_STORE, _EXPOSE, (response_header, receipt)], body)

    async def _forward(self, send: Send, buffered: _Buffered, extra: list[tuple[bytes, bytes]]) -> None:
        assert buffered.start is not None
        replaced = {name for name, _ in extra}
        headers = [(k, v) for k, v in buffered.start.get("headers", []) if bytes(k).lower() not in replaced]
        await send({**buffered.start, "headers": [*headers, *extra]})
        await send({"type": "http.response.body", "body": b"".join(buffered.chunks)})
