"""Settings: defaults, env over TOML, validation messages, secrets kept out of repr, the JSON workers get,
and the README's table matching the fields."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from adapters import Registry
from app.runtime.settings import (
    Settings,
    SettingsError,
    load_settings,
    redact_url,
    replace,
    settings_from_json,
    settings_json,
)
from app.runtime.settings.load import _fields
from app.usecases.pricing import Pricing, PricingError
from app.wiring import create_app
from payments import NetworkTerms

REAL_CHAIN = {
    "WORLDGATE_EVM_RPC_URL": "http://127.0.0.1:1",
    "WORLDGATE_EVM_PAY_TO": "0x000000000000000000000000000000000000bEEF",
    "WORLDGATE_EVM_RELAYER_KEY": "0x" + "11" * 32,
}


def test_nothing_configured_means_the_embedded_default() -> None:
    settings = load_settings({})
    assert settings.uses_devnet and settings.evm is None
    assert (settings.host, settings.port, settings.workers, settings.state_dir) == (
        "127.0.0.1",
        8402,
        1,
        Path(".worldgate"),
    )
    assert settings.database_url is None and settings.redis_url is None
    assert settings == Settings()  # built from values, a Settings reads nothing from the process
    assert "settlement_mode" not in Settings.model_fields  # one legal value ("sync") is no setting


def test_a_configured_chain_takes_known_usdc_defaults() -> None:
    settings = load_settings({**REAL_CHAIN, "WORLDGATE_EVM_NETWORK": "eip155:8453"})
    assert settings.evm is not None
    assert settings.evm.asset == "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
    assert (settings.evm.eip712_name, settings.evm.eip712_version) == ("USD Coin", "2")
    assert settings.evm.chain_id == 8453


def test_env_wins_over_toml_and_keys_stay_out_of_it(tmp_path: Path) -> None:
    config = tmp_path / "worldgate.toml"
    config.write_text(
        '[server]\nport = 9000\nhost = "0.0.0.0"\n'
        '[pricing.tiers]\nbasic = "$0.005"\n'
        '[pricing.routes]\n"/v1/streams/static.capitals" = 42\n'
    )
    settings = load_settings({"WORLDGATE_PORT": "9100"}, config)
    assert (settings.port, settings.host) == (9100, "0.0.0.0")
    assert settings.price_tiers["basic"] == "$0.005" and settings.route_prices["/v1/streams/static.capitals"] == 42
    config.write_text('[evm]\nrelayer_key = "0xabc"\n')
    with pytest.raises(SettingsError, match="not read from the config file"):
        load_settings({}, config)


def test_relayer_key_file_and_secrets_not_in_repr(tmp_path: Path) -> None:
    key_file = tmp_path / "relayer.key"
    secret = "0x" + "ab" * 32
    key_file.write_text(secret + "\n")
    env = {
        **REAL_CHAIN,
        "WORLDGATE_EVM_RELAYER_KEY": "",
        "WORLDGATE_EVM_RELAYER_KEY_FILE": str(key_file),
        "DATABASE_URL": "postgresql://user:hunter2@db:5432/wg",
        "WORLDGATE_FACILITATOR_AUTH": "Bearer sekrit",
    }
    settings = load_settings(env)
    assert settings.evm is not None and settings.evm.relayer_key == secret
    text = repr(settings)
    assert secret not in text and "hunter2" not in text and "sekrit" not in text
    assert "hunter2" not in redact_url(settings.database_url) and "***" in redact_url(settings.database_url)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WORLDGATE_PORT": "eighty"}, "WORLDGATE_PORT must be an integer"),
        ({"WORLDGATE_WORKERS": "0"}, "WORLDGATE_WORKERS must be at least 1"),
        ({"WORLDGATE_UPSTREAM_TIMEOUT_S": "-1"}, "WORLDGATE_UPSTREAM_TIMEOUT_S must be more than 0"),
        ({"WORLDGATE_RECONCILE_GRACE_S": "0"}, "WORLDGATE_RECONCILE_GRACE_S must be more than 0"),
        ({"WORLDGATE_ADMIN_JWT_ALGORITHM": "none"}, "WORLDGATE_ADMIN_JWT_ALGORITHM must be one of"),
        ({"WORLDGATE_SVM_RPC_URL": "http://x"}, "WORLDGATE_SVM_PAY_TO is required"),
        ({"WORLDGATE_EVM_RELAYER_KEY_FILE": "/nonexistent/key"}, "WORLDGATE_EVM_RELAYER_KEY_FILE: cannot read"),
        ({"WORLDGATE_EVM_RPC_URL": "http://x"}, "WORLDGATE_EVM_PAY_TO is required"),
        ({**REAL_CHAIN, "WORLDGATE_EVM_NETWORK": "base"}, "CAIP-2"),
        ({**REAL_CHAIN, "WORLDGATE_EVM_NETWORK": "eip155:1"}, "no known USDC"),
        ({**REAL_CHAIN, "WORLDGATE_EVM_RELAYER_KEY": ""}, "needs a relayer key"),
        ({"WORLDGATE_PRICE_TIERS": "basic"}, "not name=price"),
        ({"WORLDGATE_AUTO_MIGRATE": "maybe"}, "true or false"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(env)


def test_a_remote_facilitator_needs_no_key_or_rpc() -> None:
    settings = load_settings(
        {
            "X402_FACILITATOR_URL": "https://x402.org/facilitator",
            "WORLDGATE_EVM_PAY_TO": REAL_CHAIN["WORLDGATE_EVM_PAY_TO"],
        }
    )
    assert settings.evm is not None and settings.evm.rpc_url is None and settings.evm.relayer_key is None


def test_prices_are_exact_or_the_table_refuses_to_build() -> None:
    terms = [NetworkTerms("eip155:84532", "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "0x" + "1" * 40)]
    tiers = {"basic": "$0.001", "standard": "2500", "premium": "$0.02"}
    pricing = Pricing(Registry(), terms, tiers, {"/v1/streams/static.volcanoes": "$0.25"})
    capitals, volcanoes = pricing.lookup("/v1/streams/static.capitals"), pricing.lookup("/v1/streams/static.volcanoes")
    assert capitals is not None and capitals.amount_atomic == 1000
    assert volcanoes is not None and volcanoes.amount_atomic == 250_000
    quakes, world = pricing.lookup("/v1/streams/quakes.usgs"), pricing.lookup("/v1/world")
    assert quakes is not None and quakes.amount_atomic == 2500
    assert world is not None and world.amount_atomic == 20_000 and world.revenue_account == "v1.world"
    with pytest.raises(PricingError, match="more than 6 decimals"):
        Pricing(Registry(), terms, {**tiers, "basic": "$0.0000001"}, {})
    with pytest.raises(PricingError, match="has no price"):
        Pricing(Registry(), terms, {"basic": "1"}, {})
    with pytest.raises(PricingError, match="/v1/world is priced by tier 'premium'"):
        Pricing(Registry(), terms, {"basic": "1", "standard": "2"}, {})


def test_upstream_and_stream_settings_from_toml_and_env(tmp_path: Path) -> None:
    defaults = load_settings({})
    assert (defaults.replay_upstreams, defaults.scheduler, defaults.cache_prefix) == (False, True, "wg:")
    assert defaults.upstream_timeout_s == 10.0 and defaults.stream_sharing == {}
    config = tmp_path / "worldgate.toml"
    config.write_text(
        '[redis]\nprefix = "staging:"\n'
        "[upstreams]\nreplay = true\ntimeout_s = 4\nscheduler = false\n"
        '[streams.sharing]\n"iss.position" = "maintenance"\n"space.kp" = "not_shared"\n'
    )
    settings = load_settings({"WORLDGATE_STREAM_SHARING": "space.kp=ok,events.eonet=not_shared"}, config)
    assert (settings.replay_upstreams, settings.scheduler, settings.cache_prefix) == (True, False, "staging:")
    assert settings.upstream_timeout_s == 4.0
    assert settings.stream_sharing == {"iss.position": "maintenance", "space.kp": "ok", "events.eonet": "not_shared"}
    with pytest.raises(SettingsError, match=r"sharing of iss\.position is 'hidden'"):
        load_settings({"WORLDGATE_STREAM_SHARING": "iss.position=hidden"})
    with pytest.raises(SettingsError, match="WORLDGATE_REPLAY_UPSTREAMS"):
        load_settings({"WORLDGATE_REPLAY_UPSTREAMS": "perhaps"})


def test_sharing_a_stream_that_does_not_exist_refuses_to_start() -> None:
    settings = load_settings({"DATABASE_URL": "postgresql://x@127.0.0.1/x", "REDIS_URL": "redis://127.0.0.1:1"})
    with pytest.raises(SettingsError, match=r"do not exist: iss\.positon"):
        create_app(replace(settings, stream_sharing={"iss.positon": "not_shared"}))


def test_workers_get_the_same_object_as_json(tmp_path: Path) -> None:
    """`worldgate serve` hands its workers `settings_json`: every value survives, secrets included, and
    neither the object's repr nor an error about the JSON shows a secret."""
    secret_file = tmp_path / "admin.secret"
    secret_file.write_text("s" * 40 + "\n")
    config = tmp_path / "worldgate.toml"
    config.write_text(
        '[pricing.tiers]\nbasic = "$0.05"\n[limits]\nfree = "3/minute"\ntrusted_proxies = ["10.0.0.0/8"]\n'
        f'[admin]\njwt_audience = "from-the-file"\njwt_secret_file = "{secret_file}"\n'
    )
    env = {**REAL_CHAIN, "DATABASE_URL": "postgresql://wg:hunter2@db/wg", "WORLDGATE_METRICS_TOKEN": "m" * 20}
    settings = load_settings(env, config)
    assert settings.admin.secret == "s" * 40 and settings.admin.audience == "from-the-file"
    text = settings_json(settings)
    again = settings_from_json(text)
    assert again == settings and again.price_tiers["basic"] == "$0.05" and again.limits.free == "3/minute"
    assert again.evm is not None and again.evm.relayer_key == REAL_CHAIN["WORLDGATE_EVM_RELAYER_KEY"]
    shown = repr(again)
    for secret in ("s" * 40, "m" * 20, "hunter2", REAL_CHAIN["WORLDGATE_EVM_RELAYER_KEY"]):
        assert secret in text and secret not in shown
    with pytest.raises(SettingsError) as refused:
        settings_from_json(text.replace('"port":8402', '"port":"x"'))
    assert "WORLDGATE_PORT" in str(refused.value) and "hunter2" not in str(refused.value)


