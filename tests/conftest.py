"""Session fixtures: one fresh Postgres database, Redis, an anvil devnet, and the default gateway."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import secrets
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

import ledger
from adapters import Adapter, Registry, ReplayServer
from app.runtime.embedded import devnet_settings, solana_devnet_settings
from app.runtime.logs import JsonFormatter
from app.runtime.settings import AdminSettings, LimitSettings, ReconcileSettings, Settings, replace
from app.wiring import MIGRATIONS_DIR, create_app
from payments.devnet.anvil import Anvil
from payments.devnet.batch import install_batch_settlement
from payments.devnet.evm import EvmDevnet, provision
from payments.devnet.solana_process import SolanaDevnetProcess

from .chain import unb64
from .services import Database, ServerThread, postgres, redis_server

ADMIN_SECRET = "test-admin-secret-" + "0123456789abcdef" * 2  # HS256, at least 32 bytes
# Every request from 127.0.0.1: the limits stay on (so the whole suite runs through them) but out of reach.
TEST_LIMITS = LimitSettings(free="100000/minute", quote="100000/minute", payer="100000/minute")


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def database(state_dir: Path) -> Iterator[Database]:
    with postgres(state_dir) as db:
        asyncio.run(ledger.migrate(db.url, MIGRATIONS_DIR))
        yield db


@pytest.fixture(scope="session")
def redis_url(state_dir: Path) -> Iterator[str]:
    with redis_server(state_dir) as (url, _kind):
        yield url


@pytest.fixture(scope="session")
def devnet() -> Iterator[EvmDevnet]:
    anvil = Anvil(84532).start()
    try:
        devnet = provision(anvil.rpc_url, 84532)
        install_batch_settlement(anvil.rpc_url)  # the channel contracts, as `worldgate serve` places them
        yield devnet
    finally:
        anvil.stop()


@pytest.fixture(scope="session")
def solana() -> Iterator[SolanaDevnetProcess]:
    process = SolanaDevnetProcess().start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def replay() -> Iterator[ReplayServer]:
    """Every adapter's recorded upstream payload, over real HTTP on 127.0.0.1."""
    server = ReplayServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def settings(
    database: Database, redis_url: str, devnet: EvmDevnet, solana: SolanaDevnetProcess, replay: ReplayServer
) -> Settings:
    """Both networks on, as `make serve` runs: every EVM test also shows Solana changes nothing for it.
    Upstreams come from the replay server; the scheduler is off so tests decide when fetches happen."""
    return Settings(
        database_url=database.url,
        redis_url=redis_url,
        auto_migrate=False,
        evm=devnet_settings(devnet),
        svm=solana_devnet_settings(solana.state),
        upstream_replay_url=replay.url,
        scheduler=False,
        cache_prefix=f"wgtest:{secrets.token_hex(4)}:",  # no cached value from an earlier run leaks in
        admin=AdminSettings(secret=ADMIN_SECRET),
        reconcile=ReconcileSettings(interval_s=0),  # tests run reconcile themselves, when they mean to
        limits=TEST_LIMITS,
        # exact alone: the suite pays per request; tests/test_batch_gateway.py turns batch-settlement on
        schemes=("exact",),
    )


class Gateway:
    """A running gateway and the HTTP calls tests make against it."""

    def __init__(self, server: ServerThread, app: Any) -> None:
        self.server = server
        self.app = app
        self.url = server.url

    async def get(self, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
            return await client.get(path, headers=headers, **kwargs)

    async def offer(self, path: str, family: str = "eip155") -> dict[str, Any]:
        """A paid path's offer on one network family, from its 402 quote, as a client echoes it in `accepted`."""
        answer = await self.get(path)
        assert answer.status_code == 402, answer.text
        accepts: list[dict[str, Any]] = unb64(answer.headers["payment-required"])["accepts"]
        [offer] = [o for o in accepts if o["network"].startswith(f"{family}:")]
        return offer


@contextlib.contextmanager
def running_gateway(
    settings: Settings,
    *,
    registry: Registry | None = None,
    adapters: Mapping[str, Adapter] | None = None,
    data_dir: Path | None = None,
) -> Iterator[Gateway]:
    app = create_app(settings, registry=registry, adapters=adapters, data_dir=data_dir)
    server = ServerThread(app).start()
    try:
        yield Gateway(server, app)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gateway(settings: Settings) -> Iterator[Gateway]:
    with running_gateway(settings) as running:
        yield running


@pytest.fixture(scope="session")
async def pool(database: Database) -> AsyncIterator[asyncpg.Pool]:
    connection_pool = await ledger.create_pool(database.url, size_min=1, size_max=5)
    yield connection_pool
    await connection_pool.close()


def payment_key(devnet: EvmDevnet, header_payload: dict[str, Any]) -> str:
    authorization = header_payload["payload"]["authorization"]
    return f"{devnet.network}:{devnet.asset.lower()}:{authorization['from'].lower()}:{authorization['nonce'].lower()}"


async def payment_row(pool: asyncpg.Pool, key: str) -> dict[str, Any] | None:
    row = await pool.fetchrow("SELECT * FROM payments WHERE payment_key = $1", key)
    return dict(row) if row else None


def with_settings(settings: Settings, **changes: Any) -> Settings:
    return replace(settings, **changes)


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Every `worldgate` log line written while the test runs, as the JSON the server writes."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("worldgate")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
