"""The settings object: frozen pydantic models, each field marked with where it is read from.

`From` on a field names its environment variable and TOML key; `load.py` reads them. Built from values
(`Settings(...)`, `model_validate_json`, `replace`) a settings object reads nothing from the process.
"""

from __future__ import annotations

import ipaddress
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from adapters import Sharing
from payments.networks import KNOWN_USDC, SOLANA_DEVNET, evm_chain_id

from .catalog import CatalogSettings
from .fields import From
from .fields import Frozen as _Frozen
from .history import HistorySettings
from .live import LiveSettings
from .production import ProductionSettings

SHARING_STATES = tuple(str(s) for s in Sharing)
DEFAULT_PRICE_TIERS: dict[str, str | int] = {"basic": "$0.001", "standard": "$0.002", "premium": "$0.01"}
ADMIN_ALGORITHMS = ("HS256", "RS256", "ES256")
ADMIN_SECRET_BYTES_MIN = 32
RATE_LIMIT_OFF = ("off", "none", "0", "false", "")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _known_chain(data: Any, kind: str, default_network: str) -> Any:
    """Fill the network's USDC terms in, and refuse what cannot be paid on (a chain without payTo)."""
    if not isinstance(data, dict):
        return data
    network = str(data.get("network") or default_network)
    var = f"WORLDGATE_{kind.upper()}"
    if kind == "evm" and evm_chain_id(network) is None:
        raise SettingsError(f"{var}_NETWORK {network!r} is not a CAIP-2 eip155 id like eip155:8453")
    if kind == "svm" and not network.startswith("solana:"):
        raise SettingsError(f"{var}_NETWORK {network!r} is not a CAIP-2 solana id like {SOLANA_DEVNET}")
    if not data.get("pay_to"):
        what = "a chain is configured (the address" if kind == "evm" else "Solana is configured (the wallet"
        raise SettingsError(f"{var}_PAY_TO is required once {what} that gets paid)")
    known = KNOWN_USDC.get(network)
    filled = {"network": network, **{k: v for k, v in data.items() if v is not None}}
    if known is not None:
        filled = {"asset": known.address, **filled}
        if kind == "evm":
            filled = {"eip712_name": known.eip712_name, "eip712_version": known.eip712_version, **filled}
    if kind == "evm" and not all(filled.get(k) for k in ("asset", "eip712_name", "eip712_version")):
        raise SettingsError(f"{network} has no known USDC: set {var}_ASSET, {var}_EIP712_NAME and {var}_EIP712_VERSION")
    if kind == "svm" and not filled.get("asset"):
        raise SettingsError(f"{network} has no known USDC: set {var}_ASSET (the SPL mint)")
    return filled


class EvmSettings(_Frozen):
    network: Annotated[str, From("WORLDGATE_EVM_NETWORK", "evm.network")] = "eip155:84532"
    rpc_url: Annotated[str | None, From("WORLDGATE_EVM_RPC_URL", "evm.rpc_url")] = None  # None: a remote facilitator
    asset: Annotated[str, From("WORLDGATE_EVM_ASSET", "evm.asset")]
    pay_to: Annotated[str, From("WORLDGATE_EVM_PAY_TO", "evm.pay_to")]
    eip712_name: Annotated[str, From("WORLDGATE_EVM_EIP712_NAME", "evm.eip712_name")]
    eip712_version: Annotated[str, From("WORLDGATE_EVM_EIP712_VERSION", "evm.eip712_version")]
    decimals: Annotated[int, From("WORLDGATE_EVM_DECIMALS", "evm.decimals"), Field(ge=0)] = 6
    relayer_key: Annotated[
        str | None, From("WORLDGATE_EVM_RELAYER_KEY", "evm.relayer_key_file", secret=True), Field(repr=False)
    ] = None
    gas_limit: Annotated[int, From("WORLDGATE_EVM_GAS_LIMIT", "evm.gas_limit"), Field(ge=21_000)] = 200_000
    receipt_timeout_s: Annotated[
        float, From("WORLDGATE_EVM_RECEIPT_TIMEOUT_S", "evm.receipt_timeout_s"), Field(gt=0)
    ] = 30.0
    rpc_timeout_s: Annotated[float, From("WORLDGATE_EVM_RPC_TIMEOUT_S", "evm.rpc_timeout_s"), Field(gt=0)] = 10.0
    # signs batch-settlement claims and refunds (the channels' receiverAuthorizer); unset: the relayer key
    receiver_authorizer_key: Annotated[
        str | None,
        From("WORLDGATE_EVM_RECEIVER_AUTHORIZER_KEY", "evm.receiver_authorizer_key_file", secret=True),
        Field(repr=False),
    ] = None

    @model_validator(mode="before")
    @classmethod
    def _usdc_terms(cls, data: Any) -> Any:
        return _known_chain(data, "evm", "eip155:84532")

    @property
    def chain_id(self) -> int:
        chain_id = evm_chain_id(self.network)
        assert chain_id is not None
        return chain_id