def test_a_command_reads_only_what_it_uses(tmp_path: Path) -> None:
    """`worldgate migrate` needs a database: a chain without keys, a missing key file or a bad port is not its
    business. The whole set (a server's) still refuses them."""
    env = {
        "DATABASE_URL": "postgresql://old@db/wg",
        "WORLDGATE_DATABASE_URL": "postgresql://new@db/wg",
        "WORLDGATE_EVM_RPC_URL": "http://127.0.0.1:1",
        "WORLDGATE_EVM_PAY_TO": REAL_CHAIN["WORLDGATE_EVM_PAY_TO"],
        "WORLDGATE_SVM_FEE_PAYER_KEY_FILE": str(tmp_path / "absent.json"),
        "WORLDGATE_PORT": "eighty",
    }
    settings = load_settings(env, only=("database_url", "state_dir"))
    assert settings.database_url == "postgresql://new@db/wg" and settings.evm is None and settings.port == 8402
    assert load_settings({"DATABASE_URL": "postgresql://old@db/wg"}).database_url == "postgresql://old@db/wg"
    reconcile = load_settings(env, only=("evm", "svm"), keys=False)
    assert reconcile.evm is not None and reconcile.evm.relayer_key is None  # reading the chain needs no key
    with pytest.raises(SettingsError, match="WORLDGATE_SVM_FEE_PAYER_KEY_FILE: cannot read the key file"):
        load_settings(env)
    with pytest.raises(SettingsError, match="WORLDGATE_PORT must be an integer"):
        load_settings({**env, "WORLDGATE_SVM_FEE_PAYER_KEY_FILE": ""})


