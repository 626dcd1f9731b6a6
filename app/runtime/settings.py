"""Settings: one frozen object, read from environment variables over an optional TOML file.

Every variable is listed in the README. Secrets (relayer keys, facilitator auth, database
passwords) never appear in `repr`, the banner or errors, and keys come only from the environment
or key files, never from the TOML file, which tends to get committed.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from payments.networks import KNOWN_USDC, SOLANA_DEVNET, evm_chain_id

SETTLEMENT_MODES = ("sync",)
SHARING_STATES = (
    "ok",
    "maintenance",
    "not_shared",
)  # `upfront` and `deferred` are designed (DESIGN.md §3) but not built yet
DEFAULT_PRICE_TIERS: dict[str, str | int] = {"basic": "$0.001", "standard": "$0.002", "premium": "$0.01"}


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class EvmSettings:
    network: str
    rpc_url: str | None  # None: a remote facilitator does the chain work
    asset: str
    pay_to: str
    eip712_name: str
    eip712_version: str
    decimals: int = 6
    relayer_key: str | None = field(default=None, repr=False)
    gas_limit: int = 200_000
    receipt_timeout_s: float = 30.0
    rpc_timeout_s: float = 10.0

    @property
    def chain_id(self) -> int:
        chain_id = evm_chain_id(self.network)
        assert chain_id is not None
        return chain_id


@dataclass(frozen=True)
class SvmSettings:
    network: str
    rpc_url: str | None  # None: a remote facilitator does the chain work
    asset: str  # the SPL mint
    pay_to: str  # the wallet paid; tokens land in its associated token account
    decimals: int = 6
    fee_payer_key: str | None = field(default=None, repr=False)  # base58 secret, or solana-keygen's JSON array
    confirm_timeout_s: float = 60.0
    rpc_timeout_s: float = 10.0
    compute_units_max: int = 200_000
    priority_fee_lamports_max: int = 50_000


ADMIN_ALGORITHMS = ("HS256", "RS256", "ES256")
ADMIN_SECRET_BYTES_MIN = 32


@dataclass(frozen=True)
class AdminSettings:
    """Who may use /admin: bearer JWTs with a pinned algorithm, a required `exp` and a checked `aud`."""

    algorithm: str = "HS256"
    secret: str | None = field(default=None, repr=False)  # HS256: the shared secret
    public_key: str | None = field(default=None, repr=False)  # RS256/ES256: PEM of the key tokens are checked with
    audience: str = "worldgate-admin"

    @property
    def configured(self) -> bool:
        return bool(self.secret if self.algorithm == "HS256" else self.public_key)


@dataclass(frozen=True)
class ReconcileSettings:
    interval_s: float = 300.0  # how often the server reconciles on its own; 0: only on demand
    grace_s: float = 120.0  # leave payments younger than this to the request that holds them
    settled_sample: int = 50  # settled payments re-checked against the chain per run (`--all`: every one)


RATE_LIMIT_OFF = ("off", "none", "0", "false", "")


@dataclass(frozen=True)
class LimitSettings:
    """Abuse controls (app/edge/abuse.py): request size caps and per-client rate limits.

    Rates use slowapi's syntax ("120/minute", "5/second;100/minute"); None turns a limit off.
    The defaults are for one client at human or agent pace; a load test from one address needs them raised.
    """

    free: str | None = "120/minute"  # per client IP, free routes
    quote: str | None = "600/minute"  # per client IP, every request to a paid route (quotes and payment attempts)
    ops: str | None = "1200/minute"  # per client IP, /v1/health and /metrics (probes and scrapers, not users)
    payer: str | None = "300/minute"  # per payer address, payment attempts (after decoding, before the claim)
    trusted_proxies: tuple[str, ...] = ()  # peers (IPs or CIDRs) whose X-Forwarded-For is believed
    sync_interval_s: float = 0.2  # how often each worker adds its counts to the shared ones in Redis
    headers_max: int = 100  # header fields in one request
    header_bytes_max: int = 16_384  # the request line and all header fields together (the transport cuts at 2x)
    body_bytes_max: int = 1_048_576  # request bodies on free routes (paid routes take none)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8402
    public_url: str | None = None
    workers: int = 1
    log_level: str = "info"
    database_url: str | None = field(default=None, repr=False)
    redis_url: str | None = field(default=None, repr=False)
    state_dir: Path = Path(".worldgate")
    auto_migrate: bool = True
    settlement_mode: str = "sync"
    max_timeout_seconds: int = 300
    payment_header_bytes_max: int = 8192
    response_bytes_max: int = 4 * 1024 * 1024
    facilitator_url: str | None = None
    facilitator_auth: str | None = field(default=None, repr=False)
    facilitator_verify_timeout_s: float = 10.0
    facilitator_settle_timeout_s: float = 60.0
    evm: EvmSettings | None = None  # with svm also None: run the local devnets and take their terms
    svm: SvmSettings | None = None
    price_tiers: Mapping[str, str | int] = field(default_factory=lambda: dict(DEFAULT_PRICE_TIERS))
    route_prices: Mapping[str, str | int] = field(default_factory=dict)
    replay_upstreams: bool = False  # answer every adapter from its recorded payloads (no internet needed)
    upstream_replay_url: str | None = None  # a replay server already running (serve starts one for its workers)
    upstream_timeout_s: float = 10.0
    scheduler: bool = True  # keep shared streams warm in the background
    stream_sharing: Mapping[str, str] = field(default_factory=dict)  # stream id → ok | maintenance | not_shared
    cache_prefix: str = "wg:"  # Redis key prefix of the cache tier: deployments sharing one Redis keep apart
    admin: AdminSettings = field(default_factory=AdminSettings)
    idempotency_ttl_s: float = 86_400.0  # how long a payment-identifier's delivery stays replayable
    metrics_token: str | None = field(default=None, repr=False)  # bearer for /metrics; unset: loopback only
    reconcile: ReconcileSettings = field(default_factory=ReconcileSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)

    @property
    def uses_devnet(self) -> bool:
        return self.evm is None and self.svm is None


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


def _section(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = config.get(name, {})
    if not isinstance(value, Mapping):
        raise SettingsError(f"[{name}] in the config file must be a table")
    return value


def _pick(env: Mapping[str, str], var: str, config: Mapping[str, Any], key: str, default: Any = None) -> Any:
    if var in env and env[var] != "":
        return env[var]
    return config.get(key, default)


def _int(value: Any, name: str, minimum: int = 0) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{name} must be an integer, not {value!r}") from None
    if number < minimum:
        raise SettingsError(f"{name} must be at least {minimum}")
    return number


def _float(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{name} must be a number, not {value!r}") from None
    if number <= 0:
        raise SettingsError(f"{name} must be more than 0")
    return number


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, not {value!r}")


def _read_key_file(path: str, name: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise SettingsError(f"{name}: cannot read the key file ({exc.strerror})") from None


def _pairs(text: str, name: str) -> dict[str, str]:
    """'basic=$0.001,standard=2000' → {"basic": "$0.001", "standard": "2000"} (prices, sharing states)."""
    prices: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise SettingsError(f"{name}: {item!r} is not name=price")
        prices[key.strip()] = value.strip()
    return prices


def _evm(env: Mapping[str, str], config: Mapping[str, Any]) -> EvmSettings | None:
    section = _section(config, "evm")
    if "relayer_key" in section:
        raise SettingsError(
            "[evm] relayer_key is not read from the config file: use WORLDGATE_EVM_RELAYER_KEY or relayer_key_file"
        )
    rpc_url = _pick(env, "WORLDGATE_EVM_RPC_URL", section, "rpc_url")
    pay_to = _pick(env, "WORLDGATE_EVM_PAY_TO", section, "pay_to")
    if not rpc_url and not pay_to:
        return None  # nothing configured: the devnet supplies the chain
    network = str(_pick(env, "WORLDGATE_EVM_NETWORK", section, "network", "eip155:84532"))
    if evm_chain_id(network) is None:
        raise SettingsError(f"WORLDGATE_EVM_NETWORK {network!r} is not a CAIP-2 eip155 id like eip155:8453")
    if not pay_to:
        raise SettingsError("WORLDGATE_EVM_PAY_TO is required once a chain is configured (the address that gets paid)")
    known = KNOWN_USDC.get(network)
    asset = _pick(env, "WORLDGATE_EVM_ASSET", section, "asset", known.address if known else None)
    name = _pick(env, "WORLDGATE_EVM_EIP712_NAME", section, "eip712_name", known.eip712_name if known else None)
    version = _pick(
        env,
        "WORLDGATE_EVM_EIP712_VERSION",
        section,
        "eip712_version",
        known.eip712_version if known else None,
    )
    if not asset or not name or not version:
        raise SettingsError(
            f"{network} has no known USDC: set WORLDGATE_EVM_ASSET, WORLDGATE_EVM_EIP712_NAME"
            " and WORLDGATE_EVM_EIP712_VERSION"
        )
    relayer_key = env.get("WORLDGATE_EVM_RELAYER_KEY") or None
    key_file = _pick(env, "WORLDGATE_EVM_RELAYER_KEY_FILE", section, "relayer_key_file")
    if relayer_key is None and key_file:
        relayer_key = _read_key_file(str(key_file), "WORLDGATE_EVM_RELAYER_KEY_FILE")
    return EvmSettings(
        network=network,
        rpc_url=str(rpc_url) if rpc_url else None,
        asset=str(asset),
        pay_to=str(pay_to),
        eip712_name=str(name),
        eip712_version=str(version),
        decimals=_int(_pick(env, "WORLDGATE_EVM_DECIMALS", section, "decimals", 6), "WORLDGATE_EVM_DECIMALS"),
        relayer_key=relayer_key,
        gas_limit=_int(
            _pick(env, "WORLDGATE_EVM_GAS_LIMIT", section, "gas_limit", 200_000),
            "WORLDGATE_EVM_GAS_LIMIT",
            21_000,
        ),
        receipt_timeout_s=_float(
            _pick(env, "WORLDGATE_EVM_RECEIPT_TIMEOUT_S", section, "receipt_timeout_s", 30.0),
            "WORLDGATE_EVM_RECEIPT_TIMEOUT_S",
        ),
        rpc_timeout_s=_float(
            _pick(env, "WORLDGATE_EVM_RPC_TIMEOUT_S", section, "rpc_timeout_s", 10.0),
            "WORLDGATE_EVM_RPC_TIMEOUT_S",
        ),
    )


def _svm(env: Mapping[str, str], config: Mapping[str, Any]) -> SvmSettings | None:
    section = _section(config, "svm")
    if "fee_payer_key" in section:
        raise SettingsError(
            "[svm] fee_payer_key is not read from the config file:"
            " use WORLDGATE_SVM_FEE_PAYER_KEY or fee_payer_key_file"
        )
    rpc_url = _pick(env, "WORLDGATE_SVM_RPC_URL", section, "rpc_url")
    pay_to = _pick(env, "WORLDGATE_SVM_PAY_TO", section, "pay_to")
    if not rpc_url and not pay_to:
        return None
    network = str(_pick(env, "WORLDGATE_SVM_NETWORK", section, "network", SOLANA_DEVNET))
    if not network.startswith("solana:"):
        raise SettingsError(f"WORLDGATE_SVM_NETWORK {network!r} is not a CAIP-2 solana id like {SOLANA_DEVNET}")
    if not pay_to:
        raise SettingsError("WORLDGATE_SVM_PAY_TO is required once Solana is configured (the wallet that gets paid)")
    known = KNOWN_USDC.get(network)
    asset = _pick(env, "WORLDGATE_SVM_ASSET", section, "asset", known.address if known else None)
    if not asset:
        raise SettingsError(f"{network} has no known USDC: set WORLDGATE_SVM_ASSET (the SPL mint)")
    fee_payer_key = env.get("WORLDGATE_SVM_FEE_PAYER_KEY") or None
    key_file = _pick(env, "WORLDGATE_SVM_FEE_PAYER_KEY_FILE", section, "fee_payer_key_file")
    if fee_payer_key is None and key_file:
        fee_payer_key = _read_key_file(str(key_file), "WORLDGATE_SVM_FEE_PAYER_KEY_FILE")
    return SvmSettings(
        network=network,
        rpc_url=str(rpc_url) if rpc_url else None,
        asset=str(asset),
        pay_to=str(pay_to),
        decimals=_int(_pick(env, "WORLDGATE_SVM_DECIMALS", section, "decimals", 6), "WORLDGATE_SVM_DECIMALS"),
        fee_payer_key=fee_payer_key,
        confirm_timeout_s=_float(
            _pick(env, "WORLDGATE_SVM_CONFIRM_TIMEOUT_S", section, "confirm_timeout_s", 60.0),
            "WORLDGATE_SVM_CONFIRM_TIMEOUT_S",
        ),
        rpc_timeout_s=_float(
            _pick(env, "WORLDGATE_SVM_RPC_TIMEOUT_S", section, "rpc_timeout_s", 10.0), "WORLDGATE_SVM_RPC_TIMEOUT_S"
        ),
        compute_units_max=_int(
            _pick(env, "WORLDGATE_SVM_COMPUTE_UNITS_MAX", section, "compute_units_max", 200_000),
            "WORLDGATE_SVM_COMPUTE_UNITS_MAX",
            1,
        ),
        priority_fee_lamports_max=_int(
            _pick(env, "WORLDGATE_SVM_PRIORITY_FEE_LAMPORTS_MAX", section, "priority_fee_lamports_max", 50_000),
            "WORLDGATE_SVM_PRIORITY_FEE_LAMPORTS_MAX",
        ),
    )


def _admin(env: Mapping[str, str], config: Mapping[str, Any]) -> AdminSettings:
    section = _section(config, "admin")
    if "jwt_secret" in section:
        raise SettingsError(
            "[admin] jwt_secret is not read from the config file: use WORLDGATE_ADMIN_JWT_SECRET or _FILE"
        )
    algorithm = str(_pick(env, "WORLDGATE_ADMIN_JWT_ALGORITHM", section, "jwt_algorithm", "HS256")).upper()
    if algorithm not in ADMIN_ALGORITHMS:
        raise SettingsError(f"WORLDGATE_ADMIN_JWT_ALGORITHM must be one of {', '.join(ADMIN_ALGORITHMS)}")
    secret = env.get("WORLDGATE_ADMIN_JWT_SECRET") or None
    secret_file = _pick(env, "WORLDGATE_ADMIN_JWT_SECRET_FILE", section, "jwt_secret_file")
    if secret is None and secret_file:
        secret = _read_key_file(str(secret_file), "WORLDGATE_ADMIN_JWT_SECRET_FILE")
    public_key = env.get("WORLDGATE_ADMIN_JWT_PUBLIC_KEY") or None
    key_file = _pick(env, "WORLDGATE_ADMIN_JWT_PUBLIC_KEY_FILE", section, "jwt_public_key_file")
    if public_key is None and key_file:
        public_key = _read_key_file(str(key_file), "WORLDGATE_ADMIN_JWT_PUBLIC_KEY_FILE")
    if algorithm == "HS256" and secret is not None and len(secret.encode()) < ADMIN_SECRET_BYTES_MIN:
        raise SettingsError(f"WORLDGATE_ADMIN_JWT_SECRET must be at least {ADMIN_SECRET_BYTES_MIN} bytes")
    if algorithm != "HS256" and secret is not None:
        raise SettingsError(f"{algorithm} admin tokens are checked with WORLDGATE_ADMIN_JWT_PUBLIC_KEY, not a secret")
    if algorithm == "HS256" and public_key is not None:
        raise SettingsError("a public key is for RS256/ES256: set WORLDGATE_ADMIN_JWT_ALGORITHM too")
    audience = str(_pick(env, "WORLDGATE_ADMIN_JWT_AUDIENCE", section, "jwt_audience", "worldgate-admin"))
    return AdminSettings(algorithm=algorithm, secret=secret, public_key=public_key, audience=audience)


def _metrics_token(env: Mapping[str, str], config: Mapping[str, Any]) -> str | None:
    section = _section(config, "metrics")
    if "token" in section:
        raise SettingsError("[metrics] token is not read from the config file: use WORLDGATE_METRICS_TOKEN or _FILE")
    token = env.get("WORLDGATE_METRICS_TOKEN") or None
    token_file = _pick(env, "WORLDGATE_METRICS_TOKEN_FILE", section, "token_file")
    if token is None and token_file:
        token = _read_key_file(str(token_file), "WORLDGATE_METRICS_TOKEN_FILE")
    if token is not None and len(token) < 16:
        raise SettingsError("WORLDGATE_METRICS_TOKEN must be at least 16 characters")
    return token


def _reconcile(env: Mapping[str, str], config: Mapping[str, Any]) -> ReconcileSettings:
    section = _section(config, "reconcile")
    interval = _pick(env, "WORLDGATE_RECONCILE_INTERVAL_S", section, "interval_s", 300)
    try:
        interval_s = float(interval)
    except (TypeError, ValueError):
        raise SettingsError(f"WORLDGATE_RECONCILE_INTERVAL_S must be a number, not {interval!r}") from None
    if interval_s < 0:
        raise SettingsError("WORLDGATE_RECONCILE_INTERVAL_S must be 0 (off) or more")
    return ReconcileSettings(
        interval_s=interval_s,
        grace_s=_float(
            _pick(env, "WORLDGATE_RECONCILE_GRACE_S", section, "grace_s", 120), "WORLDGATE_RECONCILE_GRACE_S"
        ),
        settled_sample=_int(
            _pick(env, "WORLDGATE_RECONCILE_SETTLED_SAMPLE", section, "settled_sample", 50),
            "WORLDGATE_RECONCILE_SETTLED_SAMPLE",
        ),
    )


def _rate(value: Any, name: str) -> str | None:
    """A slowapi rate string, or None for off ("off", "none", "0", false or an empty string)."""
    if value is None or value is False or str(value).strip().lower() in RATE_LIMIT_OFF:
        return None
    from limits import parse_many  # slowapi's parser: the syntax its users know

    text = str(value).strip()
    try:
        parse_many(text)
    except ValueError:
        raise SettingsError(f'{name} {text!r} is not a rate like "120/minute" or "5/second;100/minute"') from None
    return text


def _networks(value: Any, name: str) -> tuple[str, ...]:
    """IP addresses or CIDRs, as a list (TOML) or comma-separated text (env)."""
    items = value if isinstance(value, list | tuple) else str(value or "").split(",")
    found = []
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        try:
            found.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise SettingsError(f"{name}: {item!r} is not an IP address or CIDR") from None
    return tuple(found)


def _limits(env: Mapping[str, str], config: Mapping[str, Any], payment_header_bytes_max: int) -> LimitSettings:
    section = _section(config, "limits")
    default = LimitSettings()
    header_bytes_max = _int(
        _pick(env, "WORLDGATE_HEADER_BYTES_MAX", section, "header_bytes_max", default.header_bytes_max),
        "WORLDGATE_HEADER_BYTES_MAX",
        4096,
    )
    if header_bytes_max <= payment_header_bytes_max:
        raise SettingsError(
            f"WORLDGATE_HEADER_BYTES_MAX ({header_bytes_max}) must be more than WORLDGATE_PAYMENT_HEADER_BYTES_MAX"
            f" ({payment_header_bytes_max}): the payment header travels with the others"
        )
    rates = {}
    for kind in ("free", "quote", "payer", "ops"):
        var = f"WORLDGATE_RATE_LIMIT_{kind.upper()}"
        # an empty variable turns the limit off here (elsewhere it means unset): "off" says the same plainly
        raw = env[var] if var in env else section.get(kind, getattr(default, kind))
        rates[kind] = _rate(raw, var)
    return LimitSettings(
        free=rates["free"],
        quote=rates["quote"],
        payer=rates["payer"],
        ops=rates["ops"],
        trusted_proxies=_networks(
            _pick(env, "WORLDGATE_TRUSTED_PROXIES", section, "trusted_proxies", ()), "WORLDGATE_TRUSTED_PROXIES"
        ),
        sync_interval_s=_float(
            _pick(env, "WORLDGATE_RATE_LIMIT_SYNC_S", section, "sync_interval_s", default.sync_interval_s),
            "WORLDGATE_RATE_LIMIT_SYNC_S",
        ),
        headers_max=_int(
            _pick(env, "WORLDGATE_HEADERS_MAX", section, "headers_max", default.headers_max),
            "WORLDGATE_HEADERS_MAX",
            16,
        ),
        header_bytes_max=header_bytes_max,
        body_bytes_max=_int(
            _pick(env, "WORLDGATE_BODY_BYTES_MAX", section, "body_bytes_max", default.body_bytes_max),
            "WORLDGATE_BODY_BYTES_MAX",
            1024,
        ),
    )


def load_settings(env: Mapping[str, str] | None = None, config_path: str | Path | None = None) -> Settings:
    """Settings from `env` (default os.environ) over the TOML file at `config_path` or $WORLDGATE_CONFIG."""
    env = os.environ if env is None else env
    path = config_path or env.get("WORLDGATE_CONFIG")
    config: dict[str, Any] = {}
    if path:
        try:
            config = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None
    server, payments, pricing = (
        _section(config, "server"),
        _section(config, "payments"),
        _section(config, "pricing"),
    )
    upstreams, streams = _section(config, "upstreams"), _section(config, "streams")
    sharing: dict[str, str] = {str(k): str(v) for k, v in _section(streams, "sharing").items()}
    if env.get("WORLDGATE_STREAM_SHARING"):
        sharing.update(_pairs(env["WORLDGATE_STREAM_SHARING"], "WORLDGATE_STREAM_SHARING"))
    for stream_id, state in sharing.items():
        if state not in SHARING_STATES:
            raise SettingsError(f"sharing of {stream_id} is {state!r}: choose one of {', '.join(SHARING_STATES)}")

    mode = str(_pick(env, "WORLDGATE_SETTLEMENT_MODE", payments, "settlement_mode", "sync"))
    if mode not in SETTLEMENT_MODES:
        raise SettingsError(
            f"WORLDGATE_SETTLEMENT_MODE {mode!r} is not available; this build settles in: {', '.join(SETTLEMENT_MODES)}"
        )
    tiers: dict[str, str | int] = dict(DEFAULT_PRICE_TIERS)
    tiers.update(_section(pricing, "tiers"))
    if env.get("WORLDGATE_PRICE_TIERS"):
        tiers.update(_pairs(env["WORLDGATE_PRICE_TIERS"], "WORLDGATE_PRICE_TIERS"))
    routes: dict[str, str | int] = dict(_section(pricing, "routes"))
    if env.get("WORLDGATE_ROUTE_PRICES"):
        routes.update(_pairs(env["WORLDGATE_ROUTE_PRICES"], "WORLDGATE_ROUTE_PRICES"))

    facilitator_auth = env.get("WORLDGATE_FACILITATOR_AUTH") or None
    auth_file = env.get("WORLDGATE_FACILITATOR_AUTH_FILE")
    if facilitator_auth is None and auth_file:
        facilitator_auth = _read_key_file(auth_file, "WORLDGATE_FACILITATOR_AUTH_FILE")

    settings = Settings(
        host=str(_pick(env, "WORLDGATE_HOST", server, "host", "127.0.0.1")),
        port=_int(_pick(env, "WORLDGATE_PORT", server, "port", 8402), "WORLDGATE_PORT"),
        public_url=_pick(env, "WORLDGATE_PUBLIC_URL", server, "public_url"),
        workers=_int(_pick(env, "WORLDGATE_WORKERS", server, "workers", 1), "WORLDGATE_WORKERS", 1),
        log_level=str(_pick(env, "WORLDGATE_LOG_LEVEL", server, "log_level", "info")).lower(),
        database_url=_pick(env, "DATABASE_URL", _section(config, "database"), "url"),
        redis_url=_pick(env, "REDIS_URL", _section(config, "redis"), "url"),
        state_dir=Path(str(_pick(env, "WORLDGATE_STATE_DIR", server, "state_dir", ".worldgate"))),
        auto_migrate=_bool(
            _pick(env, "WORLDGATE_AUTO_MIGRATE", server, "auto_migrate", True), "WORLDGATE_AUTO_MIGRATE"
        ),
        settlement_mode=mode,
        max_timeout_seconds=_int(
            _pick(env, "WORLDGATE_MAX_TIMEOUT_SECONDS", payments, "max_timeout_seconds", 300),
            "WORLDGATE_MAX_TIMEOUT_SECONDS",
            30,
        ),
        payment_header_bytes_max=_int(
            _pick(env, "WORLDGATE_PAYMENT_HEADER_BYTES_MAX", payments, "payment_header_bytes_max", 8192),
            "WORLDGATE_PAYMENT_HEADER_BYTES_MAX",
            1024,
        ),
        response_bytes_max=_int(
            _pick(env, "WORLDGATE_RESPONSE_BYTES_MAX", payments, "response_bytes_max", 4 * 1024 * 1024),
            "WORLDGATE_RESPONSE_BYTES_MAX",
            1024,
        ),
        facilitator_url=_pick(env, "X402_FACILITATOR_URL", payments, "facilitator_url"),
        facilitator_auth=facilitator_auth,
        facilitator_verify_timeout_s=_float(
            _pick(env, "WORLDGATE_FACILITATOR_VERIFY_TIMEOUT_S", payments, "facilitator_verify_timeout_s", 10.0),
            "WORLDGATE_FACILITATOR_VERIFY_TIMEOUT_S",
        ),
        facilitator_settle_timeout_s=_float(
            _pick(env, "WORLDGATE_FACILITATOR_SETTLE_TIMEOUT_S", payments, "facilitator_settle_timeout_s", 60.0),
            "WORLDGATE_FACILITATOR_SETTLE_TIMEOUT_S",
        ),
        evm=_evm(env, config),
        svm=_svm(env, config),
        replay_upstreams=_bool(
            _pick(env, "WORLDGATE_REPLAY_UPSTREAMS", upstreams, "replay", False), "WORLDGATE_REPLAY_UPSTREAMS"
        ),
        upstream_replay_url=_pick(env, "WORLDGATE_UPSTREAM_REPLAY_URL", upstreams, "replay_url"),
        upstream_timeout_s=_float(
            _pick(env, "WORLDGATE_UPSTREAM_TIMEOUT_S", upstreams, "timeout_s", 10.0), "WORLDGATE_UPSTREAM_TIMEOUT_S"
        ),
        scheduler=_bool(_pick(env, "WORLDGATE_SCHEDULER", upstreams, "scheduler", True), "WORLDGATE_SCHEDULER"),
        stream_sharing=sharing,
        cache_prefix=str(_pick(env, "WORLDGATE_CACHE_PREFIX", _section(config, "redis"), "prefix", "wg:")),
        admin=_admin(env, config),
        metrics_token=_metrics_token(env, config),
        idempotency_ttl_s=_float(
            _pick(env, "WORLDGATE_IDEMPOTENCY_TTL_S", payments, "idempotency_ttl_s", 86_400),
            "WORLDGATE_IDEMPOTENCY_TTL_S",
        ),
        reconcile=_reconcile(env, config),
        price_tiers=tiers,
        route_prices=routes,
    )
    settings = replace(settings, limits=_limits(env, config, settings.payment_header_bytes_max))
    if settings.facilitator_url is None:  # the local facilitator does the chain work itself
        if settings.evm is not None and not settings.evm.rpc_url:
            raise SettingsError(
                "set WORLDGATE_EVM_RPC_URL (local facilitator) or X402_FACILITATOR_URL (remote facilitator)"
            )
        if settings.evm is not None and not settings.evm.relayer_key:
            raise SettingsError(
                "the local facilitator needs a relayer key to pay settlement gas: WORLDGATE_EVM_RELAYER_KEY or _FILE"
            )
        if settings.svm is not None and not settings.svm.rpc_url:
            raise SettingsError(
                "set WORLDGATE_SVM_RPC_URL (local facilitator) or X402_FACILITATOR_URL (remote facilitator)"
            )
        if settings.svm is not None and not settings.svm.fee_payer_key:
            raise SettingsError(
                "the local facilitator needs a fee payer key to co-sign Solana payments:"
                " WORLDGATE_SVM_FEE_PAYER_KEY or _FILE"
            )
    return settings
