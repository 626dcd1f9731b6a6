"""Secrets (issue 7, part 4): keys come from the environment or key files only, and a full run on both
networks (payments, refusals, the admin API and dashboard, /metrics, health, a dead RPC, a failing
remote facilitator, startups that fail on bad keys) shows none of them in any log line, response
header or body: not the relayer key, not the fee payer's secret key in any of its encodings, not the
admin JWT secret, the metrics token or the facilitator's auth, and no full PAYMENT-SIGNATURE value.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import secrets
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import base58
import httpx
import jwt
import pytest
from eth_account import Account
from solders.keypair import Keypair
from solders.transaction import VersionedTransaction

from app.runtime.logs import JsonFormatter
from app.runtime.settings import Settings, SettingsError, load_settings, redact_url, replace
from app.wiring import create_app, solana_keypair
from payments.devnet.evm import EvmDevnet
from payments.devnet.solana_process import SolanaDevnetProcess

from . import svm
from .chain import b64, new_payer, pay_for, rpc, unb64
from .conftest import ADMIN_SECRET, Gateway, running_gateway, with_settings
from .facilitator_double import FacilitatorDouble
from .services import ServerThread, TcpProxy, free_port
from .test_admin import token

CAPITALS = "/v1/streams/static.capitals"
METRICS_TOKEN = "metrics-" + secrets.token_hex(16)
FACILITATOR_AUTH = "Bearer facilitator-" + secrets.token_hex(16)


def secret_forms(settings: Settings) -> dict[str, str]:
    """Every secret of a run, in every encoding a careless line could print it in (hex forms lowercase)."""
    assert settings.evm is not None and settings.evm.relayer_key and settings.svm and settings.svm.fee_payer_key
    relayer = bytes.fromhex(settings.evm.relayer_key.removeprefix("0x"))
    keypair = bytes(solana_keypair(settings.svm.fee_payer_key))
    seed = keypair[:32]  # the secret half; the other 32 bytes are the public key, printed on purpose
    return {
        "relayer key (hex)": relayer.hex(),
        "relayer key (base64)": base64.b64encode(relayer).decode(),
        "relayer key (byte list)": json.dumps(list(relayer)).replace(" ", ""),
        "relayer key (byte list, spaced)": str(list(relayer)),
        "fee payer key (as configured)": settings.svm.fee_payer_key.strip(),
        "fee payer keypair (base58)": base58.b58encode(keypair).decode(),
        "fee payer seed (base58)": base58.b58encode(seed).decode(),
        "fee payer seed (hex)": seed.hex(),
        "fee payer keypair (base64)": base64.b64encode(keypair).decode(),
        "fee payer seed (base64)": base64.b64encode(seed).decode(),
        "fee payer seed (byte list)": json.dumps(list(seed)).replace(" ", ""),
        "fee payer seed (byte list, spaced)": str(list(seed)),
        "admin JWT secret": ADMIN_SECRET,
        "metrics token": METRICS_TOKEN,
        "facilitator auth": FACILITATOR_AUTH.removeprefix("Bearer "),
    }


class Transcript:
    """Everything a run showed the outside: response status lines, headers and bodies, exception texts."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.answers: list[httpx.Response] = []
        self.payment_headers: list[str] = []  # every PAYMENT-SIGNATURE / X-PAYMENT value sent

    def add(self, answer: httpx.Response) -> httpx.Response:
        self.answers.append(answer)
        sent = answer.request.headers
        for name in ("payment-signature", "x-payment"):
            if name in sent:
                self.payment_headers.append(sent[name])
        lines = [f"{answer.status_code} {answer.reason_phrase}"]
        lines += [f"{k}: {v}" for k, v in answer.headers.multi_items()]
        self.parts.append("\n".join(lines) + "\n\n" + answer.content.decode("latin-1"))
        return answer

    async def call(
        self, gateway: Gateway, method: str, path: str, *, cookies: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30, cookies=cookies) as client:
            return self.add(await client.request(method, path, **kwargs))

    def text(self) -> str:
        return "\n".join(self.parts)


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Every log record of the run, at DEBUG, in the JSON-lines format the server writes (app/runtime/logs.py).
    uvicorn's own loggers do not propagate: `capfd` takes what they write to stderr."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.DEBUG)
    loggers = [logging.getLogger(), logging.getLogger("worldgate")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def assert_nothing_leaked(
    settings: Settings, transcript: Transcript, logs: io.StringIO, capfd: pytest.CaptureFixture[str]
) -> int:
    """Grep logs, stdout/stderr and the transcript; returns how many characters were searched."""
    out, err = capfd.readouterr()
    everything = "\n".join([logs.getvalue(), out, err, transcript.text()])
    lowered = everything.lower()
    found = [
        name
        for name, value in secret_forms(settings).items()
        if (value in lowered if "(hex)" in name else value in everything)
    ]
    assert not found, f"secrets in the output: {found}"
    assert transcript.payment_headers
    echoed = [h[:24] for h in set(transcript.payment_headers) if len(h) >= 40 and h in everything]
    assert not echoed, f"payment headers in the output: {echoed}"
    signatures = [
        p["payload"]["signature"]
        for h in transcript.payment_headers
        if isinstance(p := _decoded(h), dict) and isinstance(p.get("payload"), dict) and "signature" in p["payload"]
    ]
    assert not [s for s in signatures if s.lower() in lowered], "an EIP-3009 signature is in the output"
    assert "worldgate" in logs.getvalue(), "nothing was logged: the capture is not working"
    return len(everything)


def _decoded(header: str) -> Any:
    try:
        return unb64(header)
    except ValueError:
        return None


def test_keys_never_come_from_the_config_file_and_never_show_in_repr(tmp_path: Path, settings: Settings) -> None:
    forms = secret_forms(settings)
    assert settings.evm is not None and settings.svm is not None
    for section, key, value in (
        ("evm", "relayer_key", settings.evm.relayer_key),
        ("svm", "fee_payer_key", settings.svm.fee_payer_key),
        ("admin", "jwt_secret", ADMIN_SECRET),
        ("metrics", "token", METRICS_TOKEN),
    ):
        config = tmp_path / f"{section}.toml"
        config.write_text(f'[{section}]\n{key} = "{value}"\n')
        with pytest.raises(SettingsError, match=f"{key} is not read from the config file") as refused:
            load_settings({}, config)
        assert str(value) not in str(refused.value)
    # from a key file, and the settings' repr shows none of them
    key_file = tmp_path / "fee-payer.json"
    key_file.write_text(json.dumps(list(bytes(solana_keypair(settings.svm.fee_payer_key)))))
    env = {
        "WORLDGATE_EVM_RPC_URL": "http://127.0.0.1:1",
        "WORLDGATE_EVM_PAY_TO": settings.evm.pay_to,
        "WORLDGATE_EVM_RELAYER_KEY": str(settings.evm.relayer_key),
        "WORLDGATE_SVM_RPC_URL": "http://127.0.0.1:1",
        "WORLDGATE_SVM_PAY_TO": settings.svm.pay_to,
        "WORLDGATE_SVM_ASSET": settings.svm.asset,
        "WORLDGATE_SVM_FEE_PAYER_KEY_FILE": str(key_file),
        "WORLDGATE_ADMIN_JWT_SECRET": ADMIN_SECRET,
        "WORLDGATE_METRICS_TOKEN": METRICS_TOKEN,
        "WORLDGATE_FACILITATOR_AUTH": FACILITATOR_AUTH,
    }
    loaded = load_settings(env)
    assert loaded.svm is not None and loaded.svm.fee_payer_key is not None
    assert bytes(solana_keypair(loaded.svm.fee_payer_key)) == bytes(solana_keypair(settings.svm.fee_payer_key))
    shown = repr(loaded)
    assert not [name for name, value in forms.items() if value in shown.lower() or value in shown]
    assert FACILITATOR_AUTH not in shown


def test_rpc_provider_keys_are_redacted_where_urls_are_shown() -> None:
    """`worldgate serve` prints its RPC URLs in the banner; providers carry their API key in them."""
    key = "Zq3" + secrets.token_hex(16)
    for url in (
        f"https://base-mainnet.g.alchemy.com/v2/{key}",
        f"https://mainnet.helius-rpc.com/?api-key={key}",
        f"https://x.solana-mainnet.quiknode.pro/{key}/",
        f"https://rpc.example/?network=base&token={key}",
        f"https://user:{key}@rpc.example/",
    ):
        shown = redact_url(url)
        assert key not in shown and "***" in shown, shown
    assert redact_url("postgresql://wg@db:5432/worldgate?sslmode=require") == (
        "postgresql://wg@db:5432/worldgate?sslmode=require"
    )  # what is not a secret stays readable


async def test_a_full_run_on_both_networks_leaks_no_secret(
    settings: Settings,
    devnet: EvmDevnet,
    solana: SolanaDevnetProcess,
    logs: io.StringIO,
    capfd: pytest.CaptureFixture[str],
) -> None:
    run = Transcript()
    state = solana.state
    with running_gateway(with_settings(settings, metrics_token=METRICS_TOKEN)) as gateway:
        # EVM: a sale, its replay, and refusals that reach decoding, verification and the chain
        offer = await gateway.offer(CAPITALS)
        key = new_payer(devnet)
        header = pay_for(key, devnet, offer)
        assert (await run.call(gateway, "GET", CAPITALS, headers={"PAYMENT-SIGNATURE": header})).status_code == 200
        assert (await run.call(gateway, "GET", CAPITALS, headers={"PAYMENT-SIGNATURE": header})).status_code == 402
        wrong_value = pay_for(key, devnet, offer, value=1)
        assert (await run.call(gateway, "GET", CAPITALS, headers={"PAYMENT-SIGNATURE": wrong_value})).status_code == 402
        document = unb64(pay_for(key, devnet, offer))
        signature = document["payload"]["signature"]
        document["payload"]["signature"] = signature[:10] + ("0" if signature[10] != "0" else "1") + signature[11:]
        forged = await run.call(gateway, "GET", CAPITALS, headers={"PAYMENT-SIGNATURE": b64(document)})
        assert forged.status_code == 402
        for junk in ("not base64 at all", "A" * 9000, b64({"x402Version": 2, "payload": "x"})):
            assert (await run.call(gateway, "GET", CAPITALS, headers={"PAYMENT-SIGNATURE": junk})).status_code < 500
        v1 = b64({"x402Version": 1, "scheme": "exact", "network": "base-sepolia", "payload": document["payload"]})
        assert (await run.call(gateway, "GET", CAPITALS, headers={"X-PAYMENT": v1})).status_code == 402
        unspent = pay_for(key, devnet, offer)
        assert (await run.call(gateway, "HEAD", CAPITALS, headers={"PAYMENT-SIGNATURE": unspent})).status_code == 402
        assert (await run.call(gateway, "POST", CAPITALS, headers={"PAYMENT-SIGNATURE": unspent})).status_code == 405

        # Solana: a sale, its replay, a tampered transaction
        svm_offer = await gateway.offer(CAPITALS, "solana")
        payer = svm.new_payer(state)
        paid = svm.pay(payer, state, svm_offer)
        assert (await run.call(gateway, "GET", CAPITALS, headers={"PAYMENT-SIGNATURE": paid})).status_code == 200
        assert (await run.call(gateway, "GET", CAPITALS, headers={"PAYMENT-SIGNATURE": paid})).status_code == 402
        raw = bytearray(bytes(VersionedTransaction.from_bytes(base64.b64decode(unb64(paid)["payload"]["transaction"]))))
        raw[1 + 64 + 10] ^= 0xFF
        tampered = svm.header(svm_offer, base64.b64encode(bytes(raw)).decode())
        assert (await run.call(gateway, "GET", CAPITALS, headers={"PAYMENT-SIGNATURE": tampered})).status_code == 402

        # free routes, discovery, metrics (with and without the token), health
        for path in ("/v1/health", "/v1/streams", "/v1/streams/search?q=quake", "/openapi.json", "/.well-known/x402"):
            assert (await run.call(gateway, "GET", path)).status_code == 200, path
        assert (await run.call(gateway, "GET", "/metrics")).status_code == 401
        bad_bearer = {"authorization": "Bearer " + METRICS_TOKEN[:-1] + "x"}
        assert (await run.call(gateway, "GET", "/metrics", headers=bad_bearer)).status_code == 401
        metrics_bearer = {"authorization": f"Bearer {METRICS_TOKEN}"}
        assert (await run.call(gateway, "GET", "/metrics", headers=metrics_bearer)).status_code == 200

        # the admin API and dashboard: every read, a write, a reconcile, and the ways in that fail
        admin = {"authorization": f"Bearer {token()}"}
        for path in (
            "/admin/api/whoami",
            "/admin/api/reports",
            "/admin/api/reports/summary",
            "/admin/api/reports?format=csv",
            "/admin/api/payments",
            "/admin/api/queue",
            "/admin/api/streams",
            "/admin/api/bans",
        ):
            assert (await run.call(gateway, "GET", path, headers=admin)).status_code == 200, path
        payments = (await run.call(gateway, "GET", "/admin/api/payments", headers=admin)).json()
        first = (payments.get("payments") or [{}])[0].get("id")
        if first is not None:
            assert (await run.call(gateway, "GET", f"/admin/api/payments/{first}", headers=admin)).status_code == 200
        assert (await run.call(gateway, "POST", "/admin/api/reconcile", headers=admin)).status_code == 200
        ban = {"payer": "0x" + "ef" * 20, "reason": "secrets run"}
        assert (await run.call(gateway, "POST", "/admin/api/bans", headers=admin, json=ban)).status_code == 201
        await run.call(gateway, "DELETE", f"/admin/api/bans/{ban['payer']}", headers=admin)
        now = int(time.time())
        claims = {"sub": "ops@test", "aud": "worldgate-admin", "iat": now, "exp": now + 600}
        for bad in (
            jwt.encode(claims, "another-secret-" + "x" * 32, "HS256"),
            token(ttl_s=-600),
            _unsigned(claims),
            "garbage",
        ):
            refused = await run.call(gateway, "GET", "/admin/api/whoami", headers={"authorization": f"Bearer {bad}"})
            assert refused.status_code == 401
        assert (await run.call(gateway, "GET", "/admin/")).status_code == 200
        login = await run.call(
            gateway,
            "POST",
            "/admin/login",
            data={"token": token()},
            headers={"origin": gateway.url},
        )
        assert login.status_code == 303
        same_origin = {"origin": gateway.url}
        wrong = await run.call(gateway, "POST", "/admin/login", data={"token": "x" * 40}, headers=same_origin)
        assert wrong.status_code == 401
        assert (await run.call(gateway, "GET", "/admin/", cookies=dict(login.cookies))).status_code == 200

    assert not [a for a in run.answers if a.status_code >= 500]
    assert_nothing_leaked(settings, run, logs, capfd)


async def test_errors_leak_no_secret(
    settings: Settings,
    devnet: EvmDevnet,
    solana: SolanaDevnetProcess,
    logs: io.StringIO,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A chain RPC that goes away mid-run, a remote facilitator that fails, and startups refused for bad keys."""
    assert settings.evm is not None and settings.svm is not None
    run = Transcript()
    state = solana.state
    evm_rpc, svm_rpc = urlsplit(devnet.rpc_url), urlsplit(state["rpc_url"])
    evm_proxy = TcpProxy(evm_rpc.hostname or "127.0.0.1", evm_rpc.port or 80).start()
    svm_proxy = TcpProxy(svm_rpc.hostname or "127.0.0.1", svm_rpc.port or 80).start()
    try:
        proxied = with_settings(
            settings,
            evm=replace(settings.evm, rpc_url=f"http://127.0.0.1:{evm_proxy.port}", rpc_timeout_s=2.0),
            svm=replace(settings.svm, rpc_url=f"http://127.0.0.1:{svm_proxy.port}", rpc_timeout_s=2.0),
        )
        with running_gateway(proxied) as gateway:
            offer, svm_offer = await gateway.offer(CAPITALS), await gateway.offer(CAPITALS, "solana")
            evm_proxy.down()
            svm_proxy.down()
            evm_paid = pay_for(new_payer(devnet), devnet, offer)
            svm_paid = svm.pay(svm.new_payer(state), state, svm_offer)
            for header in (evm_paid, svm_paid):
                answer = await run.call(gateway, "GET", CAPITALS, headers={"PAYMENT-SIGNATURE": header})
                assert answer.status_code == 503, answer.text  # the RPC is gone: not verified, nothing charged
            await run.call(gateway, "GET", "/v1/health")
            evm_proxy.up()
            svm_proxy.up()
            for header in (evm_paid, svm_paid):  # the same payments, once the RPC is back
                answer = await run.call(gateway, "GET", CAPITALS, headers={"PAYMENT-SIGNATURE": header})
                assert answer.status_code == 200, answer.text
    finally:
        evm_proxy.stop()
        svm_proxy.stop()

    # a remote facilitator with an auth header, answering well and then badly
    relayer_key = "0x" + os.urandom(32).hex()
    rpc(devnet, "anvil_setBalance", Account.from_key(relayer_key).address, hex(10**20))
    fee_payer = Keypair()
    svm.rpc(state, "requestAirdrop", str(fee_payer.pubkey()), 10**10)
    double = FacilitatorDouble(devnet, relayer_key, state, fee_payer)
    facilitator = ServerThread(double.app()).start()
    remote = with_settings(
        settings,
        facilitator_url=facilitator.url,
        facilitator_auth=FACILITATOR_AUTH,
        facilitator_settle_timeout_s=1.5,
        evm=replace(settings.evm, rpc_url=None, relayer_key=None),
        svm=replace(settings.svm, rpc_url=None, fee_payer_key=None),
    )
    try:
        with running_gateway(remote) as gateway:
            offer = await gateway.offer(CAPITALS)
            for mode in ("ok", "verify_html", "settle_html", "settle_truncated", "settle_false"):
                double.mode = mode
                header = pay_for(new_payer(devnet), devnet, offer)
                answer = await run.call(gateway, "GET", CAPITALS, headers={"PAYMENT-SIGNATURE": header})
                assert (answer.status_code == 200) == (mode == "ok"), (mode, answer.status_code, answer.text)
                assert answer.status_code != 500
    finally:
        facilitator.stop()

    # startups that fail on a bad key or a dead RPC: what the operator sees must not hold the key either
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    failures = []
    for broken in (
        with_settings(settings, evm=replace(settings.evm, relayer_key=settings.evm.relayer_key + "ab")),
        with_settings(settings, svm=replace(settings.svm, fee_payer_key=settings.svm.fee_payer_key + "1")),
        with_settings(settings, evm=replace(settings.evm, rpc_url=dead, rpc_timeout_s=1.0)),
    ):
        app = create_app(broken)
        with pytest.raises(Exception) as died:  # the lifespan uvicorn runs; it logs this traceback and exits
            async with app.router.lifespan_context(app):
                pass
        failures.append("".join(traceback.format_exception(died.value)))
    run.parts.extend(failures)
    assert not [a for a in run.answers if a.status_code == 500]
    assert_nothing_leaked(settings, run, logs, capfd)


def _unsigned(claims: dict[str, Any]) -> str:
    """An `alg: none` token: refused, like any token not signed with the pinned algorithm."""

    def part(document: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."
