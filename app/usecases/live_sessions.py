"""Live sessions and connections, in Redis so that every replica sees them.

A session is one payer's paid time on one live stream: its window's end (0 until it starts), how it was paid
(`exact`, or `batch-settlement` with its channel, which renews in-band), and a ticket, the bearer secret that
opens it from a browser (WebSocket, EventSource) or reopens it after a dropped connection, until its window
ends. A session is open on one connection at a time (`hold`); connections are capped per client address and
per payer across replicas (sorted sets of connection ids, each expiring unless its process refreshes it, so a
killed process frees its slots within CONNECTION_TTL_S).

Renewal (`extend`) runs one Lua script: the new end is max(end, now) + window, so paying early adds a window
after the current one and paying after a lapse starts a new one now.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

CONNECTION_TTL_S = 90.0  # a connection's slot lapses this long after its process last vouched for it
HOLD_TTL_S = 45.0
SESSION_TTL_SLACK_S = 600.0  # a session is kept this long past its window (a late renewal, the admin view)

ADMITTED, ADDRESS_FULL, PAYER_FULL, HELD = 0, 1, 2, 3

# KEYS: address set, payer set, hold. ARGV: now, expiry, address cap, payer cap, conn, hold ttl, force (1: no caps)
_ADMIT = """
local holder = redis.call('GET', KEYS[3])
if holder and holder ~= ARGV[5] then return 3 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
if ARGV[7] ~= '1' then
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 1 end
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return 2 end
end
redis.call('SET', KEYS[3], ARGV[5], 'PX', ARGV[6])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[5])
redis.call('PEXPIRE', KEYS[1], 2 * math.ceil(ARGV[2] - ARGV[1]) * 1000)
redis.call('PEXPIRE', KEYS[2], 2 * math.ceil(ARGV[2] - ARGV[1]) * 1000)
return 0
"""

# KEYS: session. ARGV: now, window, ttl slack, start only (1: leave a started window as it is)
_EXTEND = """
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
local ends = tonumber(redis.call('HGET', KEYS[1], 'end'))
if ARGV[4] == '1' and ends > 0 then return tostring(ends) end
local base = math.max(ends, tonumber(ARGV[1]))
local new = base + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'end', tostring(new))
redis.call('EXPIREAT', KEYS[1], math.ceil(new + tonumber(ARGV[3])))
return tostring(new)
"""

# KEYS: hold. ARGV: conn — release a session only if this connection holds it
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    ticket: str
    stream: str
    payer: str
    scheme: str  # "exact" or "batch-settlement"
    network: str
    channel: str  # batch-settlement: the channel its vouchers draw on ("" otherwise)
    window_s: float
    price: int  # atomic units per window
    end: float = 0.0  # unix s; 0: not started (a ticket not used yet)

    @property
    def renews_in_band(self) -> bool:
        return self.scheme == "batch-settlement" and bool(self.channel)


@dataclass(frozen=True, slots=True)
class Connection:
    id: str
    address: str
    payer: str
    session: str


def new_session_id() -> str:
    return "s_" + secrets.token_urlsafe(18)


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class LiveSessions:
    def __init__(self, redis: Any, *, prefix: str = "wg:", ticket_ttl_s: float = 60.0) -> None:
        self.redis = redis  # redis.asyncio.Redis
        self.prefix = f"{prefix}live:"
        self.ticket_ttl_s = ticket_ttl_s
        self._admit = redis.register_script(_ADMIT)
        self._extend = redis.register_script(_EXTEND)
        self._release = redis.register_script(_RELEASE)

    def _k(self, kind: str, name: str) -> str:
        return f"{self.prefix}{kind}:{name}"

    # ---- sessions ----

    async def create(self, session: Session) -> None:
        """Keep a new session, and its ticket for `ticket_ttl_s` (or, once started, until its window ends)."""
        fields = {k: str(v) for k, v in asdict(session).items()}
        lasts = max(session.end - time.time(), 0.0) + SESSION_TTL_SLACK_S + self.ticket_ttl_s
        ticket_s = self.ticket_ttl_s if not session.end else max(session.end - time.time(), 0.0) + SESSION_TTL_SLACK_S
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self._k("s", session.id), mapping=fields)
        pipe.expire(self._k("s", session.id), int(lasts) + 1)
        pipe.set(self._k("t", session.ticket), session.id, px=int(ticket_s * 1000))
        await pipe.execute()

    async def get(self, session_id: str) -> Session | None:
        raw = await self.redis.hgetall(self._k("s", session_id))
        if not raw:
            return None
        fields = {_text(k): _text(v) for k, v in raw.items()}
        try:
            return Session(
                id=fields["id"],
                ticket=fields["ticket"],
                stream=fields["stream"],
                payer=fields["payer"],
                scheme=fields["scheme"],
                network=fields["network"],
                channel=fields["channel"],
                window_s=float(fields["window_s"]),
                price=int(fields["price"]),
                end=float(fields["end"]),
            )
        except (KeyError, ValueError):
            return None

    async def by_ticket(self, ticket: str) -> Session | None:
        if not ticket or len(ticket) > 128:
            return None
        session_id = await self.redis.get(self._k("t", ticket))
        return None if session_id is None else await self.get(_text(session_id))

    async def start(self, session: Session) -> float:
        """Start a ticket's window now if it has not started (else leave it); the window's end. The ticket then
        reopens the session until that end (and a while after, to be told the window is over)."""
        ends = await self._run_extend(session, start_only=True)
        await self.redis.pexpireat(self._k("t", session.ticket), int((ends + SESSION_TTL_SLACK_S) * 1000))
        return ends

    async def extend(self, session: Session) -> float | None:
        """One more window (paid): the new end, or None if the session is gone."""
        found = await self.redis.exists(self._k("s", session.id))
        if not found:
            return None
        ends = await self._run_extend(session, start_only=False)
        await self.redis.pexpireat(self._k("t", session.ticket), int((ends + SESSION_TTL_SLACK_S) * 1000))
        return ends

    async def _run_extend(self, session: Session, *, start_only: bool) -> float:
        args = [repr(time.time()), repr(session.window_s), repr(SESSION_TTL_SLACK_S), "1" if start_only else "0"]
        raw = await self._extend(keys=[self._k("s", session.id)], args=args)
        if raw is None:
            raise LookupError(f"session {session.id} is gone")
        return float(_text(raw))

    async def end_of(self, session_id: str) -> float | None:
        raw = await self.redis.hget(self._k("s", session_id), "end")
        return None if raw is None else float(_text(raw))

    # ---- connections ----

    def new_connection(self, address: str, payer: str, session: str) -> Connection:
        return Connection("c_" + secrets.token_urlsafe(9), address, payer.lower(), session)

    async def count(self, address: str, payer: str) -> tuple[int, int]:
        """Live connections now open from this address and for this payer, fleet-wide."""
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcount(self._k("addr", address), now, "+inf")
        pipe.zcount(self._k("payer", payer.lower()), now, "+inf")
        by_address, by_payer = await pipe.execute()
        return int(by_address), int(by_payer)

    async def admit(self, connection: Connection, caps: tuple[int, int], *, force: bool = False) -> int:
        """ADMITTED, or why not: ADDRESS_FULL, PAYER_FULL, HELD (the session is open on another connection).
        `force`: count it whatever the caps (a connection paid for when they were checked)."""
        now = time.time()
        keys = [
            self._k("addr", connection.address),
            self._k("payer", connection.payer),
            self._k("hold", connection.session),
        ]
        args = [repr(now), repr(now + CONNECTION_TTL_S), caps[0], caps[1], connection.id, int(HOLD_TTL_S * 1000)]
        return int(await self._admit(keys=keys, args=[*args, "1" if force else "0"]))

    async def release(self, connection: Connection) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrem(self._k("addr", connection.address), connection.id)
        pipe.zrem(self._k("payer", connection.payer), connection.id)
        await pipe.execute()
        await self._release(keys=[self._k("hold", connection.session)], args=[connection.id])

    async def refresh(self, connections: list[Connection]) -> None:
        """Vouch for this process's open connections (their slots and holds would lapse otherwise)."""
        if not connections:
            return
        expiry = time.time() + CONNECTION_TTL_S
        pipe = self.redis.pipeline(transaction=False)
        for connection in connections:
            pipe.zadd(self._k("addr", connection.address), {connection.id: expiry}, xx=True)
            pipe.zadd(self._k("payer", connection.payer), {connection.id: expiry}, xx=True)
            pipe.set(self._k("hold", connection.session), connection.id, px=int(HOLD_TTL_S * 1000), xx=True)
        await pipe.execute()
