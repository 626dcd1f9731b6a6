"""Settings: defaults, env over TOML, validation messages, and secrets kept out of repr."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from adapters import Registry
from app.runtime.settings import SettingsError, load_settings, redact_url
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
    assert (settings.host, settings.port, settings.settlement_mode) == ("127.0.0.1", 8402, "sync")
    assert settings.database_url is None and settings.redis_url is None


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
        ({"WORLDGATE_SETTLEMENT_MODE": "deferred"}, "not available"),
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
