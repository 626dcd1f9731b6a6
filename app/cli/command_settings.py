"""A command's settings: its flags over the environment over its --config file, and only what it uses.

Each command names the settings it reads (`only`), so a migration job without signing keys, or with a
chain configured for the server alone, is not refused for them.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Collection, Iterator
from contextlib import contextmanager

from app.runtime.settings import Settings, load_settings, replace

LEDGER = ("database_url", "state_dir")  # migrate, ledger report, ledger verify
CHAINS = (*LEDGER, "evm", "svm", "facilitator_url", "reconcile")  # reconcile, refund-sent; with keys=False
ADMIN = ("admin", "state_dir")  # admin token


def settings_for(args: argparse.Namespace, only: Collection[str] | None = None, *, keys: bool = True) -> Settings:
    """`only`: the top-level settings the command uses (None: all of them, as a server needs); `keys`: whether
    it signs anything."""
    overrides = {}
    if getattr(args, "host", None):
        overrides["WORLDGATE_HOST"] = args.host
    if getattr(args, "port", None):
        overrides["WORLDGATE_PORT"] = str(args.port)
    if getattr(args, "workers", None):
        overrides["WORLDGATE_WORKERS"] = str(args.workers)
    if getattr(args, "replay_upstreams", False):
        overrides["WORLDGATE_REPLAY_UPSTREAMS"] = "1"
    return load_settings({**os.environ, **overrides}, getattr(args, "config", None), only=only, keys=keys)


def with_admin_secret(settings: Settings) -> Settings:
    """No admin key configured: use (or make) one secret in the state dir, so `worldgate admin token`
    mints tokens this server accepts, with nothing to set up."""
    if settings.admin.configured or settings.admin.algorithm != "HS256":
        return settings
    from app.edge.admin.auth import ensure_secret  # JWT and crypto imports: only for who needs the secret

    path = ensure_secret(settings.state_dir.resolve())
    if path.stat().st_mode & 0o077:  # made by an older version, or copied in: readable by this user only
        path.chmod(0o600)
    return replace(settings, admin=replace(settings.admin, secret=path.read_text().strip()))


@contextmanager
def ledger_database(settings: Settings) -> Iterator[str]:
    """The ledger's database URL: the configured one, or the embedded Postgres for the duration."""
    if settings.database_url is not None:  # nothing to start: skip embedded's imports (devnets, Redis)
        yield settings.database_url
        return
    from app.runtime import embedded

    running = embedded.start(settings, chain=False, redis=False)
    try:
        assert running.settings.database_url
        yield running.settings.database_url
    finally:
        running.stop()


def audited_chains(settings: Settings) -> list[tuple[str, str]]:
    """The chains reconcile asks: the configured ones, or with none configured the devnets that a
    running `worldgate serve` described in devnet.json."""
    from app.runtime.devnet_file import devnet_state
    from app.runtime.settings import SettingsError
    from app.usecases.reconcile import chains_of

    if not settings.uses_devnet:
        return chains_of(settings)
    state = devnet_state(settings.state_dir)
    if state is None:
        raise SettingsError("no chain is configured and no devnet is running (start `worldgate serve` first)")
    return [(state[part]["network"], state[part]["rpc_url"]) for part in ("evm", "svm") if part in state]