class SvmSettings(_Frozen):
    network: Annotated[str, From("WORLDGATE_SVM_NETWORK", "svm.network")] = SOLANA_DEVNET
    rpc_url: Annotated[str | None, From("WORLDGATE_SVM_RPC_URL", "svm.rpc_url")] = None  # None: a remote facilitator
    asset: Annotated[str, From("WORLDGATE_SVM_ASSET", "svm.asset")]  # the SPL mint
    pay_to: Annotated[str, From("WORLDGATE_SVM_PAY_TO", "svm.pay_to")]  # its associated token account is paid
    decimals: Annotated[int, From("WORLDGATE_SVM_DECIMALS", "svm.decimals"), Field(ge=0)] = 6
    fee_payer_key: Annotated[  # base58 secret, or solana-keygen's JSON array
        str | None, From("WORLDGATE_SVM_FEE_PAYER_KEY", "svm.fee_payer_key_file", secret=True), Field(repr=False)
    ] = None
    confirm_timeout_s: Annotated[
        float, From("WORLDGATE_SVM_CONFIRM_TIMEOUT_S", "svm.confirm_timeout_s"), Field(gt=0)
    ] = 60.0
    rpc_timeout_s: Annotated[float, From("WORLDGATE_SVM_RPC_TIMEOUT_S", "svm.rpc_timeout_s"), Field(gt=0)] = 10.0
    compute_units_max: Annotated[int, From("WORLDGATE_SVM_COMPUTE_UNITS_MAX", "svm.compute_units_max"), Field(ge=1)] = (
        200_000
    )
    priority_fee_lamports_max: Annotated[
        int, From("WORLDGATE_SVM_PRIORITY_FEE_LAMPORTS_MAX", "svm.priority_fee_lamports_max"), Field(ge=0)
    ] = 50_000

    @model_validator(mode="before")
    @classmethod
    def _usdc_terms(cls, data: Any) -> Any:
        return _known_chain(data, "svm", SOLANA_DEVNET)


class AdminSettings(_Frozen):
    """Who may use /admin: bearer JWTs with a pinned algorithm, a required `exp` and a checked `aud`."""

    algorithm: Annotated[str, From("WORLDGATE_ADMIN_JWT_ALGORITHM", "admin.jwt_algorithm")] = "HS256"
    secret: Annotated[  # HS256: the shared secret
        str | None, From("WORLDGATE_ADMIN_JWT_SECRET", "admin.jwt_secret_file", secret=True), Field(repr=False)
    ] = None
    public_key: Annotated[  # RS256/ES256: PEM of the key tokens are checked with
        str | None,
        From("WORLDGATE_ADMIN_JWT_PUBLIC_KEY", "admin.jwt_public_key_file", secret=True),
        Field(repr=False),
    ] = None
    audience: Annotated[str, From("WORLDGATE_ADMIN_JWT_AUDIENCE", "admin.jwt_audience")] = "worldgate-admin"

    @field_validator("algorithm")
    @classmethod
    def _pinned(cls, value: str) -> str:
        if value.upper() not in ADMIN_ALGORITHMS:
            raise ValueError(f"must be one of {', '.join(ADMIN_ALGORITHMS)}")
        return value.upper()

    @model_validator(mode="after")
    def _key_fits_algorithm(self) -> AdminSettings:
        if self.algorithm == "HS256" and self.secret is not None and len(self.secret.encode()) < ADMIN_SECRET_BYTES_MIN:
            raise SettingsError(f"WORLDGATE_ADMIN_JWT_SECRET must be at least {ADMIN_SECRET_BYTES_MIN} bytes")
        if self.algorithm != "HS256" and self.secret is not None:
            raise SettingsError(
                f"{self.algorithm} admin tokens are checked with WORLDGATE_ADMIN_JWT_PUBLIC_KEY, not a secret"
            )
        if self.algorithm == "HS256" and self.public_key is not None:
            raise SettingsError("a public key is for RS256/ES256: set WORLDGATE_ADMIN_JWT_ALGORITHM too")
        return self

    @property
    def configured(self) -> bool:
        return bool(self.secret if self.algorithm == "HS256" else self.public_key)


