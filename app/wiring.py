"""`create_app(settings)`: the Starlette app, its x402 gate, and a lifespan that opens every service.

Startup I/O (migrations, the pool, Redis, each chain's identity check, the facilitator's supported
kinds, from which the offers are built) runs in the lifespan, never in the first request.
`app_from_env` is the factory uvicorn imports in each worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
from solders.keypair import Keypair
from starlette.applications import Starlette
from starlette.routing import Route

import ledger
from adapters import (
    DATA_DIR,
    Adapter,
    CacheTier,
    DataTier,
    Fetcher,
    Registry,
    ReplayServer,
    Scheduler,
    Sharing,
    live_coverage,
    recorded_coverage,
)
from adapters.history import ColdStore, HotLayer, Recorder
from adapters.sources import all_adapters
from app.edge import discovery
from app.edge.abuse import AbuseGuard, CappedHttpToolsProtocol, ClientAddress
from app.edge.access_log import AccessLog
from app.edge.admin import dashboard
from app.edge.admin.address_guard import AddressGuard
from app.edge.admin.api import AdminApi
from app.edge.admin.auth import AdminAuth
from app.edge.admin.history import HistoryAdminApi
from app.edge.admin.live import LiveAdminApi
from app.edge.admin.matrix import source_matrix
from app.edge.admin.refunds import RefundApi
from app.edge.cors import Cors
from app.edge.gate import PaymentGate, Services
from app.edge.health import ChainProbes, chain_rpcs
from app.edge.history_routes import HistoryApi
from app.edge.live_routes import LiveApi
from app.edge.proxy import ProxyHeaders, ScrapeGuard
from app.edge.rate_limiter import Limit, RateLimiter
from app.edge.routes import EXCEPTION_HANDLERS, Api
from app.mcp.server import McpServer
from app.runtime import metrics
from app.runtime.metrics import MetricsEndpoint, RequestMetrics
from app.runtime.settings import SETTINGS_JSON_VAR, Settings, SettingsError, load_settings, settings_from_json
from app.runtime.tracing import Tracing
from app.usecases import batch_setup, holders
from app.usecases.controls import Controls
from app.usecases.history_queries import HistoryBounds
from app.usecases.history_reads import HistoryReads
from app.usecases.live_feeds import LiveFeeds
from app.usecases.live_pricing import LiveTerms
from app.usecases.pricing import Pricing
from app.usecases.reconcile import Reconciler, auditors_for, chains_of, every
from ledger import operator
from ledger.operator import listening
from payments import (
    EvmRpc,
    ExactEvmScheme,
    ExactSvmScheme,
    Facilitator,
    LocalFacilitator,
    NetworkTerms,
    Relayer,
    RemoteFacilitator,
    SupportedResponse,
    SvmRpc,
)
from payments.facilitator.local import Scheme
from payments.jsonrpc import JsonRpc

log = logging.getLogger("worldgate")
# The numbered SQL files: the top-level `migrations` package's data, so an installed wheel carries them
# (a pathlib.Path in a checkout or an unzipped install, which is every install pip and uv make).
MIGRATIONS_DIR: Traversable = resources.files("migrations")


def network_terms(settings: Settings, supported: SupportedResponse) -> list[NetworkTerms]:
    """What each configured network's offers say. The facilitator must support `exact` v2 there; a
    Solana offer names the fee payer the facilitator advertises (ours, or a remote's)."""
    kinds = {k.network: k for k in supported.kinds if k.scheme == "exact" and k.x402_version == 2}
    terms = []
    if settings.evm is not None:
        evm = settings.evm
        exact = NetworkTerms(
            network=evm.network,
            asset=evm.asset,
            pay_to=evm.pay_to,
            decimals=evm.decimals,
            extra={"name": evm.eip712_name, "version": evm.eip712_version},
            max_timeout_seconds=settings.max_timeout_seconds,
        )
        if "exact" in settings.schemes:
            if evm.network not in kinds:
                raise SettingsError(f"the facilitator does not support exact payments on {evm.network}")
            terms.append(exact)
        if batch_setup.offered(settings):
            terms.append(batch_setup.terms(settings, exact))
    if settings.svm is not None and "exact" in settings.schemes:
        svm = settings.svm
        fee_payer = (kinds[svm.network].extra or {}).get("feePayer") if svm.network in kinds else None
        if not isinstance(fee_payer, str):
            raise SettingsError(f"the facilitator advertises no fee payer for exact payments on {svm.network}")
        terms.append(
            NetworkTerms(
                network=svm.network,
                asset=svm.asset,
                pay_to=svm.pay_to,
                decimals=svm.decimals,
                extra={"feePayer": fee_payer},
                max_timeout_seconds=settings.max_timeout_seconds,
            )
        )
    if not terms:
        raise SettingsError("no payment network is configured: `worldgate serve` starts the local devnets when none is")
    return terms


def solana_keypair(secret: str) -> Keypair:
    """A fee payer key as base58 (Phantom's export) or solana-keygen's JSON byte array."""
    text = secret.strip()
    try:
        return Keypair.from_bytes(bytes(json.loads(text))) if text.startswith("[") else Keypair.from_base58_string(text)
    except (ValueError, TypeError):
        raise SettingsError("the Solana fee payer key is neither base58 nor a JSON byte array of 64") from None


async def _evm_scheme(settings: Settings, pool: Any, rpcs: list[JsonRpc]) -> ExactEvmScheme:
    evm = settings.evm
    assert evm is not None and evm.rpc_url and evm.relayer_key
    rpc = EvmRpc(evm.rpc_url, timeout_s=evm.rpc_timeout_s)
    rpcs.append(rpc)
    served_chain = await rpc.chain_id()
    if served_chain != evm.chain_id:
        raise SettingsError(f"WORLDGATE_EVM_RPC_URL serves chain {served_chain}, not {evm.network}")
    relayer = Relayer(
        rpc,
        evm.relayer_key,
        evm.chain_id,
        gas_limit=evm.gas_limit,
        # Several workers or replicas may share the key: serialize its broadcasts in Postgres.
        shared_lock=lambda address: ledger.locks.advisory_lock(pool, f"relayer:{evm.chain_id}:{address.lower()}"),
    )
    return ExactEvmScheme(evm.network, rpc, relayer, receipt_timeout_s=evm.receipt_timeout_s)


async def _svm_scheme(settings: Settings, rpcs: list[JsonRpc]) -> ExactSvmScheme:
    svm = settings.svm
    assert svm is not None and svm.rpc_url and svm.fee_payer_key
    rpc = SvmRpc(svm.rpc_url, timeout_s=svm.rpc_timeout_s)
    rpcs.append(rpc)
    genesis = await rpc.request("getGenesisHash", [])
    if not isinstance(genesis, str) or f"solana:{genesis[:32]}" != svm.network:
        raise SettingsError(f"WORLDGATE_SVM_RPC_URL serves genesis {genesis!r}, not {svm.network}")
    return ExactSvmScheme(
        svm.network,
        rpc,
        solana_keypair(svm.fee_payer_key),
        confirm_timeout_s=svm.confirm_timeout_s,
        compute_units_max=svm.compute_units_max,
        priority_fee_lamports_max=svm.priority_fee_lamports_max,
    )


async def build_facilitator(settings: Settings, pool: Any) -> Facilitator:
    """The remote facilitator if X402_FACILITATOR_URL is set, else the local one over every configured chain."""
    if settings.facilitator_url:
        headers = {"authorization": settings.facilitator_auth} if settings.facilitator_auth else {}
        return RemoteFacilitator(
            settings.facilitator_url,
            headers=headers,
            verify_timeout_s=settings.facilitator_verify_timeout_s,
            settle_timeout_s=settings.facilitator_settle_timeout_s,
        )
    rpcs: list[JsonRpc] = []
    try:
        schemes: list[Scheme] = []
        if settings.evm is not None:
            schemes.append(await _evm_scheme(settings, pool, rpcs))
        if settings.svm is not None:
            schemes.append(await _svm_scheme(settings, rpcs))
    except BaseException:
        for rpc in rpcs:
            await rpc.close()
        raise
    return LocalFacilitator(schemes, rpcs)


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(
    settings: Settings,
    *,
    registry: Registry | None = None,
    adapters: Mapping[str, Adapter] | None = None,
    data_dir: Path | None = None,
    tracing: Tracing | None = None,
) -> Starlette:
    """The app for `settings`; `tracing` (tests: an in-memory exporter) else OTEL_EXPORTER_OTLP_ENDPOINT's, if set."""
    if not settings.database_url or not settings.redis_url:
        raise SettingsError("DATABASE_URL and REDIS_URL must be resolved before the app is built")
    if registry is None:
        try:
            intervals = settings.catalog.source_intervals
            registry = Registry(
                sharing={k: Sharing(v) for k, v in settings.stream_sharing.items()}, intervals=intervals
            )
        except ValueError as exc:
            raise SettingsError(f"WORLDGATE_STREAM_SHARING or WORLDGATE_SOURCE_INTERVALS: {exc}") from None
    base_registry = registry  # the settings' sharing; the operator's changes (in Postgres) apply over it
    adapters = adapters if adapters is not None else all_adapters()
    # replayed upstreams answer only where something was recorded: point reads elsewhere are refused unquoted
    replayed = settings.upstream_replay_url is not None or settings.replay_upstreams
    coverage = recorded_coverage() if replayed else live_coverage
    services = Services(
        coverage=coverage,
        idempotency_ttl_s=settings.idempotency_ttl_s,
        # a retry waits for the first attempt with its payment id at most as long as that one can take
        settle_wait_s=settings.facilitator_verify_timeout_s + settings.facilitator_settle_timeout_s + 30,
    )
    networks = [chain.network for chain in (settings.evm, settings.svm) if chain is not None]
    info = {
        "networks": networks,
        "facilitator": "remote" if settings.facilitator_url else "local",
    }
    probes = ChainProbes(
        chain_rpcs(settings), timeout_s=settings.health_rpc_timeout_s, cache_s=settings.health_rpc_cache_s
    )
    api = Api(registry, services, info=info, chains=probes, scheduler=settings.scheduler)
    kept = settings.history
    bounds = HistoryBounds(kept.range_days_max, kept.snapshots_max, kept.block_snapshots, settings.response_bytes_max)
    history = HistoryReads(lambda: api.registry, services, bounds)  # the time machine's reads
    mcp = McpServer(api, services, settings, history)  # the tools at /mcp: the same reads, the same checkout
    live = (  # live feeds: frames from the tier's fetches, fanned out here and to the other replicas
        LiveFeeds(settings.live, lambda: api.registry, prefix=settings.cache_prefix, scheduler=settings.scheduler)
        if settings.live.enabled
        else None
    )
    windows = LiveTerms(settings.live.window_s, settings.live.price_tiers) if live is not None else None
    terms_holder: list[NetworkTerms] = []

    def apply_sharing(overrides: dict[str, str]) -> None:
        """Swap in the registry view and prices an operator's sharing change implies (all in this worker)."""
        shared = base_registry.with_sharing({k: Sharing(v) for k, v in overrides.items()})
        pricing = Pricing(
            shared,
            terms_holder,
            settings.price_tiers,
            settings.route_prices,
            coverage=coverage,
            history=bounds,
            live=windows,
        )
        api.registry, services.pricing = shared, pricing
        if services.tier is not None:
            services.tier.registry = shared

    limiter = RateLimiter(prefix=settings.cache_prefix, sync_interval_s=settings.limits.sync_interval_s)
    payer_limit = Limit.parse("payer", settings.limits.payer)
    if payer_limit is not None:

        async def payer_limited(payer: str, sends_transaction: bool) -> int | None:
            # An attempt that has our relayer send a transaction is counted in Redis at once, exact across workers
            # and replicas; a voucher (a signature check and a ledger row) is counted as the per-address limits
            # are, in this worker and shared in the background: measured, the round trip was ~10% of a voucher's
            # gateway CPU.
            if sends_transaction:
                return await limiter.hit_shared(payer_limit, payer)
            return limiter.hit(payer_limit, payer)

        services.payer_limited = payer_limited
    admin_auth = AdminAuth(settings.admin)
    tracing = tracing or Tracing.from_endpoint(settings.production.otlp_endpoint)  # None: no tracing code runs
    admin = AdminApi(
        admin_auth,
        services,
        lambda: base_registry,
        lambda: source_matrix(api.registry, services.pricing, services.tier),
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        assert settings.database_url and settings.redis_url
        if settings.auto_migrate:
            await ledger.migrate(settings.database_url, MIGRATIONS_DIR)
        async with contextlib.AsyncExitStack() as stack:
            if tracing is not None:
                stack.push_async_callback(tracing.shutdown)  # last: the spans of everything that closes before
            pool = await ledger.create_pool(settings.database_url)
            stack.push_async_callback(pool.close)
            stack.push_async_callback(holders.retire, pool)  # after the drain: this process's claim lease ends
            redis = aioredis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
            stack.push_async_callback(redis.aclose)
            facilitator = await build_facilitator(settings, pool)
            stack.push_async_callback(facilitator.close)
            terms_holder[:] = network_terms(settings, await facilitator.supported())
            services.pricing = Pricing(
                registry,
                terms_holder,
                settings.price_tiers,
                settings.route_prices,
                coverage=coverage,
                history=bounds,
                live=windows,
            )
            replay_url = settings.upstream_replay_url
            if replay_url is None and settings.replay_upstreams:
                replay = ReplayServer().start()  # serve runs one for all its workers; this is for a bare app
                stack.callback(replay.stop)
                replay_url = replay.url
            http = httpx.AsyncClient(limits=httpx.Limits(max_connections=32))
            stack.push_async_callback(http.aclose)
            fetcher = Fetcher(http, replay_url=replay_url, timeout_s=settings.upstream_timeout_s)
            history.store = ColdStore(pool)
            recorder, hot = None, None
            if kept.record:  # every upstream fetch recorded; flushed on a schedule, and once more at shutdown
                hot = HotLayer(redis, prefix=f"{settings.cache_prefix}hist:", window_s=kept.hot_window_s)
                recorder = Recorder(
                    history.store, hot, base_registry.every(), flush_s=kept.flush_s, retention_days=kept.retention_days
                )
                recorder.start()
                stack.push_async_callback(recorder.stop)  # after the scheduler stops, before Redis and the pool
            on_fetch = recorder.on_fetch if recorder is not None else None
            cache = CacheTier(
                redis,
                fetcher,
                prefix=settings.cache_prefix,
                observe=metrics.observe_cache,
                on_fetch=live.fetch_hook(on_fetch) if live is not None else on_fetch,
            )
            tier = DataTier(registry, adapters, cache, data_dir or DATA_DIR)
            if live is not None:
                await live.open(redis, tier, hot)
                stack.push_async_callback(live.close)  # after the scheduler stops, before Redis closes
            if settings.scheduler:
                scheduler = Scheduler(
                    tier,
                    on_refresh=live.on_refresh if live is not None else None,
                    grid_prewarm=settings.catalog.grid_prewarm,
                )
                scheduler.start()
                stack.push_async_callback(scheduler.stop)
            services.pool, services.facilitator, services.tier, services.replay_url = (
                pool if tracing is None else tracing.pool(pool),  # the checkout's claim and ledger spans
                facilitator if tracing is None else tracing.facilitator(facilitator),  # verify, settle spans
                tier,
                replay_url,
            )
            api.redis = redis
            limiter.start(redis)
            stack.push_async_callback(limiter.stop)
            controls = Controls(pool, apply_sharing)
            await controls.reload()  # bans and sharing are in force before the first request
            services.banned = controls.is_banned
            admin.controls = controls
            controls.start()
            stack.push_async_callback(controls.stop)
            await stack.enter_async_context(listening(settings.database_url, controls.changed))
            auditors, audit_rpcs = auditors_for(chains_of(settings))
            for rpc in audit_rpcs:
                stack.push_async_callback(rpc.close)
            reconciler = Reconciler(
                pool,
                auditors,
                settings.reconcile,
                write_ahead=not settings.facilitator_url,
                claim_interval_s=settings.batch.claim_interval_s,
            )

            async def reconcile_now(trigger: str) -> dict[str, Any]:
                return (await reconciler.run(trigger)).as_dict()

            admin.reconcile = reconcile_now
            if batch_setup.offered(settings):
                batch = batch_setup.build(settings, pool, services)
                stack.push_async_callback(batch.rpc.close)
                stack.push_async_callback(batch.checkout.close)  # the last delivery marks, before the pool closes
                services.batch = batch.checkout
                settling = asyncio.create_task(batch.settler.run(), name="batch-settler")
                stack.push_async_callback(_cancel, settling)
            if settings.reconcile.interval_s > 0:
                scheduled = asyncio.create_task(every(reconciler, settings.reconcile.interval_s), name="reconcile")
                stack.push_async_callback(_cancel, scheduled)
            await stack.enter_async_context(mcp.run())  # last in, first out: MCP calls end before the pool closes
            try:
                yield
            finally:
                services.facilitator = None

    async def live_gauges() -> dict[str, Any]:
        state: dict[str, Any] = await operator.gauges(services.pool) if services.pool is not None else {}
        if services.tier is not None:
            now = time.time()
            sources = sorted(api.registry.by_adapter())
            state["circuits"] = {
                s: (await services.tier.cache.source_status(s)).circuit(now) == "open" for s in sources
            }
        return state

    # tokenless scrapes only from this machine, never relayed by a proxy (app/edge/proxy.py)
    scrape = Route("/metrics", ScrapeGuard(MetricsEndpoint(settings.metrics_token, admin_auth.check, live_gauges)))
    found = discovery.routes(services, lambda: api.registry, settings)
    routes = [*api.routes(), *HistoryApi(history).routes(), mcp.route(), *admin.routes(), *RefundApi(admin).routes()]
    routes += [*HistoryAdminApi(admin, history).routes(), *dashboard.routes(admin_auth)]
    if live is not None:
        client = ClientAddress(settings.limits.trusted_proxies)
        routes += [*LiveApi(live, services, public_url=settings.public_url, client=client).routes()]
        routes += [*LiveAdminApi(admin, live).routes()]
    routes += [*found, scrape]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS)
    if tracing is not None:
        app.add_middleware(tracing.handler)  # inside the gate: the route's own work
    app.add_middleware(PaymentGate, services=services, settings=settings)
    # caps and per-address limits before the gate decodes anything; per-payer limits inside the checkout
    app.add_middleware(AbuseGuard, services=services, limiter=limiter, settings=settings.limits)
    app.add_middleware(Cors, origins=settings.cors_origins)  # preflights answered before the guard counts them
    app.add_middleware(RequestMetrics)  # counts every answer, the gate's too, and binds the request id
    if settings.production.access_log_every:  # outside the metrics: its line carries the request id they echo
        app.add_middleware(AccessLog, every=settings.production.access_log_every, services=services)
    if tracing is not None:
        app.add_middleware(tracing.requests)
    # Banned addresses, as the forwarded client address says (inside ProxyHeaders): refused before anything counts.
    app.add_middleware(
        AddressGuard, banned=lambda host: admin.controls is not None and admin.controls.address_banned(host)
    )
    app.add_middleware(ProxyHeaders, trusted=settings.limits.trusted_proxies)  # outermost: the client, once
    app.state.settings = settings
    app.state.services = services
    app.state.limiter = limiter
    app.state.live = live
    return app


def app_from_env() -> Starlette:
    """uvicorn's factory, in each worker: the settings `worldgate serve` validated and handed over as JSON,
    else (uvicorn run by hand, the fault suite) the settings the environment gives."""
    from app.runtime.logs import configure_logging

    handed = os.environ.pop(SETTINGS_JSON_VAR, None)  # read once; nothing this worker starts inherits it
    settings = settings_from_json(handed) if handed else load_settings()
    configure_logging(settings.log_level)
    # the transport's head cap, set before the first connection (httptools has no cap of its own)
    CappedHttpToolsProtocol.head_bytes_max = 2 * settings.limits.header_bytes_max
    return create_app(settings)
