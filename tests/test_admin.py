"""The admin API: who gets in (JWT rules), and what the operator's controls do to the paid path."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from eth_account import Account

from app.edge.admin.auth import COOKIE, mint
from app.runtime.settings import AdminSettings, Settings
from payments.devnet.evm import EvmDevnet

from .chain import new_payer, pay_for, usdc_balance
from .conftest import ADMIN_SECRET, Gateway, running_gateway, with_settings

AUDIENCE = "worldgate-admin"
QUAKES = "/v1/streams/quakes.usgs"
CAPITALS = "/v1/streams/static.capitals"


def token(subject: str = "ops@test", ttl_s: int = 600, secret: str = ADMIN_SECRET, **claims: Any) -> str:
    now = int(time.time())
    return jwt.encode({"sub": subject, "aud": AUDIENCE, "iat": now, "exp": now + ttl_s, **claims}, secret, "HS256")


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


async def admin_get(gateway: Gateway, path: str, value: str | None = None, **kwargs: Any) -> httpx.Response:
    return await gateway.get(path, headers=bearer(value or token()), **kwargs)


async def admin_call(gateway: Gateway, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {**bearer(token()), **kwargs.pop("headers", {})}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        return await client.request(method, path, headers=headers, **kwargs)


def _pem_pair(private: Any) -> tuple[str, str]:
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


# ---- who gets in ----


def _part(document: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()


def _unsigned(claims: dict[str, Any]) -> str:
    """A token with `alg: none`, as an attacker would send it."""
    return f"{_part({'alg': 'none', 'typ': 'JWT'})}.{_part(claims)}."


def _hs256_by_hand(claims: dict[str, Any], key: bytes) -> str:
    """HS256 keyed with arbitrary bytes (pyjwt refuses a PEM as an HMAC key; an attacker would not)."""
    signing_input = f"{_part({'alg': 'HS256', 'typ': 'JWT'})}.{_part(claims)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def _new_key(algorithm: str) -> Any:
    return rsa.generate_private_key(65537, 2048) if algorithm == "RS256" else ec.generate_private_key(ec.SECP256R1())


async def test_tokens_that_must_not_get_in(gateway: Gateway) -> None:
    now = int(time.time())
    refused = {
        "no token": None,
        "expired": token(ttl_s=-60),
        "another audience": token(aud="someone-else"),
        "alg none": _unsigned({"sub": "x", "aud": AUDIENCE, "exp": now + 600}),
        "wrong key": token(secret="another-secret-that-is-long-enough-0123456789"),
        "no exp": jwt.encode({"sub": "x", "aud": AUDIENCE}, ADMIN_SECRET, "HS256"),
        "no subject": jwt.encode({"aud": AUDIENCE, "exp": now + 600}, ADMIN_SECRET, "HS256"),
        "garbage": "not.a.token",
    }
    for case, value in refused.items():
        headers = bearer(value) if value else {}
        answer = await gateway.get("/admin/api/reports", headers=headers)
        assert answer.status_code == 401, case
        assert answer.json()["error"] == "unauthorized" and answer.headers["www-authenticate"].startswith("Bearer")
        assert ADMIN_SECRET not in answer.text and (value is None or value not in answer.text)
    basic = await gateway.get("/admin/api/reports", headers={"authorization": "Basic b3BzOm9wcw=="})
    assert basic.status_code == 401

    ok = await admin_get(gateway, "/admin/api/reports?group_by=network")
    assert ok.status_code == 200, ok.text
    assert {"group_by", "rows", "totals"} <= ok.json().keys()
    whoami = (await admin_get(gateway, "/admin/api/whoami")).json()
    assert whoami["subject"] == "ops@test" and whoami["session"] is False


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
async def test_asymmetric_keys_and_the_algorithm_pinned(algorithm: str, settings: Settings) -> None:
    private_pem, public_pem = _pem_pair(_new_key(algorithm))
    admin = AdminSettings(algorithm=algorithm, public_key=public_pem, audience=AUDIENCE)
    with running_gateway(with_settings(settings, admin=admin)) as gateway:
        good = mint(private_pem, AUDIENCE, "ops@test", 600, algorithm=algorithm)
        assert (await admin_get(gateway, "/admin/api/whoami", good)).status_code == 200
        # The classic confusion: an HS256 token keyed with the public key, which is public.
        claims = {"sub": "x", "aud": AUDIENCE, "exp": int(time.time()) + 600}
        confused = _hs256_by_hand(claims, public_pem.encode())
        assert (await admin_get(gateway, "/admin/api/whoami", confused)).status_code == 401
        assert (await admin_get(gateway, "/admin/api/whoami", _unsigned(claims))).status_code == 401
        other_private, _ = _pem_pair(_new_key(algorithm))
        forged = mint(other_private, AUDIENCE, "ops@test", 600, algorithm=algorithm)
        assert (await admin_get(gateway, "/admin/api/whoami", forged)).status_code == 401


async def test_without_a_key_the_admin_api_is_closed(settings: Settings) -> None:
    with running_gateway(with_settings(settings, admin=AdminSettings())) as gateway:
        answer = await admin_get(gateway, "/admin/api/whoami", token())
    assert answer.status_code == 401 and "not configured" in answer.json()["message"]


async def test_a_session_cookie_works_but_changes_need_our_origin(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, cookies={COOKIE: token()}, timeout=30) as client:
        assert (await client.get("/admin/api/whoami")).json()["session"] is True
        body = {"payer": "0x" + "ab" * 20, "reason": "csrf probe"}
        forged = await client.post("/admin/api/bans", json=body, headers={"origin": "https://evil.example"})
        assert forged.status_code == 401
        missing = await client.post("/admin/api/bans", json=body)
        assert missing.status_code == 401
        ours = await client.post("/admin/api/bans", json=body, headers={"origin": gateway.url})
        assert ours.status_code == 201
        assert (
            await client.delete(f"/admin/api/bans/{body['payer']}", headers={"origin": gateway.url})
        ).status_code == 200


# ---- bans ----


async def test_a_banned_payer_is_refused_before_verification(
    gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    key = new_payer(devnet)
    payer = Account.from_key(key).address
    banned = await admin_call(gateway, "POST", "/admin/api/bans", json={"payer": payer, "reason": "chargeback fraud"})
    assert banned.status_code == 201 and banned.json()["payer"] == payer.lower()
    assert banned.json()["created_by"] == "ops@test"

    offer = await gateway.offer(CAPITALS)
    refused = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": pay_for(key, devnet, offer)})
    assert refused.status_code == 403 and refused.json()["error"] == "payer_banned"
    assert await pool.fetchval("SELECT count(*) FROM payments WHERE payer = $1", payer.lower()) == 0
    assert usdc_balance(devnet, payer) == 10_000_000
    listed = (await admin_get(gateway, "/admin/api/bans")).json()["bans"]
    assert any(b["payer"] == payer.lower() and b["reason"] == "chargeback fraud" for b in listed)

    assert (await admin_call(gateway, "DELETE", f"/admin/api/bans/{payer}")).status_code == 200
    served = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": pay_for(key, devnet, offer)})
    assert served.status_code == 200
    assert (await admin_call(gateway, "DELETE", f"/admin/api/bans/{payer}")).status_code == 404


async def test_a_ban_reaches_another_worker_at_once(settings: Settings, devnet: EvmDevnet) -> None:
    """Two gateways on one database stand for two workers: a ban written through one binds the other."""
    with running_gateway(settings) as first, running_gateway(settings) as second:
        key = new_payer(devnet)
        payer = Account.from_key(key).address
        await admin_call(first, "POST", "/admin/api/bans", json={"payer": payer, "reason": "abuse"})
        offer = await second.offer(CAPITALS)
        deadline = time.monotonic() + 5
        while True:
            answer = await second.get(CAPITALS, headers={"PAYMENT-SIGNATURE": pay_for(key, devnet, offer)})
            if answer.status_code == 403 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert answer.status_code == 403
        await admin_call(first, "DELETE", f"/admin/api/bans/{payer}")


# ---- stream sharing ----


async def share(gateway: Gateway, state: str, stream: str = "static.volcanoes") -> httpx.Response:
    return await admin_call(gateway, "PUT", f"/admin/api/streams/{stream}/sharing", json={"sharing": state})


async def test_sharing_set_at_run_time_changes_what_is_sold(settings: Settings, devnet: EvmDevnet) -> None:
    with running_gateway(settings) as gateway:
        try:
            hidden = await share(gateway, "not_shared")
            assert hidden.status_code == 200
            catalog = {s["id"] for s in (await gateway.get("/v1/streams")).json()["streams"]}
            assert "static.volcanoes" not in catalog
            assert (await gateway.get("/v1/streams/static.volcanoes")).status_code == 404
            matrix = {s["id"]: s for s in (await admin_get(gateway, "/admin/api/streams")).json()["streams"]}
            assert matrix["static.volcanoes"]["sharing"] == "not_shared"  # the operator still sees it

            await share(gateway, "maintenance")
            maintenance = await gateway.get("/v1/streams/static.volcanoes")
            assert maintenance.status_code == 503 and maintenance.json()["error"] == "stream_in_maintenance"
        finally:
            await share(gateway, "ok")
        assert (await gateway.get("/v1/streams/static.volcanoes")).status_code == 402
        bad = await share(gateway, "hidden")
        assert bad.status_code == 400
        unknown = await share(gateway, "ok", "no.such")
        assert unknown.status_code == 404


# ---- payments, the queue ----


async def test_payments_search_and_detail(gateway: Gateway, devnet: EvmDevnet) -> None:
    key = new_payer(devnet)
    payer = Account.from_key(key).address
    offer = await gateway.offer(CAPITALS)
    assert (await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": pay_for(key, devnet, offer)})).status_code == 200

    found = (await admin_get(gateway, f"/admin/api/payments?payer={payer}")).json()
    [row] = found["payments"]
    assert row["state"] == "settled" and row["amount_atomic"] == 1000 and row["stream"] == "static.capitals"
    detail = (await admin_get(gateway, f"/admin/api/payments/{row['id']}")).json()
    assert [e["to_state"] for e in detail["events"]][-1] == "settled"
    assert sum(line["amount_atomic"] for line in detail["journal"] if line["asset"].endswith(devnet.asset.lower())) == 0
    assert (await admin_get(gateway, "/admin/api/payments/999999999")).status_code == 404
    assert (await admin_get(gateway, "/admin/api/payments?state=bogus")).status_code == 400
    assert (await admin_get(gateway, "/admin/api/payments?limit=0")).status_code == 400
    # "²" is a digit to str.isdigit() but not to int(): a 404 and a 400, never a 500
    assert (await admin_get(gateway, "/admin/api/payments/%C2%B2")).status_code == 404
    assert (await admin_get(gateway, "/admin/api/payments?limit=%C2%B2")).status_code == 400

    queue = (await admin_get(gateway, "/admin/api/queue")).json()
    assert {"states", "exposure_atomic", "open_flags", "reconcile_runs"} <= queue.keys()