class ReconcileSettings(_Frozen):
    # how often the server reconciles on its own; 0: only on demand
    interval_s: Annotated[float, From("WORLDGATE_RECONCILE_INTERVAL_S", "reconcile.interval_s"), Field(ge=0)] = 300.0
    # leave payments younger than this to the request that holds them (0, tests only: judge every one at once)
    grace_s: Annotated[float, From("WORLDGATE_RECONCILE_GRACE_S", "reconcile.grace_s"), Field(ge=0)] = 120.0
    # settled payments re-checked against the chain per run (`--all`: every one)
    settled_sample: Annotated[
        int, From("WORLDGATE_RECONCILE_SETTLED_SAMPLE", "reconcile.settled_sample"), Field(ge=0)
    ] = 50


SCHEMES = ("exact", "batch-settlement")


class BatchSettings(_Frozen):
    """x402 `batch-settlement` on EVM: vouchers booked in the request, claimed and swept on timers."""

    # how often accepted vouchers are claimed on chain (one transaction for many channels), and swept to payTo
    claim_interval_s: Annotated[
        float, From("WORLDGATE_BATCH_CLAIM_INTERVAL_S", "batch.claim_interval_s"), Field(gt=0)
    ] = 60.0
    settle_interval_s: Annotated[
        float, From("WORLDGATE_BATCH_SETTLE_INTERVAL_S", "batch.settle_interval_s"), Field(gt=0)
    ] = 300.0
    # accepted but unswept value (atomic units, every channel together) past which new vouchers wait; unset: no cap
    max_unsettled: Annotated[int | None, From("WORLDGATE_BATCH_MAX_UNSETTLED", "batch.max_unsettled"), Field(gt=0)] = (
        None
    )
    # the smallest deposit asked of a payer (atomic units; offers say it as minDeposit): one deposit, many requests
    min_deposit: Annotated[int, From("WORLDGATE_BATCH_MIN_DEPOSIT", "batch.min_deposit"), Field(gt=0)] = 1_000_000
    # the channels' withdrawDelay offered to payers (seconds; the contract takes 900 to 2592000)
    withdraw_delay_s: Annotated[
        int, From("WORLDGATE_BATCH_WITHDRAW_DELAY_S", "batch.withdraw_delay_s"), Field(ge=900, le=2_592_000)
    ] = 900


def _rate(name: str) -> From:
    return From(f"WORLDGATE_RATE_LIMIT_{name.upper()}", f"limits.{name}", keep_empty=True)


