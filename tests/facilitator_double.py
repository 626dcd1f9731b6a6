"""A facilitator double on loopback: a real facilitator (worldgate's local one, on the devnet, with its
own relayer key) behind a switch that can make it answer the ways real facilitators fail."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import msgspec
from eth_account import Account
from solders.keypair import Keypair
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from payments import EvmRpc, ExactEvmScheme, ExactSvmScheme, LocalFacilitator, Relayer, SvmRpc, encode_json
from payments.codec import FacilitatorRequest
from payments.devnet.evm import EvmDevnet

from . import svm
from .chain import rpc
from .services import ServerThread

MODES = (
    "ok",
    "verify_html",
    "settle_html",
    "settle_truncated",
    "settle_false",
    "settle_timeout",
    "settle_503_after_settling",
    "settle_success_without_transaction",
    "settle_pending",
)


class FacilitatorDouble:
    def __init__(self, devnet: EvmDevnet, relayer_key: str, solana: dict[str, Any], fee_payer: Keypair) -> None:
        self.devnet = devnet
        self.relayer_key = relayer_key
        self.solana = solana
        self.fee_payer = fee_payer  # its own, not the gateway's: offers must name this one
        self.mode = "ok"
        self.calls: dict[str, int] = {"verify": 0, "settle": 0, "supported": 0}
        self.facilitator: LocalFacilitator | None = None

    def app(self) -> Starlette:
        @asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            rpc = EvmRpc(self.devnet.rpc_url)
            relayer = Relayer(rpc, self.relayer_key, self.devnet.chain_id)
            solana_rpc = SvmRpc(self.solana["rpc_url"])
            schemes = [
                ExactEvmScheme(self.devnet.network, rpc, relayer),
                ExactSvmScheme(self.solana["network"], solana_rpc, self.fee_payer),
            ]
            self.facilitator = LocalFacilitator(schemes, [rpc, solana_rpc])
            yield
            await self.facilitator.close()

        return Starlette(
            routes=[
                Route("/verify", self.verify, methods=["POST"]),
                Route("/settle", self.settle, methods=["POST"]),
                Route("/supported", self.supported),
            ],
            lifespan=lifespan,
        )

    async def _request(self, request: Request) -> FacilitatorRequest:
        return msgspec.json.decode(await request.body(), type=FacilitatorRequest)

    async def verify(self, request: Request) -> Response:
        self.calls["verify"] += 1
        if self.mode == "verify_html":
            return Response("<html><body>502 Bad Gateway</body></html>", 502, media_type="text/html")
        body = await self._request(request)
        assert self.facilitator is not None
        result = await self.facilitator.verify(body.payment_payload, body.payment_requirements)
        return Response(encode_json(result.response()), media_type="application/json")

    async def settle(self, request: Request) -> Response:
        self.calls["settle"] += 1
        body = await self._request(request)
        network = body.payment_requirements.network
        assert self.facilitator is not None
        if self.mode == "settle_html":
            return Response("<html><body>502 Bad Gateway</body></html>", 502, media_type="text/html")
        if self.mode == "settle_truncated":
            return Response(b'{"success": true, "transac', media_type="application/json")
        if self.mode == "settle_false":
            document = {"success": False, "errorReason": "insufficient_funds", "transaction": "", "network": network}
            return Response(encode_json(document), media_type="application/json")
        if self.mode == "settle_timeout":
            await asyncio.sleep(5)  # longer than the gateway waits (1.5 s), and then it does not settle
            return Response(b"", 504)
        if self.mode == "settle_success_without_transaction":
            return Response(encode_json({"success": True, "network": network}), media_type="application/json")
        if self.mode == "settle_pending":
            document = {"success": False, "errorReason": "settlement_pending", "transaction": "", "network": network}
            return Response(encode_json(document), media_type="application/json")
        result = await self.facilitator.settle(body.payment_payload, body.payment_requirements)
        if self.mode == "settle_503_after_settling":  # it did settle, then answered like an outage
            return Response(encode_json(result.response()), 503, media_type="application/json")
        return Response(encode_json(result.response()), media_type="application/json")

    async def supported(self, request: Request) -> Response:
        self.calls["supported"] += 1
        assert self.facilitator is not None
        return Response(encode_json(await self.facilitator.supported()), media_type="application/json")


@contextmanager
def serving_double(devnet: EvmDevnet, solana_state: dict[str, Any]) -> Iterator[tuple[FacilitatorDouble, str]]:
    """A double with its own funded relayer and fee payer, served over HTTP on 127.0.0.1: (double, its URL)."""
    relayer_key = "0x" + os.urandom(32).hex()
    rpc(devnet, "anvil_setBalance", Account.from_key(relayer_key).address, hex(10**20))
    fee_payer = Keypair()
    svm.rpc(solana_state, "requestAirdrop", str(fee_payer.pubkey()), 10**10)
    facilitator = FacilitatorDouble(devnet, relayer_key, solana_state, fee_payer)
    server = ServerThread(facilitator.app()).start()
    try:
        yield facilitator, server.url
    finally:
        server.stop()
