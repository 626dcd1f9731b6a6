"""`authenticate`: the step between `inspect` and anything recorded under the payer a payment names.

Against the anvil devnet. An EIP-3009 authorization whose signature does not recover to `from` passes
`inspect` (`from` may be a contract wallet); `authenticate` settles it with one remembered `eth_getCode`
and, for a contract, a simulated EIP-1271 `isValidSignature`. RPC traffic is counted by method.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from eth_account import Account

import payments
from payments import (
    EvmRpc,
    ExactEvmScheme,
    Inspection,
    LocalFacilitator,
    NetworkTerms,
    PaymentError,
    PaymentPayload,
    PaymentRequirements,
    Reason,
    Refusal,
    RemoteFacilitator,
    build_offer,
)
from payments.devnet.evm import EvmDevnet, deploy, mint
from payments.devnet.solana_process import SolanaDevnetProcess
from payments.evm.codes import NO_CODE_TTL_S_DEFAULT, CodeCache
from payments.jsonrpc import RpcUnavailable

from .chain import authorization_used, rpc, sign_authorization, usdc_balance
from .facilitator_double import FacilitatorDouble, serving_double

PRICE = 1000


class CountingRpc(EvmRpc):
    """The devnet's RPC, with every method asked for recorded; methods in `failing` fail as an outage would."""

    def __init__(self, url: str, failing: frozenset[str] = frozenset()) -> None:
        super().__init__(url)
        self.methods: list[str] = []
        self.failing = failing

    async def request(self, method: str, params: list[Any]) -> Any:
        self.methods.append(method)
        if method in self.failing:
            raise RpcUnavailable(f"{method}: node unreachable (test)")
        return await super().request(method, params)


@pytest.fixture
async def counting(devnet: EvmDevnet) -> AsyncIterator[CountingRpc]:
    node = CountingRpc(devnet.rpc_url)
    yield node
    await node.close()


def offer_for(devnet: EvmDevnet) -> PaymentRequirements:
    extra = {"name": devnet.eip712_name, "version": devnet.eip712_version}
    return build_offer(NetworkTerms(devnet.network, devnet.asset, devnet.pay_to, extra=extra), PRICE)


def payment(devnet: EvmDevnet, key: str, from_address: str | None = None) -> PaymentPayload:
    """An authorization for the offer signed by `key`, naming `from_address` as payer if given."""
    signed = sign_authorization(key, devnet, to=devnet.pay_to, value=PRICE, from_address=from_address)
    return PaymentPayload(x402_version=2, accepted=offer_for(devnet), payload=signed)


def inspected(devnet: EvmDevnet, payload: PaymentPayload) -> Inspection:
    inspection = payments.inspect(payload, offer_for(devnet))
    assert isinstance(inspection, Inspection), inspection
    return inspection


def stranger() -> str:
    return "0x" + os.urandom(32).hex()


def refused_signature(result: Refusal | None) -> Refusal:
    assert isinstance(result, Refusal), result
    assert result.reason == Reason.EVM_SIGNATURE
    return result


async def test_a_forgery_naming_the_devnet_payer_is_refused_before_anything_is_written(
    devnet: EvmDevnet, counting: CountingRpc
) -> None:
    scheme = ExactEvmScheme(devnet.network, counting, None)
    facilitator = LocalFacilitator([scheme])
    forged = payment(devnet, stranger(), from_address=devnet.payer_address)
    inspection = inspected(devnet, forged)
    assert inspection.payer == devnet.payer_address.lower() and not inspection.signer_verified
    nonce = forged.payload["authorization"]["nonce"]
    balance, block = usdc_balance(devnet, devnet.payer_address), rpc(devnet, "eth_blockNumber")

    refusal = refused_signature(await payments.authenticate(facilitator, forged, forged.accepted, inspection))
    assert "no contract code" in refusal.message
    assert counting.methods == ["eth_getCode"]  # one read, nothing sent
    refused_signature(await facilitator.authenticate(forged, forged.accepted, inspection))
    refused_signature(await scheme.authenticate(forged, forged.accepted, inspection))
    assert counting.methods == ["eth_getCode"]  # remembered

    # verify shares what authenticate learnt: the same refusal, without asking again
    verification = await facilitator.verify(forged, forged.accepted)
    assert not verification.valid and verification.reason == Reason.EVM_SIGNATURE
    assert counting.methods == ["eth_getCode"]
    assert not authorization_used(devnet, devnet.payer_address, nonce)
    assert usdc_balance(devnet, devnet.payer_address) == balance
    assert rpc(devnet, "eth_blockNumber") == block


