"""The baseline server for bench/paid.py: the official x402 Python middleware, as its README shows it.

A plain Starlette app with `PaymentMiddlewareASGI` in front of one route, an `x402ResourceServer`
whose facilitator client is an in-process `x402Facilitator` (exact EVM, `FacilitatorWeb3Signer`
with its own relayer key), served by uvicorn with 1 worker, uvloop and httptools like worldgate.
The route answers the bytes of one paid worldgate response, so both servers ship the same payload.

Configured by one JSON document in $BENCH_OFFICIAL_CONFIG (bench/paid.py writes it):
host, port, rpc_url, relayer_key, network, asset, pay_to, amount, eip712_name, eip712_version,
payload_path, path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from x402 import x402Facilitator, x402ResourceServer
from x402.http.middleware.fastapi import PaymentMiddlewareASGI
from x402.mechanisms.evm.exact import register_exact_evm_facilitator, register_exact_evm_server
from x402.mechanisms.evm.signers import FacilitatorWeb3Signer

CONFIG_ENV = "BENCH_OFFICIAL_CONFIG"


def build_app(config: dict[str, Any]) -> Starlette:
    network = str(config["network"])
    path = str(config["path"])
    payload = Path(config["payload_path"]).read_bytes()

    facilitator = x402Facilitator()
    signer = FacilitatorWeb3Signer(private_key=str(config["relayer_key"]), rpc_url=str(config["rpc_url"]))
    register_exact_evm_facilitator(facilitator, signer, networks=network)
    server = x402ResourceServer(facilitator)
    register_exact_evm_server(server, network)

    # The explicit AssetAmount form, so the offer is exactly worldgate's: 1000 atomic units of the
    # devnet asset with its EIP-712 domain in `extra`, paid to the devnet's payTo.
    routes: dict[str, Any] = {
        f"GET {path}": {
            "accepts": {
                "scheme": "exact",
                "network": network,
                "payTo": str(config["pay_to"]),
                "price": {
                    "amount": str(config["amount"]),
                    "asset": str(config["asset"]),
                    "extra": {"name": str(config["eip712_name"]), "version": str(config["eip712_version"])},
                },
            },
            "mimeType": "application/json",
        }
    }

    async def stream(request: Request) -> Response:
        return Response(payload, media_type="application/json")

    app = Starlette(routes=[Route(path, stream)])
    # Starlette builds the middleware on its first ASGI call (the lifespan startup); its constructor
    # calls the facilitator's get_supported() and exits the process (os._exit) if the network is
    # missing from the supported kinds, so a misconfiguration shows up as a server that never starts.
    app.add_middleware(PaymentMiddlewareASGI, routes=routes, server=server)
    return app


def main() -> None:
    config: dict[str, Any] = json.loads(os.environ[CONFIG_ENV])
    uvicorn.run(
        build_app(config),
        host=str(config.get("host", "127.0.0.1")),
        port=int(config["port"]),
        workers=1,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
