"""`create_app(settings)`: the Starlette app, its x402 gate, and a lifespan that opens every service.

Startup I/O (migrations, the pool, Redis, the chain-id check) runs in the lifespan, never in the
first request. `app_from_env` is the factory uvicorn imports in each worker.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from starlette.applications import Starlette

import ledger
from adapters import Registry, StreamReader
from payments import (
    EvmRpc,
    ExactEvmScheme,
    Facilitator,
    LocalFacilitator,
    NetworkTerms,
    Relayer,
    RemoteFacilitator,
)

from .gate import PaymentGate, Services
from .pricing import Pricing
from .routes import Api
from .settings import EvmSettings, Settings, SettingsError, load_settings

log = logging.getLogger("worldgate")
MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"


def network_terms(settings: Settings) -> list[NetworkTerms]:
    if settings.evm is None:
        raise SettingsError("no chain is configured: `worldgate serve` starts the local devnet when none is")
    evm = settings.evm
    return [
        NetworkTerms(
            network=evm.network,
            asset=evm.asset,
            pay_to=evm.pay_to,
            decimals=evm.decimals,
            extra={"name": evm.eip712_name, "version": evm.eip712_version},
            max_timeout_seconds=settings.max_timeout_seconds,
        )
    ]


async def build_facilitator(settings: Settings, pool: Any) -> tuple[Facilitator, str | None]:
    """The remote facilitator if X402_FACILITATOR_URL is set, else the local one; and the relayer address."""
    if settings.facilitator_url:
        headers = {"authorization": settings.facilitator_auth} if settings.facilitator_auth else {}
        remote = RemoteFacilitator(
            settings.facilitator_url,
            headers=headers,
            verify_timeout_s=settings.facilitator_verify_timeout_s,
            settle_timeout_s=settings.facilitator_settle_timeout_s,
        )
        return remote, None
    evm: EvmSettings | None = settings.evm
    assert evm is not None and evm.rpc_url and evm.relayer_key
    rpc = EvmRpc(evm.rpc_url, timeout_s=evm.rpc_timeout_s)
    try:
        served_chain = await rpc.chain_id()
    except Exception:
        await rpc.close()
        raise
    if served_chain != evm.chain_id:
        await rpc.close()
        raise SettingsError(f"WORLDGATE_EVM_RPC_URL serves chain {served_chain}, not {evm.network}")
    relayer = Relayer(
        rpc,
        evm.relayer_key,
        evm.chain_id,
        gas_limit=evm.gas_limit,
        # Several workers or replicas may share the key: serialize its broadcasts in Postgres.
        shared_lock=lambda address: ledger.locks.advisory_lock(pool, f"relayer:{evm.chain_id}:{address.lower()}"),
    )
    scheme = ExactEvmScheme(evm.network, rpc, relayer, receipt_timeout_s=evm.receipt_timeout_s)
    return LocalFacilitator([scheme], [rpc]), relayer.address


def create_app(
    settings: Settings,
    *,
    registry: Registry | None = None,
    reader: StreamReader | None = None,
) -> Starlette:
    if not settings.database_url or not settings.redis_url:
        raise SettingsError("DATABASE_URL and REDIS_URL must be resolved before the app is built")
    registry = registry or Registry()
    reader = reader or StreamReader(registry)
    pricing = Pricing(registry, network_terms(settings), settings.price_tiers, settings.route_prices)
    services = Services(settlement_mode=settings.settlement_mode)
    api = Api(
        registry,
        pricing,
        reader,
        services,
        info={
            "networks": [t.network for t in pricing.terms],
            "facilitator": "remote" if settings.facilitator_url else "local",
            "settlement_mode": settings.settlement_mode,
        },
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        assert settings.database_url and settings.redis_url
        if settings.auto_migrate:
            await ledger.migrate(settings.database_url, MIGRATIONS_DIR)
        pool = await ledger.create_pool(settings.database_url)
        redis = aioredis.from_url(settings.redis_url)
        try:
            facilitator, relayer_address = await build_facilitator(settings, pool)
        except BaseException:
            await redis.aclose()
            await pool.close()
            raise
        services.pool, services.facilitator, services.relayer_address = pool, facilitator, relayer_address
        api.redis = redis
        try:
            yield
        finally:
            services.facilitator = None
            await facilitator.close()
            await redis.aclose()
            await pool.close()

    app = Starlette(routes=api.routes(), lifespan=lifespan)
    app.add_middleware(PaymentGate, pricing=pricing, services=services, settings=settings)
    app.state.pricing = pricing
    app.state.services = services
    return app


def app_from_env() -> Starlette:
    """uvicorn's factory: settings from the environment, which `worldgate serve` has resolved."""
    from .logs import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