class LimitSettings(_Frozen):
    """Abuse controls (app/edge/abuse.py): request size caps and per-client rate limits.

    Rates use slowapi's syntax ("120/minute", "5/second;100/minute"); None turns a limit off.
    The defaults are for one client at human or agent pace; a load test from one address needs them raised.
    """

    free: Annotated[str | None, _rate("free")] = "120/minute"  # per client IP, free routes
    quote: Annotated[str | None, _rate("quote")] = "600/minute"  # per client IP, every request to a paid route
    ops: Annotated[str | None, _rate("ops")] = "1200/minute"  # per client IP, /v1/health and /metrics
    payer: Annotated[str | None, _rate("payer")] = "300/minute"  # per payer address, payment attempts
    # peers (IPs or CIDRs) whose X-Forwarded-For is believed
    trusted_proxies: Annotated[tuple[str, ...], From("WORLDGATE_TRUSTED_PROXIES", "limits.trusted_proxies")] = ()
    # how often each worker adds its counts to the shared ones in Redis
    sync_interval_s: Annotated[float, From("WORLDGATE_RATE_LIMIT_SYNC_S", "limits.sync_interval_s"), Field(gt=0)] = 0.2
    headers_max: Annotated[int, From("WORLDGATE_HEADERS_MAX", "limits.headers_max"), Field(ge=16)] = 100
    # the request line and all header fields together (the transport cuts at 2x)
    header_bytes_max: Annotated[int, From("WORLDGATE_HEADER_BYTES_MAX", "limits.header_bytes_max"), Field(ge=4096)] = (
        16_384
    )
    # request bodies on free routes (paid routes take none)
    body_bytes_max: Annotated[int, From("WORLDGATE_BODY_BYTES_MAX", "limits.body_bytes_max"), Field(ge=1024)] = (
        1_048_576
    )

    @field_validator("free", "quote", "ops", "payer", mode="before")
    @classmethod
    def _rate_or_off(cls, value: Any) -> str | None:
        if value is None or value is False or str(value).strip().lower() in RATE_LIMIT_OFF:
            return None
        from limits import parse_many  # slowapi's parser: the syntax its users know

        text = str(value).strip()
        try:
            parse_many(text)
        except ValueError:
            raise ValueError(f'{text!r} is not a rate like "120/minute" or "5/second;100/minute"') from None
        return text

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> tuple[str, ...]:
        """IP addresses or CIDRs, as a list (TOML) or comma-separated text (env)."""
        items = value if isinstance(value, list | tuple) else str(value or "").split(",")
        found = []
        for item in filter(None, (str(i).strip() for i in items)):
            try:
                found.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR") from None
        return tuple(found)


