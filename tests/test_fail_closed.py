"""Fail closed: with Postgres unreachable no paid data leaves and nothing is charged; free routes keep serving."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit, urlunsplit

from eth_account import Account

from app.runtime.settings import Settings, replace
from payments.devnet.evm import EvmDevnet

from .chain import new_payer, pay_for, usdc_balance
from .conftest import running_gateway
from .services import Database, TcpProxy

PATH = "/v1/streams/static.capitals"


async def test_database_outage_fails_paid_routes_closed(
    settings: Settings, database: Database, devnet: EvmDevnet
) -> None:
    parts = urlsplit(database.url)
    socket_dir = dict(parse_qsl(parts.query)).get("host")  # embedded Postgres listens on a unix socket only
    proxy = TcpProxy(socket_dir or parts.hostname or "127.0.0.1", parts.port or 5432).start()
    proxied = urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{proxy.port}", query=""))
    try:
        with running_gateway(replace(settings, database_url=proxied)) as gateway:
            key = new_payer(devnet)
            payer = Account.from_key(key).address
            offer = await gateway.offer(PATH)
            pay_to_before = usdc_balance(devnet, devnet.pay_to)

            proxy.down()
            answer = await gateway.get(PATH, headers={"PAYMENT-SIGNATURE": pay_for(key, devnet, offer)})
            assert answer.status_code == 503
            assert answer.json()["reason"] == "ledger_unavailable" and "records" not in answer.text
            assert answer.headers["retry-after"] == "5"
            assert (await gateway.get(PATH)).status_code == 402  # quoting needs no database
            assert (await gateway.get("/v1/streams")).status_code == 200  # free routes keep serving
            health = await gateway.get("/v1/health")
            assert health.status_code == 503 and health.json()["status"] == "down"
            assert usdc_balance(devnet, payer) == 10_000_000
            assert usdc_balance(devnet, devnet.pay_to) == pay_to_before

            proxy.up()  # the database comes back: the pool reconnects and payments work again
            for _ in range(3):
                answer = await gateway.get(PATH, headers={"PAYMENT-SIGNATURE": pay_for(key, devnet, offer)})
                if answer.status_code == 200:
                    break
            assert answer.status_code == 200
            assert usdc_balance(devnet, payer) == 10_000_000 - int(offer["amount"])
    finally:
        proxy.stop()
