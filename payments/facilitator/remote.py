"""A client of any x402 facilitator's HTTP API (`POST /verify`, `POST /settle`, `GET /supported`).

Unparsed means unpaid: a settlement counts only as HTTP 200 carrying a JSON object whose `success`
is the boolean true and whose `transaction` is a non-empty string. Everything else fails closed,
and is told apart by what it means for the money:
- the request never reached the facilitator (refused connection, connect timeout): nothing was
  settled, so the payment is a plain failure and may be retried;
- it reached it and the answer is unreadable (read timeout, HTML, truncated JSON, 5xx): the
  facilitator may have broadcast, so the outcome is `settlement_pending`, for reconciliation;
- the facilitator's own `settlement_pending` is retried once, as the reference resource server
  does; nothing else is retried, since a second /settle after an unreadable answer could
  broadcast again, and its answer would describe only the second attempt.
Auth headers (e.g. a CDP bearer token) are sent but never logged or echoed in errors.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import msgspec

from ..codec import (
    FacilitatorRequest,
    PaymentPayload,
    PaymentRequirements,
    SupportedResponse,
    encode_json,
)
from ..errors import PaymentError, Reason, Refusal
from ..outcomes import Inspection, OnBroadcast, Settlement, Verification

VERIFY_TIMEOUT_S_DEFAULT = 10.0
SETTLE_TIMEOUT_S_DEFAULT = 60.0  # Base confirmation can take 10-30 s under load (x402 issue #1062)
SUPPORTED_CACHE_S = 600.0
PENDING_RETRY_DELAY_S = 1.0
ANSWER_BYTES_MAX = 64 * 1024


class RemoteFacilitator:
    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        verify_timeout_s: float = VERIFY_TIMEOUT_S_DEFAULT,
        settle_timeout_s: float = SETTLE_TIMEOUT_S_DEFAULT,
        pending_retry_delay_s: float = PENDING_RETRY_DELAY_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._verify_timeout = httpx.Timeout(verify_timeout_s, connect=min(5.0, verify_timeout_s))
        self._settle_timeout = httpx.Timeout(settle_timeout_s, connect=min(5.0, settle_timeout_s))
        self._pending_retry_delay_s = pending_retry_delay_s
        self._client = httpx.AsyncClient(headers=headers or {}, transport=transport, follow_redirects=False)
        self._supported: tuple[float, SupportedResponse] | None = None

    def __repr__(self) -> str:  # never the auth headers
        return f"RemoteFacilitator(url={self.url!r})"

    def _body(self, payload: PaymentPayload, requirements: PaymentRequirements) -> bytes:
        return encode_json(
            FacilitatorRequest(
                x402_version=payload.x402_version, payment_payload=payload, payment_requirements=requirements
            )
        )

    async def _post(self, path: str, body: bytes, limits: httpx.Timeout) -> tuple[int, Any]:
        """(status, parsed JSON or None). Raises httpx errors for the caller to classify."""
        response = await self._client.post(
            f"{self.url}{path}", content=body, headers={"content-type": "application/json"}, timeout=limits
        )
        raw = response.content[: ANSWER_BYTES_MAX + 1]
        if len(raw) > ANSWER_BYTES_MAX:
            return response.status_code, None
        try:
            return response.status_code, msgspec.json.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError):  # msgspec raises the latter for bad UTF-8 in a string
            return response.status_code, None

    async def authenticate(
        self, payload: PaymentPayload, requirements: PaymentRequirements, inspection: Inspection
    ) -> Refusal | None:
        """No I/O when `inspection.signer_verified`. Otherwise (an EVM signature that did not recover to `from`:
        a contract wallet or a forgery) we have no chain to ask, so the facilitator's `/verify` decides, and any
        refusal it gives is returned with its reason. Costs: a contract-wallet payment is verified twice (here,
        and again once claimed); and one whose authorization is already spent is refused here, so it cannot
        reach the claim to be redelivered a settled sale whose answer was lost. Letting spent nonces through
        would let a forger use them, since they are public on chain. An unreachable or unreadable /verify
        raises PaymentError, as `verify` does: unavailable, nothing charged.
        """
        if inspection.signer_verified:
            return None
        verification = await self.verify(payload, requirements)
        if verification.valid:
            return None
        return Refusal(
            verification.reason or Reason.UNEXPECTED_VERIFY_ERROR,
            verification.message or "the facilitator refused the payment",
        )

    async def verify(self, payload: PaymentPayload, requirements: PaymentRequirements) -> Verification:
        try:
            status, answer = await self._post("/verify", self._body(payload, requirements), self._verify_timeout)
        except httpx.HTTPError as exc:
            raise PaymentError(
                Reason.UNEXPECTED_VERIFY_ERROR, f"facilitator /verify failed: {type(exc).__name__}"
            ) from None
        if not isinstance(answer, dict) or not isinstance(answer.get("isValid"), bool):
            raise PaymentError(
                Reason.UNEXPECTED_VERIFY_ERROR,
                f"facilitator /verify answered HTTP {status} without a boolean isValid",
            )
        payer = answer.get("payer") if isinstance(answer.get("payer"), str) else None
        if answer["isValid"] is True:
            if status != 200:
                raise PaymentError(Reason.UNEXPECTED_VERIFY_ERROR, f"facilitator /verify said valid with HTTP {status}")
            return Verification(True, payer)
        reason = answer.get("invalidReason")
        message = answer.get("invalidMessage")
        return Verification(
            False,
            payer,
            reason if isinstance(reason, str) and reason else Reason.UNEXPECTED_VERIFY_ERROR,
            message if isinstance(message, str) else "the facilitator refused the payment",
        )

    async def settle(
        self,
        payload: PaymentPayload,
        requirements: PaymentRequirements,
        on_broadcast: OnBroadcast | None = None,
    ) -> Settlement:
        body = self._body(payload, requirements)
        result, said_pending = await self._settle_once(body, requirements)
        if said_pending:
            # Only the facilitator's own `settlement_pending` is retried: it reconciles the retry against
            # the transaction it already sent. An unreadable answer is never retried, since a second
            # /settle could broadcast again or answer for the second attempt only.
            await asyncio.sleep(self._pending_retry_delay_s)
            retry, _ = await self._settle_once(body, requirements)
            if retry.success or (retry.pending and (retry.transaction or not result.transaction)):
                result = retry  # keep the first answer's hash if the retry knows less
            # Any other retry answer keeps the first one: a refusal after `settlement_pending` may only mean
            # that the first attempt spent the authorization, so the outcome stays open for reconciliation.
        return result

    async def _settle_once(self, body: bytes, requirements: PaymentRequirements) -> tuple[Settlement, bool]:
        """The settlement, and whether the facilitator itself answered `settlement_pending`."""
        network = requirements.network
        try:
            status, answer = await self._post("/settle", body, self._settle_timeout)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            return Settlement(
                False,
                network,
                reason=Reason.UNEXPECTED_SETTLE_ERROR,
                message=f"facilitator unreachable: {type(exc).__name__}",
            ), False
        except httpx.HTTPError as exc:
            return Settlement(
                False,
                network,
                reason=Reason.SETTLEMENT_PENDING,
                message=f"facilitator /settle gave no answer ({type(exc).__name__}); outcome unknown",
            ), False
        if not isinstance(answer, dict) or not isinstance(answer.get("success"), bool):
            return Settlement(
                False,
                network,
                reason=Reason.SETTLEMENT_PENDING,
                message=f"facilitator /settle answered HTTP {status} without a boolean success; outcome unknown",
            ), False
        transaction = answer.get("transaction") if isinstance(answer.get("transaction"), str) else ""
        payer = answer.get("payer") if isinstance(answer.get("payer"), str) else None
        answered_network = answer.get("network")
        if answer["success"] is True:
            if status != 200 or not transaction or (answered_network not in (None, network)):
                return Settlement(
                    False,
                    network,
                    transaction,
                    payer,
                    Reason.SETTLEMENT_PENDING,
                    f"facilitator /settle said success with HTTP {status}, transaction {transaction!r}, "
                    f"network {answered_network!r}; not trusted, outcome unknown",
                ), False
            return Settlement(True, network, transaction, payer), False
        reason = answer.get("errorReason")
        message = answer.get("errorMessage")
        if reason == Reason.SETTLEMENT_PENDING:
            message = message if isinstance(message, str) else "the facilitator reports the settlement as pending"
            return Settlement(False, network, transaction, payer, Reason.SETTLEMENT_PENDING, message), True
        return Settlement(
            False,
            network,
            transaction,
            payer,
            reason if isinstance(reason, str) and reason else Reason.UNEXPECTED_SETTLE_ERROR,
            message if isinstance(message, str) else "the facilitator did not settle",
        ), False

    async def supported(self) -> SupportedResponse:
        now = time.monotonic()
        if self._supported is not None and now - self._supported[0] < SUPPORTED_CACHE_S:
            return self._supported[1]
        try:
            response = await self._client.get(f"{self.url}/supported", timeout=self._verify_timeout)
            supported = msgspec.json.decode(response.content, type=SupportedResponse)
        except (httpx.HTTPError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise PaymentError(
                Reason.UNEXPECTED_VERIFY_ERROR, f"facilitator /supported failed: {type(exc).__name__}"
            ) from None
        self._supported = (now, supported)
        return supported

    async def close(self) -> None:
        await self._client.aclose()