async def test_a_genuine_authorization_passes_without_any_rpc_call(devnet: EvmDevnet, counting: CountingRpc) -> None:
    scheme = ExactEvmScheme(devnet.network, counting, None)
    facilitator = LocalFacilitator([scheme])
    genuine = payment(devnet, devnet.payer_private_key)
    inspection = inspected(devnet, genuine)
    assert inspection.signer_verified

    assert await payments.authenticate(facilitator, genuine, genuine.accepted, inspection) is None
    assert await facilitator.authenticate(genuine, genuine.accepted, inspection) is None
    assert await scheme.authenticate(genuine, genuine.accepted, inspection) is None
    assert counting.methods == []
    verification = await facilitator.verify(genuine, genuine.accepted)  # and it still verifies in full
    assert verification.valid, verification
    assert "eth_getCode" in counting.methods  # the asset's code, checked by verify: not the payer's


async def test_repeated_forgeries_of_one_from_cost_one_get_code(devnet: EvmDevnet, counting: CountingRpc) -> None:
    now = [1000.0]
    codes = CodeCache(counting, clock=lambda: now[0])
    scheme = ExactEvmScheme(devnet.network, counting, None, codes=codes)
    for _ in range(5):  # different keys, different nonces, one `from`
        forged = payment(devnet, stranger(), from_address=devnet.payer_address)
        refused_signature(await scheme.authenticate(forged, forged.accepted, inspected(devnet, forged)))
    assert counting.methods == ["eth_getCode"]

    victim = Account.create().address  # a flood of concurrent forgeries shares one lookup
    flood = [payment(devnet, stranger(), from_address=victim) for _ in range(8)]
    answers = await asyncio.gather(*(scheme.authenticate(p, p.accepted, inspected(devnet, p)) for p in flood))
    assert all(isinstance(a, Refusal) and a.reason == Reason.EVM_SIGNATURE for a in answers)
    assert counting.methods == ["eth_getCode"] * 2

    now[0] += NO_CODE_TTL_S_DEFAULT + 1  # "no code" is remembered briefly: a wallet may be deployed there
    forged = payment(devnet, stranger(), from_address=devnet.payer_address)
    refused_signature(await scheme.authenticate(forged, forged.accepted, inspected(devnet, forged)))
    assert counting.methods == ["eth_getCode"] * 3


async def test_the_code_cache_is_bounded_and_remembers_code_longer(devnet: EvmDevnet, counting: CountingRpc) -> None:
    now = [0.0]
    codes = CodeCache(counting, entries_max=2, code_ttl_s=300.0, no_code_ttl_s=15.0, clock=lambda: now[0])
    first, second, third = (Account.create().address for _ in range(3))
    for address in (first, second, third):
        assert await codes.has_code(address) is False
    assert len(codes) == 2 and codes.cached(first) is None  # the oldest went out
    assert codes.cached(third) is False
    assert await codes.has_code(devnet.asset) is True
    now[0] += 60.0
    assert codes.cached(devnet.asset) is True and codes.cached(third) is None
    now[0] += 300.0
    assert codes.cached(devnet.asset) is None


async def test_a_contract_wallet_is_asked_by_eip1271(devnet: EvmDevnet, counting: CountingRpc) -> None:
    owner = Account.create()
    wallet = deploy(devnet.rpc_url, "TestWallet", ["address"], [owner.address])
    scheme = ExactEvmScheme(devnet.network, counting, None)

    by_owner = payment(devnet, owner.key.hex(), from_address=wallet)
    inspection = inspected(devnet, by_owner)
    assert not inspection.signer_verified  # ECDSA recovers the owner, not the wallet
    assert await scheme.authenticate(by_owner, by_owner.accepted, inspection) is None
    assert counting.methods == ["eth_getCode", "eth_call"]

    by_stranger = payment(devnet, stranger(), from_address=wallet)
    refusal = refused_signature(
        await scheme.authenticate(by_stranger, by_stranger.accepted, inspected(devnet, by_stranger))
    )
    assert "EIP-1271" in refusal.message
    assert counting.methods == ["eth_getCode", "eth_call", "eth_call"]  # its code is remembered


async def test_a_contract_without_isvalidsignature_is_refused(devnet: EvmDevnet, counting: CountingRpc) -> None:
    """Code at `from` is not enough: the token contract itself has code, and no EIP-1271."""
    scheme = ExactEvmScheme(devnet.network, counting, None)
    forged = payment(devnet, stranger(), from_address=devnet.asset)
    refused_signature(await scheme.authenticate(forged, forged.accepted, inspected(devnet, forged)))
    assert counting.methods == ["eth_getCode", "eth_call"]


