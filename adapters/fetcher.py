"""The one place adapters' requests become HTTP: host mapping, timeouts, a size cap, error kinds.

Each adapter names its fixed host; the fetcher turns it into https://host, or, in replay mode, into
the replay server's http://127.0.0.1:port/host, so recorded payloads travel the same httpx path
as live ones. Failures come back as UpstreamError with a `kind` the cache tier acts on.
"""

from __future__ import annotations

import httpx

from .errors import UpstreamError
from .upstream.base import UpstreamRequest

TIMEOUT_S_DEFAULT = 10.0
BODY_BYTES_MAX = 8 * 1024 * 1024
USER_AGENT = "worldgate/0.1 (+https://github.com/worldgate; pay-per-request world-state data)"


class Fetcher:
    def __init__(
        self, client: httpx.AsyncClient, *, replay_url: str | None = None, timeout_s: float = TIMEOUT_S_DEFAULT
    ) -> None:
        self._client = client
        self.replay_url = replay_url.rstrip("/") if replay_url else None
        self._timeout = httpx.Timeout(timeout_s, connect=min(5.0, timeout_s))

    def url(self, request: UpstreamRequest) -> str:
        base = f"{self.replay_url}/{request.host}" if self.replay_url else f"https://{request.host}"
        return base + request.path

    async def get(self, source: str, request: UpstreamRequest) -> bytes:
        url = self.url(request)
        try:
            async with self._client.stream(
                "GET",
                url,
                params=list(request.params),
                timeout=self._timeout,
                headers={"user-agent": USER_AGENT, "accept": "application/json"},
                follow_redirects=True,
            ) as response:
                if response.url.host != httpx.URL(url).host:  # the host is fixed: a redirect may not leave it
                    raise UpstreamError(source, "status", f"redirected to another host ({response.url.host})")
                if response.status_code != 200:
                    raise UpstreamError(source, "status", f"answered HTTP {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > BODY_BYTES_MAX:  # stop reading: a runaway body never sits in memory whole
                        raise UpstreamError(source, "too_large", f"answered more than {BODY_BYTES_MAX} bytes")
                return bytes(body)
        except httpx.TimeoutException:
            raise UpstreamError(source, "timeout", "timed out") from None
        except httpx.HTTPError as exc:
            raise UpstreamError(source, "unreachable", f"unreachable ({type(exc).__name__})") from None