# load_settings binds its sources (env, TOML) here for one construction; otherwise a Settings is built
# from its arguments alone, so tests, copies and workers never pick up the process's variables.
BOUND_SOURCES: ContextVar[tuple[PydanticBaseSettingsSource, ...] | None] = ContextVar("sources", default=None)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    host: Annotated[str, From("WORLDGATE_HOST", "server.host")] = "127.0.0.1"
    port: Annotated[int, From("WORLDGATE_PORT", "server.port"), Field(ge=0)] = 8402
    public_url: Annotated[str | None, From("WORLDGATE_PUBLIC_URL", "server.public_url")] = None
    workers: Annotated[int, From("WORLDGATE_WORKERS", "server.workers"), Field(ge=1)] = 1
    log_level: Annotated[str, From("WORLDGATE_LOG_LEVEL", "server.log_level")] = "info"
    database_url: Annotated[
        str | None, From("WORLDGATE_DATABASE_URL", "database.url", also=("DATABASE_URL",)), Field(repr=False)
    ] = None
    redis_url: Annotated[
        str | None, From("WORLDGATE_REDIS_URL", "redis.url", also=("REDIS_URL",)), Field(repr=False)
    ] = None
    state_dir: Annotated[Path, From("WORLDGATE_STATE_DIR", "server.state_dir")] = Path(".worldgate")
    auto_migrate: Annotated[bool, From("WORLDGATE_AUTO_MIGRATE", "server.auto_migrate")] = True
    max_timeout_seconds: Annotated[
        int, From("WORLDGATE_MAX_TIMEOUT_SECONDS", "payments.max_timeout_seconds"), Field(ge=30)
    ] = 300
    payment_header_bytes_max: Annotated[
        int, From("WORLDGATE_PAYMENT_HEADER_BYTES_MAX", "payments.payment_header_bytes_max"), Field(ge=1024)
    ] = 8192
    response_bytes_max: Annotated[
        int, From("WORLDGATE_RESPONSE_BYTES_MAX", "payments.response_bytes_max"), Field(ge=1024)
    ] = 4 * 1024 * 1024
    facilitator_url: Annotated[str | None, From("X402_FACILITATOR_URL", "payments.facilitator_url")] = None
    facilitator_auth: Annotated[str | None, From("WORLDGATE_FACILITATOR_AUTH", secret=True), Field(repr=False)] = None
    facilitator_verify_timeout_s: Annotated[
        float,
        From("WORLDGATE_FACILITATOR_VERIFY_TIMEOUT_S", "payments.facilitator_verify_timeout_s"),
        Field(gt=0),
    ] = 10.0
    facilitator_settle_timeout_s: Annotated[
        float,
        From("WORLDGATE_FACILITATOR_SETTLE_TIMEOUT_S", "payments.facilitator_settle_timeout_s"),
        Field(gt=0),
    ] = 60.0
    evm: EvmSettings | None = None  # with svm also None: run the local devnets and take their terms
    svm: SvmSettings | None = None
    # merged over DEFAULT_PRICE_TIERS; env pairs over the TOML table
    price_tiers: Annotated[dict[str, str | int], From("WORLDGATE_PRICE_TIERS", "pricing.tiers")] = Field(
        default_factory=lambda: dict(DEFAULT_PRICE_TIERS)
    )
    route_prices: Annotated[dict[str, str | int], From("WORLDGATE_ROUTE_PRICES", "pricing.routes")] = Field(
        default_factory=dict
    )
    # answer every adapter from its recorded payloads (no internet needed)
    replay_upstreams: Annotated[bool, From("WORLDGATE_REPLAY_UPSTREAMS", "upstreams.replay")] = False
    # a replay server already running (serve starts one for its workers)
    upstream_replay_url: Annotated[str | None, From("WORLDGATE_UPSTREAM_REPLAY_URL", "upstreams.replay_url")] = None
    upstream_timeout_s: Annotated[float, From("WORLDGATE_UPSTREAM_TIMEOUT_S", "upstreams.timeout_s"), Field(gt=0)] = (
        10.0
    )
    scheduler: Annotated[bool, From("WORLDGATE_SCHEDULER", "upstreams.scheduler")] = True  # keep streams warm
    # stream id → ok | maintenance | not_shared
    stream_sharing: Annotated[dict[str, str], From("WORLDGATE_STREAM_SHARING", "streams.sharing")] = Field(
        default_factory=dict
    )
    # Redis key prefix of the cache tier: deployments sharing one Redis keep apart
    cache_prefix: Annotated[str, From("WORLDGATE_CACHE_PREFIX", "redis.prefix")] = "wg:"
    admin: AdminSettings = Field(default_factory=AdminSettings)
    # how long a payment-identifier's delivery stays replayable
    idempotency_ttl_s: Annotated[
        float, From("WORLDGATE_IDEMPOTENCY_TTL_S", "payments.idempotency_ttl_s"), Field(gt=0)
    ] = 86_400.0
    # bearer for /metrics; unset: loopback only
    metrics_token: Annotated[
        str | None, From("WORLDGATE_METRICS_TOKEN", "metrics.token_file", secret=True), Field(repr=False)
    ] = None
    reconcile: ReconcileSettings = Field(default_factory=ReconcileSettings)
    # the x402 schemes offered: exact (one transfer per request, EVM and Solana) and batch-settlement (EVM vouchers)
    schemes: Annotated[tuple[str, ...], From("WORLDGATE_SCHEMES", "payments.schemes")] = SCHEMES
    batch: BatchSettings = Field(default_factory=BatchSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    history: HistorySettings = Field(default_factory=HistorySettings)
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)  # refresh intervals, grids kept warm
    live: LiveSettings = Field(default_factory=LiveSettings)  # live feeds: window, prices, backpressure, caps
    production: ProductionSettings = Field(default_factory=ProductionSettings)  # access log, drain, traces
    # browser origins that may read answers (CORS): "*", or a list of origins; empty or "off": no CORS headers
    cors_origins: Annotated[tuple[str, ...], From("WORLDGATE_CORS_ORIGINS", "server.cors_origins", keep_empty=True)] = (
        "*",
    )
    # how long health's chain RPC checks are reused, and how long each may take
    health_rpc_cache_s: Annotated[
        float, From("WORLDGATE_HEALTH_RPC_CACHE_S", "server.health_rpc_cache_s"), Field(ge=0)
    ] = 5.0
    health_rpc_timeout_s: Annotated[
        float, From("WORLDGATE_HEALTH_RPC_TIMEOUT_S", "server.health_rpc_timeout_s"), Field(gt=0)
    ] = 2.0

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        del env_settings, dotenv_settings, file_secret_settings  # the loader binds its own sources (load.py)
        return BOUND_SOURCES.get() or (init_settings,)

    @model_validator(mode="before")
    @classmethod
    def _unconfigured_chains(cls, data: Any) -> Any:
        """A chain with neither an RPC URL nor a payTo is not configured: the devnet supplies it."""
        if isinstance(data, dict):
            for chain in ("evm", "svm"):
                part = data.get(chain)
                if isinstance(part, dict) and not (part.get("rpc_url") or part.get("pay_to")):
                    data = {**data, chain: None}
        return data

    @field_validator("log_level")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()

    @field_validator("price_tiers", mode="before")
    @classmethod
    def _over_defaults(cls, value: Any) -> Any:
        return {**DEFAULT_PRICE_TIERS, **value} if isinstance(value, dict) else value

    @field_validator("stream_sharing")
    @classmethod
    def _sharing_states(cls, value: dict[str, str]) -> dict[str, str]:
        for stream_id, state in value.items():
            if state not in SHARING_STATES:
                raise SettingsError(f"sharing of {stream_id} is {state!r}: choose one of {', '.join(SHARING_STATES)}")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> tuple[str, ...]:
        """'*', or origins (scheme://host[:port]) as a list (TOML) or comma-separated text (env)."""
        items = value if isinstance(value, list | tuple) else str(value or "").split(",")
        origins = [str(i).strip().rstrip("/") for i in items if str(i).strip()]
        if [o.lower() for o in origins] in (["off"], ["none"]):
            return ()
        for origin in origins:
            parts = urlsplit(origin)
            if origin != "*" and (parts.scheme not in ("http", "https") or not parts.netloc or parts.path):
                raise ValueError(f"{origin!r} is not an origin like https://app.example or *")
        if "*" in origins and len(origins) > 1:
            raise ValueError("'*' allows every origin: list origins, or give * alone")
        return tuple(o if o == "*" else o.lower() for o in origins)

    @field_validator("schemes", mode="before")
    @classmethod
    def _schemes(cls, value: Any) -> tuple[str, ...]:
        """x402 schemes as a list (TOML) or comma-separated text (env); at least one, each one we build."""
        items = value if isinstance(value, list | tuple) else str(value or "").split(",")
        schemes = tuple(dict.fromkeys(str(i).strip() for i in items if str(i).strip()))
        unknown = [s for s in schemes if s not in SCHEMES]
        if unknown or not schemes:
            raise ValueError(f"{', '.join(unknown) or 'nothing'}: choose from {', '.join(SCHEMES)}")
        return schemes

    @field_validator("metrics_token")
    @classmethod
    def _long_enough(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @model_validator(mode="after")
    def _payment_header_fits(self) -> Settings:
        if self.limits.header_bytes_max <= self.payment_header_bytes_max:
            raise SettingsError(
                f"WORLDGATE_HEADER_BYTES_MAX ({self.limits.header_bytes_max}) must be more than"
                f" WORLDGATE_PAYMENT_HEADER_BYTES_MAX ({self.payment_header_bytes_max}):"
                " the payment header travels with the others"
            )
        return self

    @property
    def uses_devnet(self) -> bool:
        return self.evm is None and self.svm is None


Model = TypeVar("Model", bound=BaseModel)


def replace(model: Model, /, **changes: Any) -> Model:
    """A copy of a settings model with `changes`, validated as a new one is (the models are frozen)."""
    return type(model).model_validate({**dict(model), **changes})


# RPC providers put the API key in the path (Alchemy /v2/<key>, QuickNode /<token>/) or the query (?api-key=)
_TOKEN_LIKE = re.compile(r"^(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9_\-]{20,}$")
_SECRET_PARAM = re.compile(r"key|token|secret|auth|pass|sig|credential", re.IGNORECASE)


def redact_url(url: str | None) -> str:
    """A URL with its password, key-like path segments and secret query values replaced, for banners and logs."""
    if not url:
        return "-"
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password:
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    path = "/".join("***" if _TOKEN_LIKE.match(segment) else segment for segment in parts.path.split("/"))
    query = []
    for item in parts.query.split("&") if parts.query else []:
        name, sep, value = item.partition("=")
        hidden = sep and (_SECRET_PARAM.search(name) or _TOKEN_LIKE.match(value))
        query.append(f"{name}=***" if hidden else item)
    return urlunsplit(parts._replace(netloc=netloc, path=path, query="&".join(query)))
