"""HTTP for the paying client: one GET at a time, no redirects, and the x402 headers it reads (the 402's
PAYMENT-REQUIRED quote, the PAYMENT-RESPONSE receipt) decoded."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec

from app.cli.pay_errors import CliError
from payments.codec import PAYMENT_REQUIRED_HEADER, PAYMENT_RESPONSE_HEADER, PaymentRequired

QUOTE_TIMEOUT_S = 30.0


def host_of(url: str) -> str:
    """scheme://host[:port] of a URL, for messages: no path, query or credentials (RPC URLs carry API keys)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def fetch(url: str, headers: dict[str, str] | None = None, timeout_s: float = QUOTE_TIMEOUT_S) -> httpx.Response:
    """One GET, no redirects followed; an unreachable or malformed URL becomes a CliError."""
    try:
        return httpx.get(url, headers=headers, timeout=timeout_s, follow_redirects=False)
    except httpx.InvalidURL as exc:
        raise CliError(f"{url!r} is not a URL this can fetch: {exc}") from None
    except httpx.UnsupportedProtocol:
        raise CliError(f"{url!r} is not an http:// or https:// URL") from None
    except httpx.TimeoutException:
        raise CliError(f"{host_of(url)} did not answer within {timeout_s:.0f} s") from None
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach {host_of(url)}: {str(exc) or type(exc).__name__}") from None


def status_line(response: httpx.Response) -> str:
    return f"HTTP {response.status_code} {response.reason_phrase}".rstrip()


def body_text(response: httpx.Response) -> str:
    """The body for a terminal: JSON pretty-printed, anything else as text."""
    try:
        return json.dumps(response.json(), indent=2, ensure_ascii=False)
    except ValueError:
        return response.text


def decode_b64_json(value: str, what: str) -> dict[str, Any]:
    try:
        document = json.loads(base64.b64decode(value.strip() + "=" * (-len(value.strip()) % 4), validate=True))
    except (binascii.Error, ValueError):
        raise CliError(f"the {what} header is not base64 JSON") from None
    if not isinstance(document, dict):
        raise CliError(f"the {what} header is not a JSON object")
    return document


def decode_quote(response: httpx.Response) -> tuple[PaymentRequired, dict[str, Any]]:
    """A 402's PAYMENT-REQUIRED header: the typed quote and the JSON as sent."""
    header = response.headers.get(PAYMENT_REQUIRED_HEADER)
    if header is None:
        raise CliError("the 402 has no PAYMENT-REQUIRED header: not an x402 v2 quote")
    document = decode_b64_json(header, "PAYMENT-REQUIRED")
    try:
        required = msgspec.convert(document, type=PaymentRequired)
    except msgspec.ValidationError as exc:
        raise CliError(f"the PAYMENT-REQUIRED header is not an x402 PaymentRequired: {exc}") from None
    return required, document


def decode_receipt(response: httpx.Response) -> dict[str, Any] | None:
    header = response.headers.get(PAYMENT_RESPONSE_HEADER)
    return decode_b64_json(header, "PAYMENT-RESPONSE") if header is not None else None


def get_quote(url: str) -> httpx.Response:
    """The unpaid answer; anything but a 402 (or a free 2xx) is an error that names the status."""
    response = fetch(url)
    if response.status_code == 402 or response.is_success:
        return response
    detail = response.text.strip()[:500]
    raise CliError(f"{url} answered {status_line(response)}, not a 402 quote" + (f": {detail}" if detail else ""))
