"""Chain auditors: what anvil and the Solana devnet show for one payment, read back from real transactions.

Every finding here is about a transaction that really ran (or really did not): settled through the
real schemes, reverted on chain, moved a different amount, or never sent. Gas is checked against
the gas payer's native balance, not against the receipt the auditor itself reads.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from eth_account import Account
from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from payments import (
    ChainAuditor,
    EvmAuditor,
    EvmRpc,
    ExactEvmScheme,
    ExactSvmScheme,
    PaymentPayload,
    PaymentRequirements,
    Relayer,
    SettlementFinding,
    SvmAuditor,
    SvmRpc,
    inspect,
)
from payments.devnet.evm import EvmDevnet, address_of, calldata, devnet_key
from payments.devnet.solana_process import SolanaDevnetProcess
from payments.evm.client import sign_transfer_authorization
from payments.evm.exact import Authorization, parse_authorization, transfer_calldata
from payments.jsonrpc import RpcUnavailable
from payments.outcomes import Inspection
from payments.svm import programs
from payments.svm.client import encode_transaction, payment_instructions, sign_partially

PRICE = 1000
CLOSED_PORT_URL = "http://127.0.0.1:9"  # nothing listens on the discard port: connection refused


# ---- EVM ----


@pytest.fixture
async def evm_rpc(devnet: EvmDevnet) -> AsyncIterator[EvmRpc]:
    rpc = EvmRpc(devnet.rpc_url)
    yield rpc
    await rpc.close()


@pytest.fixture
async def relayer(devnet: EvmDevnet, evm_rpc: EvmRpc) -> Relayer:
    """A relayer of its own (not the gateway's key), so its ETH balance moves only with these tests' sends."""
    key = "0x" + os.urandom(32).hex()
    await evm_rpc.request("anvil_setBalance", [address_of(key), hex(10**18)])
    return Relayer(evm_rpc, key, devnet.chain_id)


async def _mined(rpc: EvmRpc, tx_hash: str) -> dict[str, Any]:
    for _ in range(500):  # automine: the receipt is there at once, or very nearly
        receipt = await rpc.get_transaction_receipt(tx_hash)
        if receipt is not None:
            return receipt
        await asyncio.sleep(0.01)
    raise AssertionError(f"{tx_hash} was not mined")


async def _new_evm_payer(rpc: EvmRpc, devnet: EvmDevnet, usdc_atomic: int = 10_000_000) -> str:
    """A fresh key holding devnet USDC, minted by the token owner anvil impersonates."""
    key = "0x" + os.urandom(32).hex()
    owner = address_of(devnet_key("token owner"))
    await rpc.request("anvil_impersonateAccount", [owner])
    tx = {"from": owner, "to": devnet.asset, "data": calldata("mint(address,uint256)", address_of(key), usdc_atomic)}
    receipt = await _mined(rpc, await rpc.request("eth_sendTransaction", [tx]))
    assert int(receipt["status"], 16) == 1
    return key


async def _usdc(rpc: EvmRpc, devnet: EvmDevnet, address: str) -> int:
    return int.from_bytes(await rpc.call(devnet.asset, bytes.fromhex(calldata("balanceOf(address)", address)[2:])))


def _evm_offer(devnet: EvmDevnet) -> PaymentRequirements:
    return PaymentRequirements(
        scheme="exact",
        network=devnet.network,
        amount=str(PRICE),
        asset=devnet.asset,
        pay_to=devnet.pay_to,
        max_timeout_seconds=300,
        extra={"name": devnet.eip712_name, "version": devnet.eip712_version},
    )


def _sign(key: str, devnet: EvmDevnet, *, to: str, value: int = PRICE) -> dict[str, Any]:
    return sign_transfer_authorization(
        key,
        chain_id=devnet.chain_id,
        asset=devnet.asset,
        name=devnet.eip712_name,
        version=devnet.eip712_version,
        to=to,
        value=value,
    )


def _authorization(signed: dict[str, Any]) -> Authorization:
    authorization = parse_authorization(signed)
    assert isinstance(authorization, Authorization), authorization
    return authorization


def _payment_key(offer: PaymentRequirements, signed: dict[str, Any]) -> str:
    """The payment key exactly as the gate claims it: from the scheme's own inspection."""
    inspection = inspect(PaymentPayload(x402_version=2, accepted=offer, payload=signed), offer)
    assert isinstance(inspection, Inspection), inspection
    return inspection.payment_key


async def test_auditors_satisfy_the_protocol(devnet: EvmDevnet, solana: SolanaDevnetProcess) -> None:
    assert isinstance(EvmAuditor(EvmRpc(devnet.rpc_url), devnet.network), ChainAuditor)
    assert isinstance(SvmAuditor(SvmRpc(solana.rpc_url), solana.state["network"]), ChainAuditor)


async def test_evm_settled_payment_is_confirmed_with_the_gas_its_relayer_paid(
    devnet: EvmDevnet, evm_rpc: EvmRpc, relayer: Relayer
) -> None:
    key = await _new_evm_payer(evm_rpc, devnet)
    payer = Account.from_key(key).address
    offer = _evm_offer(devnet)
    payload = PaymentPayload(x402_version=2, accepted=offer, payload=_sign(key, devnet, to=devnet.pay_to))
    eth_before = await evm_rpc.get_balance(relayer.address)

    settlement = await ExactEvmScheme(devnet.network, evm_rpc, relayer).settle(payload, offer)
    assert settlement.success, settlement

    finding = await EvmAuditor(evm_rpc, devnet.network).settlement(
        settlement.transaction, asset=devnet.asset, pay_to=devnet.pay_to, payer=payer, amount_atomic=PRICE
    )
    assert finding.status == "confirmed", finding
    assert finding.network == devnet.network and finding.tx_hash == settlement.transaction
    assert finding.moved_atomic == PRICE
    spent = eth_before - await evm_rpc.get_balance(relayer.address)
    assert spent > 0 and finding.gas_cost_atomic == spent == settlement.gas_cost_atomic
    assert finding.gas_payer == relayer.address  # checksummed, as the settlement names it
    assert await _usdc(evm_rpc, devnet, payer) == 10_000_000 - PRICE


async def test_evm_authorization_is_unused_until_settled_then_used(
    devnet: EvmDevnet, evm_rpc: EvmRpc, relayer: Relayer
) -> None:
    key = await _new_evm_payer(evm_rpc, devnet)
    offer = _evm_offer(devnet)
    signed = _sign(key, devnet, to=devnet.pay_to)
    auditor = EvmAuditor(evm_rpc, devnet.network)
    payment_key = _payment_key(offer, signed)
    authorization = signed["authorization"]
    assert payment_key == (
        f"{devnet.network}:{devnet.asset.lower()}:{authorization['from'].lower()}:{authorization['nonce'].lower()}"
    )

    assert await auditor.authorization_used(payment_key) is False
    settlement = await ExactEvmScheme(devnet.network, evm_rpc, relayer).settle(
        PaymentPayload(x402_version=2, accepted=offer, payload=signed), offer
    )
    assert settlement.success, settlement
    assert await auditor.authorization_used(payment_key) is True
    # checksummed addresses in the key read the same state
    mixed_case = f"{devnet.network}:{devnet.asset}:{authorization['from']}:{authorization['nonce']}"
    assert await auditor.authorization_used(mixed_case) is True


async def test_evm_authorization_keys_the_chain_cannot_answer_are_none(devnet: EvmDevnet, evm_rpc: EvmRpc) -> None:
    auditor = EvmAuditor(evm_rpc, devnet.network)
    nonce = "0x" + os.urandom(32).hex()
    payer = devnet.payer_address.lower()
    assert await auditor.authorization_used(f"{devnet.network}:{devnet.asset.lower()}:{payer}:{nonce}") is False
    assert await auditor.authorization_used(f"eip155:1:{devnet.asset.lower()}:{payer}:{nonce}") is None  # not ours
    assert await auditor.authorization_used(f"{devnet.network}:{devnet.asset.lower()}:{payer}") is None  # no nonce
    assert await auditor.authorization_used("solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1:abc") is None
    # an address with no code answers 0x: no authorizationState to read
    assert await auditor.authorization_used(f"{devnet.network}:{devnet.pay_to.lower()}:{payer}:{nonce}") is None


async def test_evm_unknown_hash_is_not_found(devnet: EvmDevnet, evm_rpc: EvmRpc) -> None:
    auditor = EvmAuditor(evm_rpc, devnet.network)
    for tx_hash in ("0x" + os.urandom(32).hex(), "0x1234", "not a hash"):
        finding = await auditor.settlement(
            tx_hash, asset=devnet.asset, pay_to=devnet.pay_to, payer=devnet.payer_address, amount_atomic=PRICE
        )
        assert finding == SettlementFinding("not_found", devnet.network, tx_hash, None, None, None, finding.detail)


async def test_evm_mined_revert_is_reverted_and_its_gas_is_counted(
    devnet: EvmDevnet, evm_rpc: EvmRpc, relayer: Relayer
) -> None:
    key = await _new_evm_payer(evm_rpc, devnet)
    payer = Account.from_key(key).address
    signed = _sign(key, devnet, to=devnet.pay_to)
    signed["authorization"]["value"] = str(PRICE + 1)  # no longer what was signed: the token refuses the signature
    authorization = _authorization(signed)
    eth_before = await evm_rpc.get_balance(relayer.address)

    # the relayer signs a fixed gas limit and anvil does not preflight raw transactions: it is mined, and fails
    tx_hash = await relayer.submit(devnet.asset, transfer_calldata(authorization))
    receipt = await _mined(evm_rpc, tx_hash)
    assert int(receipt["status"], 16) == 0

    auditor = EvmAuditor(evm_rpc, devnet.network)
    finding = await auditor.settlement(
        tx_hash, asset=devnet.asset, pay_to=devnet.pay_to, payer=payer, amount_atomic=PRICE + 1
    )
    assert finding.status == "reverted", finding
    assert finding.moved_atomic is None
    spent = eth_before - await evm_rpc.get_balance(relayer.address)
    assert spent > 0 and finding.gas_cost_atomic == spent
    assert finding.gas_payer == relayer.address
    key_of_it = f"{devnet.network}:{devnet.asset.lower()}:{payer.lower()}:0x{authorization.nonce.hex()}"
    assert await auditor.authorization_used(key_of_it) is False  # a revert consumes nothing
    assert await _usdc(evm_rpc, devnet, payer) == 10_000_000


async def test_evm_transfer_of_another_amount_or_to_another_address_is_a_mismatch(
    devnet: EvmDevnet, evm_rpc: EvmRpc, relayer: Relayer
) -> None:
    key = await _new_evm_payer(evm_rpc, devnet)
    payer = Account.from_key(key).address
    stranger = Account.create().address
    auditor = EvmAuditor(evm_rpc, devnet.network)

    # a real payment of PRICE to payTo, audited as if it had been for PRICE - 1
    paid = await relayer.submit(devnet.asset, transfer_calldata(_authorization(_sign(key, devnet, to=devnet.pay_to))))
    assert int((await _mined(evm_rpc, paid))["status"], 16) == 1
    finding = await auditor.settlement(
        paid, asset=devnet.asset, pay_to=devnet.pay_to, payer=payer, amount_atomic=PRICE - 1
    )
    assert finding.status == "mismatch" and finding.moved_atomic == PRICE, finding
    assert str(PRICE) in finding.detail and finding.gas_payer == relayer.address and finding.gas_cost_atomic
    # the same transaction, read for another payer or another asset, moved nothing of theirs
    other_payer = await auditor.settlement(
        paid, asset=devnet.asset, pay_to=devnet.pay_to, payer=stranger, amount_atomic=PRICE
    )
    assert other_payer.status == "mismatch" and other_payer.moved_atomic == 0
    other_asset = await auditor.settlement(paid, asset=stranger, pay_to=devnet.pay_to, payer=payer, amount_atomic=PRICE)
    assert other_asset.status == "mismatch" and other_asset.moved_atomic == 0
    assert "no Transfer" in other_asset.detail

    # a real transfer of PRICE to someone else, audited as a payment to payTo
    elsewhere = await relayer.submit(devnet.asset, transfer_calldata(_authorization(_sign(key, devnet, to=stranger))))
    assert int((await _mined(evm_rpc, elsewhere))["status"], 16) == 1
    finding = await auditor.settlement(
        elsewhere, asset=devnet.asset, pay_to=devnet.pay_to, payer=payer, amount_atomic=PRICE
    )
    assert finding.status == "mismatch" and finding.moved_atomic == 0, finding
    assert stranger.lower() in finding.detail
    assert await _usdc(evm_rpc, devnet, stranger) == PRICE


async def test_evm_unmined_transaction_is_pending_until_mined(
    devnet: EvmDevnet, evm_rpc: EvmRpc, relayer: Relayer
) -> None:
    key = await _new_evm_payer(evm_rpc, devnet)
    payer = Account.from_key(key).address
    authorization = _authorization(_sign(key, devnet, to=devnet.pay_to))
    auditor = EvmAuditor(evm_rpc, devnet.network)
    await evm_rpc.request("evm_setAutomine", [False])
    try:
        tx_hash = await relayer.submit(devnet.asset, transfer_calldata(authorization))
        waiting = await auditor.settlement(
            tx_hash, asset=devnet.asset, pay_to=devnet.pay_to, payer=payer, amount_atomic=PRICE
        )
        assert waiting.status == "pending", waiting
        assert waiting.gas_cost_atomic is None and waiting.moved_atomic is None
        await evm_rpc.request("evm_mine", [])
    finally:
        await evm_rpc.request("evm_setAutomine", [True])
    mined = await auditor.settlement(
        tx_hash, asset=devnet.asset, pay_to=devnet.pay_to, payer=payer, amount_atomic=PRICE
    )
    assert mined.status == "confirmed" and mined.moved_atomic == PRICE, mined


async def test_unreachable_nodes_raise_instead_of_guessing(devnet: EvmDevnet, solana: SolanaDevnetProcess) -> None:
    evm, svm = EvmRpc(CLOSED_PORT_URL, timeout_s=2), SvmRpc(CLOSED_PORT_URL, timeout_s=2)
    try:
        with pytest.raises(RpcUnavailable):
            await EvmAuditor(evm, devnet.network).settlement(
                "0x" + "11" * 32, asset=devnet.asset, pay_to=devnet.pay_to, payer=devnet.payer_address, amount_atomic=1
            )
        with pytest.raises(RpcUnavailable):
            key = f"{devnet.network}:{devnet.asset.lower()}:{devnet.payer_address.lower()}:0x{'22' * 32}"
            await EvmAuditor(evm, devnet.network).authorization_used(key)
        with pytest.raises(RpcUnavailable):
            await SvmAuditor(svm, solana.state["network"]).settlement(
                str(Keypair().sign_message(b"never sent")),
                asset=solana.state["asset"],
                pay_to=solana.state["pay_to"],
                payer=solana.state["payer_address"],
                amount_atomic=1,
            )
    finally:
        await evm.close()
        await svm.close()


# ---- Solana ----


@pytest.fixture
async def svm_rpc(solana: SolanaDevnetProcess) -> AsyncIterator[SvmRpc]:
    rpc = SvmRpc(solana.rpc_url)
    yield rpc
    await rpc.close()


def _svm_offer(state: dict[str, Any], amount: int = PRICE) -> PaymentRequirements:
    return PaymentRequirements(
        scheme="exact",
        network=state["network"],
        amount=str(amount),
        asset=state["asset"],
        pay_to=state["pay_to"],
        max_timeout_seconds=300,
        extra={"feePayer": state["fee_payer"]},
    )


async def _new_svm_payer(rpc: SvmRpc, usdc_atomic: int = 10_000_000) -> Keypair:
    payer = Keypair()
    await rpc.request("litesvm_mintTo", [str(payer.pubkey()), usdc_atomic])
    return payer


async def _lamports(rpc: SvmRpc, address: str) -> int:
    return int((await rpc.request("getBalance", [address]))["value"])


async def _settled_svm_payment(rpc: SvmRpc, state: dict[str, Any], payer: Keypair) -> str:
    """A payment built as the reference clients build it, co-signed, sent and confirmed by ExactSvmScheme."""
    offer = _svm_offer(state)
    blockhash, _ = await rpc.latest_blockhash()
    transaction = sign_partially(
        Pubkey.from_string(state["fee_payer"]),
        [payer],
        payment_instructions(payer.pubkey(), offer, decimals=state["decimals"]),
        Hash.from_string(blockhash),
    )
    payload = PaymentPayload(x402_version=2, accepted=offer, payload={"transaction": encode_transaction(transaction)})
    scheme = ExactSvmScheme(state["network"], rpc, Keypair.from_base58_string(state["fee_payer_secret_key"]))
    settlement = await scheme.settle(payload, offer)
    assert settlement.success, settlement
    return settlement.transaction


async def test_svm_settled_payment_is_confirmed_with_the_fee_its_fee_payer_paid(
    solana: SolanaDevnetProcess, svm_rpc: SvmRpc
) -> None:
    state = solana.state
    payer = await _new_svm_payer(svm_rpc)
    lamports_before = await _lamports(svm_rpc, state["fee_payer"])
    signature = await _settled_svm_payment(svm_rpc, state, payer)
    spent = lamports_before - await _lamports(svm_rpc, state["fee_payer"])

    auditor = SvmAuditor(svm_rpc, state["network"])
    finding = await auditor.settlement(
        signature, asset=state["asset"], pay_to=state["pay_to"], payer=str(payer.pubkey()), amount_atomic=PRICE
    )
    assert finding.status == "confirmed", finding
    assert finding.network == state["network"] and finding.tx_hash == signature
    assert finding.moved_atomic == PRICE
    assert spent > 0 and finding.gas_cost_atomic == spent
    assert finding.gas_payer == state["fee_payer"]
    assert await auditor.authorization_used(f"{state['network']}:{signature}") is None


async def test_svm_unknown_signature_is_not_found(solana: SolanaDevnetProcess, svm_rpc: SvmRpc) -> None:
    state = solana.state
    auditor = SvmAuditor(svm_rpc, state["network"])
    for signature in (str(Keypair().sign_message(b"never sent")), "not a signature"):
        finding = await auditor.settlement(
            signature, asset=state["asset"], pay_to=state["pay_to"], payer=state["payer_address"], amount_atomic=PRICE
        )
        assert finding == SettlementFinding("not_found", state["network"], signature, None, None, None, finding.detail)


async def test_svm_payment_read_against_other_terms_is_a_mismatch(solana: SolanaDevnetProcess, svm_rpc: SvmRpc) -> None:
    state = solana.state
    payer = await _new_svm_payer(svm_rpc)
    signature = await _settled_svm_payment(svm_rpc, state, payer)
    auditor = SvmAuditor(svm_rpc, state["network"])

    finding = await auditor.settlement(
        signature, asset=state["asset"], pay_to=state["pay_to"], payer=str(payer.pubkey()), amount_atomic=PRICE * 2
    )
    assert finding.status == "mismatch" and finding.moved_atomic == PRICE, finding
    assert f"changed by {PRICE}" in finding.detail
    assert finding.gas_payer == state["fee_payer"] and finding.gas_cost_atomic
    stranger = str(Keypair().pubkey())
    other_payer = await auditor.settlement(
        signature, asset=state["asset"], pay_to=state["pay_to"], payer=stranger, amount_atomic=PRICE
    )
    assert other_payer.status == "mismatch" and other_payer.moved_atomic == 0
    other_pay_to = await auditor.settlement(
        signature, asset=state["asset"], pay_to=stranger, payer=str(payer.pubkey()), amount_atomic=PRICE
    )
    assert other_pay_to.status == "mismatch" and other_pay_to.moved_atomic == 0


async def test_svm_transaction_that_failed_on_chain_is_reverted_and_its_fee_counted(
    solana: SolanaDevnetProcess, svm_rpc: SvmRpc
) -> None:
    state = solana.state
    payer = await _new_svm_payer(svm_rpc, usdc_atomic=PRICE)
    too_much = _svm_offer(state, amount=PRICE * 5)  # more than the payer holds: the token program fails it
    fee_payer = Keypair.from_base58_string(state["fee_payer_secret_key"])
    blockhash, _ = await svm_rpc.latest_blockhash()
    unsigned = sign_partially(
        fee_payer.pubkey(),
        [payer],
        payment_instructions(payer.pubkey(), too_much, decimals=state["decimals"]),
        Hash.from_string(blockhash),
    )
    signed = VersionedTransaction(unsigned.message, [fee_payer, payer])
    lamports_before = await _lamports(svm_rpc, state["fee_payer"])
    # skipPreflight: the node sends it without simulating, and it lands as a failed transaction
    config = {"encoding": "base64", "skipPreflight": True}
    signature = await svm_rpc.request("sendTransaction", [base64.b64encode(bytes(signed)).decode(), config])
    spent = lamports_before - await _lamports(svm_rpc, state["fee_payer"])

    finding = await SvmAuditor(svm_rpc, state["network"]).settlement(
        signature, asset=state["asset"], pay_to=state["pay_to"], payer=str(payer.pubkey()), amount_atomic=PRICE * 5
    )
    assert finding.status == "reverted", finding
    assert finding.moved_atomic is None
    assert spent > 0 and finding.gas_cost_atomic == spent
    assert finding.gas_payer == state["fee_payer"]
    ata = programs.associated_token_address(payer.pubkey(), Pubkey.from_string(state["asset"]))
    assert (await svm_rpc.request("getTokenAccountBalance", [str(ata)]))["value"]["amount"] == str(PRICE)
