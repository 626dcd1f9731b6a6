"""The gateway's public base URL, as a request sees it: what quotes and discovery documents link to."""

from __future__ import annotations

import re

from starlette.types import Scope

_HOST = re.compile(r"^[A-Za-z0-9.\-]+(?::\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$")


def public_base_url(scope: Scope, public_url: str | None) -> str:
    """The absolute base of the gateway's URLs (quotes' `resource.url`, discovery documents): the
    configured public URL, else the request's scheme and Host; a missing or malformed Host falls back
    to the server's own address, so a client cannot write arbitrary text into a quote."""
    if public_url:
        return public_url.rstrip("/")
    host = next((bytes(v).decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
    if not host or len(host) > 255 or not _HOST.match(host):
        server = scope.get("server") or ("localhost", None)
        host = f"{server[0]}:{server[1]}" if server[1] else str(server[0])
    return f"{scope.get('scheme', 'http')}://{host}"