def test_copies_are_validated_and_the_object_is_frozen() -> None:
    settings = load_settings({})
    assert replace(settings, port=9000).port == 9000 and settings.port == 8402
    with pytest.raises(ValueError, match="port"):
        replace(settings, port="eighty")
    with pytest.raises(ValueError, match="frozen"):
        settings.port = 1  # type: ignore[misc]


def _readme_rows() -> dict[str, tuple[str, str]]:
    """The README's settings table: variable → (TOML key, default cell), `X` / `_FILE` rows expanded."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].startswith("`"):
            continue
        names, keys = re.findall(r"`([A-Z0-9_]+)`", cells[0]), re.findall(r"`\[?([a-z0-9_.]+)\]?`", cells[1])
        first, key = names[0], keys[0] if keys else ""
        rows[first] = (key, cells[2])
        for name in names[1:]:
            if name == "_FILE":
                rows[first + "_FILE"] = (key, "")
            elif name.startswith("_"):  # `..._NAME` / `_VERSION`
                rows[first.rsplit("_", 1)[0] + name] = (keys[-1] and key.rsplit("_", 1)[0] + keys[-1], cells[2])
            else:
                rows[name] = (key, cells[2])
    return rows


def test_the_readme_table_lists_every_setting_as_read() -> None:
    rows = _readme_rows()
    read = set()
    for _path, info, where in _fields(Settings):
        read.update((where.env, *where.also))
        assert where.env in rows, f"{where.env} is read but not in the README's table"
        key, default = rows[where.env]
        assert key == (where.toml or ""), f"{where.env}: the README says {key!r}, the field reads {where.toml!r}"
        if where.secret:
            assert f"{where.env}_FILE" in rows, f"{where.env}: the README does not list its _FILE"
        shown = re.fullmatch(r"`([^`]+)`", default)
        value = info.default_factory() if info.default_factory else info.default  # type: ignore[call-arg]
        if shown and isinstance(value, dict) and value:
            assert shown.group(1) == ",".join(f"{k}={v}" for k, v in value.items()), where.env
        if shown and isinstance(value, str | int | float | bool | Path):
            expected = (
                str(value).lower() if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else value
            )
            assert shown.group(1) == str(expected), f"{where.env}: README default {shown.group(1)}, field {value}"
    secrets_files = {f"{w.env}_FILE" for _p, _i, w in _fields(Settings) if w.secret}
    listed = set(rows) - {"WORLDGATE_CONFIG", "WORLDGATE_ANVIL_BIN"} - secrets_files
    assert {name for name in listed if not name.startswith("TEST_")} <= read
