"""`worldgate backfill STREAM_ID --days N` (or `--all`): fill the time machine with what the upstreams keep of
their past (adapters/history/backfillers.py), with a progress bar and an ETA. Resumable and idempotent: a day
once finished is not asked again, and whatever is asked again is stored only if new. With
`--replay-upstreams` (or WORLDGATE_UPSTREAM_REPLAY_URL) it reads the recorded history payloads instead.

The parser imports nothing heavy; the handler imports what it uses.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adapters.history import DayDone

BACKFILL = ("database_url", "state_dir", "auto_migrate", "replay_upstreams", "upstream_replay_url")
BACKFILL += ("upstream_timeout_s",)
BAR_WIDTH = 24
LIVE_PAUSE_S = 0.5  # between two days asked of a live upstream


class ProgressBar:
    """`[#####.......] 5/12 days  snapshots 120  ETA 7s` on stderr: redrawn in place on a terminal, a line a
    day otherwise. The ETA counts only days that were fetched (finished days are skipped at no cost)."""

    def __init__(self, label: str, out: Any = None) -> None:
        self.label = label
        self.out = out or sys.stderr
        self.started = time.monotonic()
        self.fetched = 0

    def __call__(self, done: DayDone) -> None:
        self.fetched += 0 if done.skipped else 1
        elapsed = time.monotonic() - self.started
        left = done.total - done.index
        eta = f"ETA {elapsed / self.fetched * left:.0f}s" if self.fetched else "ETA -"
        filled = round(BAR_WIDTH * done.index / done.total)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        what = "done before" if done.skipped else f"+{done.stored}"
        line = f"{self.label} [{bar}] {done.index}/{done.total} days ({done.day} {what})  "
        line += f"snapshots {done.stored_total}  {eta if left else f'took {elapsed:.1f}s'}"
        tty = getattr(self.out, "isatty", lambda: False)()
        self.out.write(("\r" + line + ("\n" if not left else "")) if tty else line + "\n")
        self.out.flush()


async def _backfill(args: argparse.Namespace, dsn: str, replay_url: str | None, timeout_s: float) -> int:
    import httpx

    import ledger
    from adapters import Fetcher
    from adapters.errors import ParseError, UpstreamError
    from adapters.history import BACKFILLERS, ColdStore, for_stream, run

    if args.all:
        chosen = list(BACKFILLERS.values())
    else:
        found = for_stream(args.stream)
        if found is None:
            known = ", ".join(s for b in BACKFILLERS.values() for s in b.streams)
            print(f"worldgate: {args.stream} has no history to backfill; streams that do: {known}", file=sys.stderr)
            return 2
        chosen = [found]
    pool = await ledger.create_pool(dsn, size_min=1, size_max=2)
    try:
        async with httpx.AsyncClient() as http:
            fetcher = Fetcher(http, replay_url=replay_url, timeout_s=timeout_s)
            for backfiller in chosen:
                days = args.days
                if days > backfiller.max_days:
                    print(f"{backfiller.source}: its upstream keeps {backfiller.max_days} days; asking that many")
                try:
                    result = await run(
                        backfiller,
                        ColdStore(pool),
                        fetcher.get,
                        days=days,
                        replayed=replay_url is not None,
                        report=ProgressBar(backfiller.source),
                        pause_s=0.0 if replay_url else LIVE_PAUSE_S,
                    )
                except (UpstreamError, ParseError) as exc:
                    why = exc.message if isinstance(exc, UpstreamError) else f"unreadable answer: {exc}"
                    print(f"worldgate: {backfiller.source}: {why}; the days finished so far are kept", file=sys.stderr)
                    return 2
                clock = " (the recording's clock)" if replay_url else ""
                print(
                    f"{result.source} ({', '.join(result.streams)}): {result.stored} snapshots stored; "
                    f"{result.days_fetched} days fetched, {result.days_skipped} finished before; "
                    f"now = {result.anchor.isoformat(timespec='seconds')}{clock}"
                )
    finally:
        await pool.close()
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    import asyncio

    import ledger
    from adapters import ReplayServer
    from app.cli.command_settings import ledger_database, settings_for
    from app.wiring import MIGRATIONS_DIR

    if not args.all and not args.stream:
        print("worldgate: name a stream (worldgate backfill weather.grid.temperature) or give --all", file=sys.stderr)
        return 2
    if args.days < 0:
        print("worldgate: --days must be 0 or more", file=sys.stderr)
        return 2
    settings = settings_for(args, BACKFILL)
    replay: ReplayServer | None = None
    replay_url = settings.upstream_replay_url
    if replay_url is None and settings.replay_upstreams:
        replay = ReplayServer().start()
        replay_url = replay.url
    try:
        with ledger_database(settings) as dsn:
            if settings.auto_migrate:
                asyncio.run(ledger.migrate(dsn, MIGRATIONS_DIR))
            return asyncio.run(_backfill(args, dsn, replay_url, settings.upstream_timeout_s))
    finally:
        if replay is not None:
            replay.stop()


def add_backfill(commands: Any) -> None:
    text = "Fill the time machine with an upstream's own past (idempotent, resumable)."
    sub = commands.add_parser("backfill", help=text, description=text)
    sub.add_argument("--config", help="TOML settings file (or WORLDGATE_CONFIG); env vars win over it")
    sub.add_argument("stream", nargs="?", help="a recorded stream, e.g. weather.grid.temperature (its fetch group)")
    sub.add_argument("--all", action="store_true", help="every upstream that keeps history")
    sub.add_argument("--days", type=int, default=1, help="days before today to fill, plus today so far (default 1)")
    sub.add_argument(
        "--replay-upstreams",
        action="store_true",
        help="read the recorded history payloads (adapters/fixtures) instead of the upstreams",
    )
    sub.set_defaults(run=cmd_backfill)
