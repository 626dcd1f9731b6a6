"""JSON-lines logging: one object per line with the message, the request's context and any `extra=`.

Every line logged while a request is handled carries its `request_id` (set by the metrics
middleware) and, on a paid request, its `payment_key` and `payer` once the gate knows them: a
context variable, so no call site has to remember. Fields are whatever callers pass; the gate
passes route, payment key and payer, never headers or keys, so a line cannot carry a payment
header or a secret.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import secrets
import sys
import time
from contextvars import ContextVar
from typing import Any

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


_context: ContextVar[dict[str, Any] | None] = ContextVar("worldgate_log_context", default=None)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


_PROCESS = secrets.token_hex(4)  # unique per worker process: ids need to be unique, not secret
_sequence = itertools.count(1)


def bind_request(given: str | None = None) -> str:
    """Start a request's log context; keeps a caller's id if it is short and plain, else makes one
    (process prefix + counter: unique across workers, and cheaper than fresh randomness per request)."""
    request_id = given if given and _REQUEST_ID.match(given) else f"{_PROCESS}{next(_sequence):08x}"
    _context.set({"request_id": request_id})
    return request_id


def bind(**fields: Any) -> None:
    """Add fields to every later line of this request (e.g. the payment key, once known)."""
    _context.set({**(_context.get() or {}), **fields})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **(_context.get() or {}),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value if isinstance(value, str | int | float | bool | type(None)) else str(value)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("worldgate")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
