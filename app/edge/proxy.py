"""Who a request comes from behind reverse proxies: decided once, outermost, so every per-client decision agrees.

`ProxyHeaders` (pure ASGI, outside everything else) believes X-Forwarded-For and X-Forwarded-Proto only when
the TCP peer is in WORLDGATE_TRUSTED_PROXIES: then the right-most hop that is not a trusted proxy becomes
`scope["client"]` (hops further left were written by the client and prove nothing), and the peer itself is
kept in `scope[PEER_KEY]`. The rate limits, the /metrics loopback rule, the access log and traces all read
that one client. Proxy headers from a peer that is not trusted are ignored, and said once per process as a
configuration warning: with no trusted proxy, every client behind a proxy shares its address, and so one
rate-limit bucket. `ScrapeGuard` keeps /metrics' tokenless access for a scraper on this machine only: a
request any proxy relayed needs the token, even from a loopback proxy.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["PEER_KEY", "PROXY_HEADERS", "Forwarded", "ProxyHeaders", "ScrapeGuard", "parse_address", "relayed"]

log = logging.getLogger("worldgate.proxy")

PEER_KEY = "worldgate.peer"  # the TCP peer, set once a trusted proxy's header named the client
# what a proxy adds; any of them means a proxy relayed the request (only the first two are read)
PROXY_HEADERS = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"forwarded", b"x-real-ip", b"x-forwarded-host", b"via"}
)
CLIENTS_CACHED_MAX = 65_536  # resolved (peer, X-Forwarded-For) pairs kept per worker
_SCHEMES = frozenset({"http", "https"})
_WEBSOCKET = {"http": "ws", "https": "wss"}
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(text: str) -> IpAddress | None:
    """An IP from a peer or an X-Forwarded-For hop ("1.2.3.4", "1.2.3.4:5678", "[::1]:80", "::1")."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


class Forwarded:
    """X-Forwarded-For as far as the trusted proxies vouch for it."""

    def __init__(self, trusted: Iterable[str] = ()) -> None:
        self.trusted = tuple(ipaddress.ip_network(t, strict=False) for t in trusted)
        self._known: dict[tuple[str, bytes], IpAddress | None] = {}  # parsing IPs costs µs: a cache

    def trusts(self, address: IpAddress) -> bool:
        return any(address in network for network in self.trusted)

    def client(self, peer: str, forwarded: bytes) -> IpAddress | None:
        """The client a trusted peer names; None when the peer is not a trusted proxy (or no IP)."""
        known = self._known.get((peer, forwarded), False)
        if known is False:
            if len(self._known) >= CLIENTS_CACHED_MAX:
                self._known.clear()
            known = self._known[(peer, forwarded)] = self._resolve(peer, forwarded)
        return known

    def _resolve(self, peer: str, forwarded: bytes) -> IpAddress | None:
        address = parse_address(peer)
        if address is None or not self.trusted or not self.trusts(address):
            return None
        hops = forwarded.decode("latin-1").split(",") if forwarded else []
        for hop in reversed(hops):
            found = parse_address(hop)
            if found is None:
                break  # a hop a trusted proxy would not write: stay with the last trusted one
            address = found
            if not self.trusts(found):
                break
        return address


def relayed(scope: Scope) -> bool:
    """Did a proxy relay this request (a trusted one named its client, or any proxy header is present)?"""
    if PEER_KEY in scope:
        return True
    for name, _ in scope["headers"]:  # noqa: SIM110 (a loop, not any(): per request until the first warning)
        if name in PROXY_HEADERS:
            return True
    return False


class ProxyHeaders:
    """Pure ASGI, outermost (see the module docstring). With no trusted proxy it only watches for proxy
    headers until it has warned once; then it costs one attribute test per request."""

    def __init__(self, app: ASGIApp, *, trusted: Iterable[str] = ()) -> None:
        self.app = app
        self.forwarded = Forwarded(trusted)
        self._watching = True  # no configuration warning said yet

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            if self.forwarded.trusted:
                self._believe(scope)
            elif self._watching and relayed(scope):
                self._warn(scope, "WORLDGATE_TRUSTED_PROXIES is not set")
        await self.app(scope, receive, send)

    def _believe(self, scope: Scope) -> None:
        client = scope.get("client")
        peer = str(client[0]) if client else ""
        forwarded = proto = b""
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                forwarded = value if not forwarded else forwarded + b"," + value
            elif name == b"x-forwarded-proto":
                proto = value
        if not forwarded and not proto:
            return  # not relayed (a probe or scraper on the proxy's own address), or by a proxy that says nothing
        named = self.forwarded.client(peer, forwarded)
        if named is None:
            if self._watching:
                self._warn(scope, f"the peer {peer or '?'} is not in WORLDGATE_TRUSTED_PROXIES")
            return
        scope[PEER_KEY] = peer
        scope["client"] = (str(named), 0)
        scheme = proto.decode("latin-1").rpartition(",")[2].strip().lower()
        if scheme in _SCHEMES:
            scope["scheme"] = scheme if scope["type"] == "http" else _WEBSOCKET[scheme]

    def _warn(self, scope: Scope, why: str) -> None:
        self._watching = False
        names = sorted({name.decode("latin-1") for name, _ in scope["headers"] if name in PROXY_HEADERS})
        client = scope.get("client")
        log.warning(
            f"configuration: a request came through a proxy ({', '.join(names)}) but {why}: its headers are"
            " ignored, so every client behind it shares the proxy's address and one rate-limit bucket; set"
            " WORLDGATE_TRUSTED_PROXIES to the proxy's address or CIDR (said once per process)",
            extra={"peer": str(client[0]) if client else "", "headers": ",".join(names)},
        )


class ScrapeGuard:
    """/metrics without a token is for a scraper on this machine: a request a proxy relayed is shown to the
    endpoint with no client address, so only a bearer token opens it (a loopback proxy included)."""

    def __init__(self, endpoint: ASGIApp) -> None:
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if relayed(scope):
            scope = {**scope, "client": None}
        await self.endpoint(scope, receive, send)
