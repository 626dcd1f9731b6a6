"""What every admin API module shares: JSON answers and problems, query and body parsing, and `AdminCore`, the
part of the admin API (api.py) its other route modules (console, bans, refunds, history) lean on."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from adapters import Registry
from app.edge.admin.auth import Admin
from app.runtime.times import parse_when
from app.usecases.controls import Controls
from app.usecases.services import Services
from app.usecases.source_watch import SourceWatch
from payments import encode_json

NO_STORE = {"cache-control": "no-store"}
BODY_BYTES_MAX = 16_384

Handler = Callable[[Request, Admin], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


class BadRequest(ValueError):
    """A malformed admin query: 400 with this message."""


class AdminCore(Protocol):
    """The admin API as its route modules see it: its guard (token, a ready ledger, the error answers) and what
    it was wired with."""

    services: Services
    controls: Controls | None
    reconcile: Callable[[str], Awaitable[dict[str, Any]]] | None
    started_at: float
    watch: SourceWatch | None

    def _guarded(self, handler: Handler) -> Endpoint: ...

    def every_stream(self) -> Registry: ...

    async def matrix(self) -> list[dict[str, Any]]: ...


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(encode_json(_plain(content)), status, {**NO_STORE, **(headers or {})}, "application/json")


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


ROW_ID_MAX = 2**62


def row_id(raw: str) -> int | None:
    """A path's `{id}` as a row id; None when it cannot be one (answered 404, as an unknown row). ASCII digits
    only: str.isdigit() also takes "²", which int() refuses."""
    return int(raw) if raw.isascii() and raw.isdigit() and int(raw) <= ROW_ID_MAX else None


def _int_param(request: Request, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise BadRequest(f"{name} must be an integer from {low} to {high}")
    return int(raw)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > BODY_BYTES_MAX:
        raise BadRequest("the body is too large")
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise BadRequest("the body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str, most: int) -> str:
    """A required text field of a JSON body, stripped: 400 when absent, empty or longer than `most`."""
    value = body.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > most:
        raise BadRequest(f"{name} must be 1 to {most} characters")
    return value.strip()