async def test_a_node_that_cannot_answer_raises_payment_error_and_is_not_remembered(devnet: EvmDevnet) -> None:
    forged = payment(devnet, stranger(), from_address=devnet.payer_address)
    inspection = inspected(devnet, forged)
    down = EvmRpc("http://127.0.0.1:1", timeout_s=2.0)  # nothing listens there
    codes = CodeCache(down)
    facilitator = LocalFacilitator([ExactEvmScheme(devnet.network, down, None, codes=codes)], [down])
    try:
        with pytest.raises(PaymentError) as raised:
            await payments.authenticate(facilitator, forged, forged.accepted, inspection)
        assert raised.value.reason == Reason.UNEXPECTED_VERIFY_ERROR  # what the checkout answers as unavailable
        assert codes.cached(devnet.payer_address) is None
        genuine = payment(devnet, devnet.payer_private_key)  # a verified signer never needs the node
        assert await facilitator.authenticate(genuine, genuine.accepted, inspected(devnet, genuine)) is None
    finally:
        await facilitator.close()

    owner = Account.create()  # the wallet's code is read, then its isValidSignature call fails
    wallet = deploy(devnet.rpc_url, "TestWallet", ["address"], [owner.address])
    flaky = CountingRpc(devnet.rpc_url, failing=frozenset({"eth_call"}))
    try:
        by_owner = payment(devnet, owner.key.hex(), from_address=wallet)
        with pytest.raises(PaymentError):
            await ExactEvmScheme(devnet.network, flaky, None).authenticate(
                by_owner, by_owner.accepted, inspected(devnet, by_owner)
            )
    finally:
        await flaky.close()


async def test_authenticate_refuses_what_inspect_would(devnet: EvmDevnet, counting: CountingRpc) -> None:
    """Called on its own, it re-checks the payment rather than trusting the inspection it is handed."""
    scheme = ExactEvmScheme(devnet.network, counting, None)
    forged = payment(devnet, stranger(), from_address=devnet.payer_address)
    inspection = inspected(devnet, forged)
    elsewhere = build_offer(NetworkTerms(devnet.network, devnet.asset, Account.create().address), PRICE)
    refusal = await scheme.authenticate(forged, elsewhere, inspection)
    assert isinstance(refusal, Refusal) and refusal.reason == Reason.MISSING_EIP712_DOMAIN
    assert counting.methods == []
    unsupported = LocalFacilitator([])
    refusal = await unsupported.authenticate(forged, forged.accepted, inspection)
    assert isinstance(refusal, Refusal) and refusal.reason == Reason.UNSUPPORTED_SCHEME


# ---- a remote facilitator: its /verify decides, and only for signatures inspect could not check ----


@pytest.fixture
def double(devnet: EvmDevnet, solana: SolanaDevnetProcess) -> Iterator[tuple[FacilitatorDouble, str]]:
    with serving_double(devnet, solana.state) as served:
        yield served


async def test_a_remote_facilitator_verifies_only_unverified_signatures(
    devnet: EvmDevnet, double: tuple[FacilitatorDouble, str]
) -> None:
    facilitator, url = double
    remote = RemoteFacilitator(url)
    try:
        genuine = payment(devnet, devnet.payer_private_key)
        assert await payments.authenticate(remote, genuine, genuine.accepted, inspected(devnet, genuine)) is None
        assert await remote.authenticate(genuine, genuine.accepted, inspected(devnet, genuine)) is None
        assert facilitator.calls["verify"] == 0

        forged = payment(devnet, stranger(), from_address=devnet.payer_address)
        refused_signature(await remote.authenticate(forged, forged.accepted, inspected(devnet, forged)))
        assert facilitator.calls["verify"] == 1

        owner = Account.create()
        wallet = deploy(devnet.rpc_url, "TestWallet", ["address"], [owner.address])
        mint(devnet.rpc_url, devnet.asset, wallet, PRICE)  # the remote /verify simulates the whole transfer
        by_owner = payment(devnet, owner.key.hex(), from_address=wallet)
        assert await remote.authenticate(by_owner, by_owner.accepted, inspected(devnet, by_owner)) is None
        assert facilitator.calls["verify"] == 2

        facilitator.mode = "verify_html"  # an answer we cannot read: unavailable, not refused
        with pytest.raises(PaymentError) as raised:
            await remote.authenticate(forged, forged.accepted, inspected(devnet, forged))
        assert raised.value.reason == Reason.UNEXPECTED_VERIFY_ERROR
    finally:
        facilitator.mode = "ok"
        await remote.close()
