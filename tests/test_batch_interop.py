"""The official x402 Python client (2.25.0, unmodified, in .venv-x402-svm) against our batch-settlement core.

Headers travel as on the wire: our PAYMENT-REQUIRED (built by our offer builder) goes to the SDK's
x402ClientSync; its PAYMENT-SIGNATURE comes back through our header decoder, offer match and local
check; the deposit is verified and sent on anvil; our PAYMENT-RESPONSE feeds the SDK's own
payment-response hook, and our corrective 402 its recovery. The SDK runs in tests/clients/batch_sdk.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from payments import (
    NetworkTerms,
    PaymentPayload,
    PaymentRequired,
    PaymentRequirements,
    Reason,
    Refusal,
    ResourceInfo,
    decode_payment_header,
    encode_header,
    match_offer,
)
from payments.devnet import batch as devnet_batch
from payments.devnet.evm import EvmDevnet, devnet_key, mint
from payments.evm.batch import (
    BATCH_SETTLEMENT_ADDRESS,
    BatchSettlementChain,
    BatchSettleResponse,
    ChannelSnapshot,
    CheckedVoucher,
    ClaimRow,
    LocalAuthorizer,
    PaymentResponseExtra,
    batch_terms,
    build_batch_offer,
    check_payment,
    corrective_requirements,
    next_cumulative_ok,
)
from payments.evm.relayer import Relayer
from payments.evm.rpc import EvmRpc

ROOT = Path(__file__).resolve().parents[1]
SDK_PYTHON = ROOT / ".venv-x402-svm" / "bin" / "python"
SDK_SCRIPT = ROOT / "tests" / "clients" / "batch_sdk.py"
CHAIN_ID = 84532
USDC = 10**6
PRICE = 10_000
AUTHORIZER_KEY = devnet_key("batch interop receiver authorizer")


class Sdk:
    """One SDK client process: a JSON command per line in, a JSON answer per line out."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [str(SDK_PYTHON), str(SDK_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=str(ROOT / "tests" / "clients"),
        )

    def ask(self, **command: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            stderr = self.process.stderr.read() if self.process.stderr else ""
            raise AssertionError(f"the SDK process died: {stderr[-2000:]}")
        answer: dict[str, Any] = json.loads(line)
        assert "error" not in answer, answer["error"]
        return answer

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def sdk_factory() -> Iterator[Any]:
    if not SDK_PYTHON.exists():
        pytest.skip(".venv-x402-svm (the official x402 SDK venv) is not installed: run `make install`")
    started: list[Sdk] = []

    def start() -> Sdk:
        started.append(Sdk())
        return started[-1]

    yield start
    for sdk in started:
        sdk.close()


class Server:
    """Our side: the offer, its PAYMENT-REQUIRED, and the ledger's part played by two fields."""

    def __init__(self, devnet: EvmDevnet, rpc: EvmRpc) -> None:
        devnet_batch.install_batch_settlement(devnet.rpc_url)
        self.devnet = devnet
        self.pay_to = Account.create().address
        exact = NetworkTerms(
            devnet.network,
            devnet.asset,
            self.pay_to,
            extra={"name": devnet.eip712_name, "version": devnet.eip712_version},
        )
        self.offer = build_batch_offer(batch_terms(exact, Account.from_key(AUTHORIZER_KEY).address), PRICE)
        relayer = Relayer(rpc, devnet.relayer_private_key, CHAIN_ID, gas_limit=1_000_000)
        self.chain = BatchSettlementChain(devnet.network, rpc, relayer, LocalAuthorizer(AUTHORIZER_KEY))
        self.charged = 0  # what the ledger would hold per channel: the charged total and the last voucher
        self.last: CheckedVoucher | None = None

    def payment_required(self, offer: PaymentRequirements | None = None, error: str | None = None) -> str:
        required = PaymentRequired(
            x402_version=2,
            accepts=[offer or self.offer],
            error=error,
            resource=ResourceInfo(url="http://worldgate.test/v1/quote"),
        )
        return encode_header(required)

    def accept(self, header: str) -> CheckedVoucher | Refusal:
        payload = decode_payment_header(header, version=2)
        assert isinstance(payload, PaymentPayload), payload
        offer = match_offer(payload.accepted, [self.offer])
        assert not isinstance(offer, Refusal), offer
        return check_payment(payload, offer)

    def response(self, snapshot: ChannelSnapshot, transaction: str = "", deposited: int | None = None) -> str:
        extra = PaymentResponseExtra(charged_amount=str(PRICE), channel_state=snapshot.state_extra(self.charged))
        amount = "" if deposited is None else str(deposited)
        assert self.last is not None
        response = BatchSettleResponse(
            True, transaction, self.devnet.network, payer=self.last.payer, amount=amount, extra=extra
        )
        return encode_header(response)


@pytest.fixture
async def server(devnet: EvmDevnet) -> AsyncIterator[Server]:
    rpc = EvmRpc(devnet.rpc_url)
    yield Server(devnet, rpc)
    await rpc.close()


async def test_the_official_client_deposits_then_pays_by_voucher(
    server: Server, devnet: EvmDevnet, sdk_factory: Any
) -> None:
    payer_key = "0x" + os.urandom(32).hex()
    payer = Account.from_key(payer_key).address
    mint(devnet.rpc_url, devnet.asset, payer, 10 * USDC)
    sdk = sdk_factory()
    sdk.ask(op="init", key=payer_key, paymentRequired=server.payment_required())

    # First request: a deposit (the announced minDeposit, ten requests' worth) and a voucher for one price.
    deposit = server.accept(sdk.ask(op="pay")["header"])
    assert isinstance(deposit, CheckedVoucher), deposit
    assert deposit.kind == "deposit" and deposit.deposit is not None
    assert (deposit.payer, deposit.max_claimable, deposit.deposit.amount) == (payer.lower(), PRICE, 10 * PRICE)
    assert next_cumulative_ok(server.charged, PRICE, deposit.max_claimable, deposit.deposit.amount) is None
    escrow_before = await server.chain.token_balance(devnet.asset, BATCH_SETTLEMENT_ADDRESS)
    outcome = await server.chain.deposit(deposit, min_deposit=10 * PRICE)
    assert outcome.success, outcome
    assert await server.chain.token_balance(devnet.asset, BATCH_SETTLEMENT_ADDRESS) == escrow_before + 10 * PRICE
    server.charged, server.last = PRICE, deposit
    [channel] = outcome.channels
    local = sdk.ask(op="response", paymentResponse=server.response(channel, outcome.transaction, 10 * PRICE))
    assert local["channel"]["chargedCumulativeAmount"] == str(PRICE)
    assert local["channel"]["balance"] == str(10 * PRICE)

    # Then vouchers only, each exactly one price above the last charge.
    for k in range(2, 5):
        voucher = server.accept(sdk.ask(op="pay")["header"])
        assert isinstance(voucher, CheckedVoucher), voucher
        assert (voucher.kind, voucher.channel_id, voucher.max_claimable) == ("voucher", deposit.channel_id, k * PRICE)
        assert next_cumulative_ok(server.charged, PRICE, voucher.max_claimable, channel.balance) is None
        verified = await server.chain.verify_voucher(voucher)
        assert isinstance(verified, ChannelSnapshot), verified
        server.charged, server.last = k * PRICE, voucher
        local = sdk.ask(op="response", paymentResponse=server.response(verified))
        assert local["channel"]["chargedCumulativeAmount"] == str(k * PRICE)

    # The last voucher claims on chain as the SDK signed it.
    last = server.last
    claimed = await server.chain.claim([ClaimRow(last.config, last.max_claimable, last.signature, server.charged)])
    assert claimed.success and claimed.amount == 4 * PRICE, claimed


async def test_the_official_client_recovers_from_our_corrective_402(
    server: Server, devnet: EvmDevnet, sdk_factory: Any
) -> None:
    """A client that lost its state signs from on-chain totalClaimed; our corrective 402 (channelState and the
    voucher we hold) re-bases it, and its next voucher is exactly one price above our charge."""
    payer_key = "0x" + os.urandom(32).hex()
    mint(devnet.rpc_url, devnet.asset, Account.from_key(payer_key).address, 10 * USDC)
    first = sdk_factory()
    first.ask(op="init", key=payer_key, paymentRequired=server.payment_required())
    deposit = server.accept(first.ask(op="pay")["header"])
    assert isinstance(deposit, CheckedVoucher)
    outcome = await server.chain.deposit(deposit)
    assert outcome.success, outcome
    server.charged, server.last = PRICE, deposit
    first.ask(op="response", paymentResponse=server.response(outcome.channels[0], outcome.transaction, 10 * PRICE))
    for k in (2, 3):
        voucher = server.accept(first.ask(op="pay")["header"])
        assert isinstance(voucher, CheckedVoucher)
        server.charged, server.last = k * PRICE, voucher
        first.ask(op="response", paymentResponse=server.response(outcome.channels[0]))

    fresh = sdk_factory()  # same key, empty storage, reads the chain
    fresh.ask(op="init", key=payer_key, paymentRequired=server.payment_required(), rpcUrl=devnet.rpc_url)
    stale = server.accept(fresh.ask(op="pay")["header"])
    assert isinstance(stale, CheckedVoucher) and stale.max_claimable == PRICE  # re-based on totalClaimed = 0
    refused = next_cumulative_ok(server.charged, PRICE, stale.max_claimable, outcome.channels[0].balance)
    assert refused is not None and refused.reason == Reason.BATCH_CUMULATIVE_AMOUNT_MISMATCH

    snapshot = await server.chain.read_channel(deposit.channel_id)
    held = server.last
    corrective = corrective_requirements(
        server.offer, snapshot.state_extra(server.charged), held.max_claimable, held.signature_hex
    )
    recovered = fresh.ask(op="corrective", paymentRequired=server.payment_required(corrective, refused.reason))
    assert recovered["recovered"] is True
    assert recovered["channel"]["chargedCumulativeAmount"] == str(3 * PRICE)
    retried = server.accept(fresh.ask(op="pay")["header"])
    assert isinstance(retried, CheckedVoucher) and retried.kind == "voucher", retried
    assert next_cumulative_ok(server.charged, PRICE, retried.max_claimable, snapshot.balance) is None
