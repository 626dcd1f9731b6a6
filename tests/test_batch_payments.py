"""payments.evm.batch: the batch-settlement core, on anvil with our contracts at the official addresses.

Payers here sign with eth_account's typed-data encoder and the expected channel ids come from
payments.devnet.batch, so neither reuses the hand-hashed digests under test. Each test opens its own
channels with fresh salts and its own payTo, so balances and receiver totals start from zero.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from eth_account import Account

from payments import NetworkTerms, Reason, Refusal
from payments.devnet import batch as devnet_batch
from payments.devnet.evm import EvmDevnet, mint
from payments.evm.batch import (
    BATCH_SETTLEMENT_ADDRESS,
    ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
    BatchSettlementChain,
    BatchSettleResponse,
    CheckedVoucher,
    ClaimRow,
    LocalAuthorizer,
    PaymentResponseExtra,
    batch_terms,
    build_batch_offer,
    channel_id_of,
    check_voucher,
    claim_batch_digest,
    corrective_requirements,
    erc3009_deposit_nonce,
    next_cumulative_ok,
    payment_response_extra,
    refund_digest,
    rows_per_claim,
    voucher_digest,
)
from payments.evm.relayer import Relayer
from payments.evm.rpc import EvmRpc

from .batch_payer import (
    AUTHORIZER,
    AUTHORIZER_KEY,
    CHAIN_ID,
    NETWORK,
    PRICE,
    STRANGER_KEY,
    USDC,
    Payer,
)


def _terms(devnet: EvmDevnet, pay_to: str) -> NetworkTerms:
    exact = NetworkTerms(
        devnet.network,
        devnet.asset,
        pay_to,
        extra={"name": devnet.eip712_name, "version": devnet.eip712_version},
    )
    return batch_terms(exact, AUTHORIZER)


class Desk:
    """One test's payTo, offer, funded payer and the chain side under test."""

    def __init__(self, devnet: EvmDevnet, rpc: EvmRpc) -> None:
        devnet_batch.install_batch_settlement(devnet.rpc_url)
        self.devnet = devnet
        self.rpc = rpc
        self.pay_to = Account.create().address
        self.offer = build_batch_offer(_terms(devnet, self.pay_to), PRICE)
        self.payer = Payer(devnet, self.pay_to)
        mint(devnet.rpc_url, devnet.asset, self.payer.address, 100 * USDC)
        relayer = Relayer(rpc, devnet.relayer_private_key, CHAIN_ID, gas_limit=1_000_000)
        self.chain = BatchSettlementChain(NETWORK, rpc, relayer, LocalAuthorizer(AUTHORIZER_KEY))

    def check(self, payload: dict[str, Any]) -> CheckedVoucher:
        checked = check_voucher(payload, self.offer)
        assert isinstance(checked, CheckedVoucher), checked
        return checked

    async def open(self, amount: int, charged_first: int = PRICE) -> tuple[dict[str, Any], CheckedVoucher]:
        config = self.payer.config()
        checked = self.check(self.payer.deposit_payload(config, amount, charged_first))
        outcome = await self.chain.deposit(checked)
        assert outcome.success, outcome
        return config, checked

    async def balance(self, owner: str) -> int:
        return await self.chain.token_balance(self.devnet.asset, owner)


@pytest.fixture
async def desk(devnet: EvmDevnet) -> AsyncIterator[Desk]:
    rpc = EvmRpc(devnet.rpc_url)
    yield Desk(devnet, rpc)
    await rpc.close()


# ---- pure: digests, offer, wire ----


def test_digests_match_the_reference_vectors() -> None:
    one, two, three = "0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20
    token = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
    channel = channel_id_of(CHAIN_ID, one, one, two, three, token, 900, bytes(32))
    assert channel.hex() == "c79f4ebce8ab654688879c8bfd3965227d8fc491dd10697b71a457416d65d904"
    assert voucher_digest(CHAIN_ID, channel, 1000).hex() == (
        "b805ebc6a18826782a51385e69bb8d12292dafab9b1bdfd7343e18881be8eb5f"
    )
    assert refund_digest(CHAIN_ID, channel, 0, 500).hex() == (
        "ee919de21232267a9b24e9e276526ac31f42724ed14f25b67ee2afa277bfa6d7"
    )
    assert claim_batch_digest(CHAIN_ID, [(channel, 1000, 1000)]).hex() == (
        "7078fd949136154a77440701f271631fcc5d0de0e64af91160dbbd07e777132b"
    )
    assert erc3009_deposit_nonce(channel, 1).hex() == (
        "e9c1051244f4a5fcecc0e51afb3c1ab5426c5cfbeae7ee91ae6046e646f393a3"
    )


def test_the_offer_carries_the_channel_terms(devnet: EvmDevnet) -> None:
    offer = build_batch_offer(_terms(devnet, devnet.pay_to), PRICE)
    assert (offer.scheme, offer.network, offer.amount, offer.pay_to) == (
        "batch-settlement",
        devnet.network,
        str(PRICE),
        devnet.pay_to,
    )
    assert offer.extra == {
        "receiverAuthorizer": AUTHORIZER,
        "withdrawDelay": 900,
        "name": devnet.eip712_name,
        "version": devnet.eip712_version,
        "assetTransferMethod": "eip3009",
        "minDeposit": str(10 * PRICE),
    }
    assert "minDeposit" not in build_batch_offer(_terms(devnet, devnet.pay_to), PRICE, min_deposit=0).extra
    with pytest.raises(ValueError, match="withdrawDelay"):
        batch_terms(
            NetworkTerms(devnet.network, devnet.asset, devnet.pay_to, extra=offer.extra), AUTHORIZER, withdraw_delay=60
        )


def test_response_and_corrective_extras_have_the_wire_types(devnet: EvmDevnet) -> None:
    from payments.evm.batch import ChannelSnapshot

    snapshot = ChannelSnapshot("0x" + "ab" * 32, 5 * USDC, USDC, 0, 0, 2, "latest")
    extra = payment_response_extra(snapshot.state_extra(charged_cumulative=3 * PRICE), charged_amount=PRICE)
    assert extra == {
        "chargedAmount": str(PRICE),
        "channelState": {
            "channelId": "0x" + "ab" * 32,
            "balance": str(5 * USDC),
            "totalClaimed": str(USDC),
            "withdrawRequestedAt": 0,
            "refundNonce": "2",
            "chargedCumulativeAmount": str(3 * PRICE),
        },
    }
    response = BatchSettleResponse(
        True, "", NETWORK, payer="0xabc", amount="", extra=msgspec.convert(extra, type=PaymentResponseExtra)
    )
    assert msgspec.to_builtins(response)["extra"] == extra
    offer = build_batch_offer(_terms(devnet, devnet.pay_to), PRICE)
    corrective = corrective_requirements(offer, snapshot.state_extra(3 * PRICE), 3 * PRICE, "0x" + "cd" * 65)
    assert corrective.extra["voucherState"] == {"signedMaxClaimable": str(3 * PRICE), "signature": "0x" + "cd" * 65}
    assert corrective.extra["channelState"]["chargedCumulativeAmount"] == str(3 * PRICE)
    assert "channelState" not in offer.extra  # our offer is untouched


def test_next_cumulative_ok_encodes_the_rule() -> None:
    assert next_cumulative_ok(3 * PRICE, PRICE, 4 * PRICE, USDC) is None
    assert next_cumulative_ok(3 * PRICE, PRICE, 4 * PRICE, USDC, total_claimed=3 * PRICE) is None

    def reason(*args: int, **kw: Any) -> str:
        refused = next_cumulative_ok(*args, **kw)
        assert isinstance(refused, Refusal)
        return refused.reason

    assert reason(3 * PRICE, PRICE, 5 * PRICE, USDC) == Reason.BATCH_CUMULATIVE_AMOUNT_MISMATCH
    assert reason(3 * PRICE, PRICE, 3 * PRICE, USDC) == Reason.BATCH_CUMULATIVE_AMOUNT_MISMATCH  # a replay
    assert reason(3 * PRICE, PRICE, 4 * PRICE, 4 * PRICE - 1) == Reason.BATCH_CUMULATIVE_EXCEEDS_BALANCE
    assert reason(3 * PRICE, PRICE, 4 * PRICE, 5 * PRICE, pending_withdrawal=2 * PRICE) == (
        Reason.BATCH_CUMULATIVE_EXCEEDS_BALANCE
    )
    assert reason(3 * PRICE, PRICE, 4 * PRICE, USDC, total_claimed=4 * PRICE) == Reason.BATCH_CUMULATIVE_BELOW_CLAIMED
    # A refund's zero-charge voucher equals the charged total, which may equal what is claimed.
    assert next_cumulative_ok(3 * PRICE, PRICE, 3 * PRICE, USDC, total_claimed=3 * PRICE, refund=True) is None


# ---- the local voucher check ----


async def test_the_local_check_accepts_a_good_voucher(desk: Desk) -> None:
    config = desk.payer.config()
    checked = desk.check(desk.payer.voucher_payload(config, 3 * PRICE))
    assert checked.kind == "voucher"
    assert checked.channel_id == Payer.channel_id(config)
    assert (checked.payer, checked.payer_authorizer) == (desk.payer.address.lower(), desk.payer.address.lower())
    assert checked.max_claimable == 3 * PRICE
    assert checked.signer_verified
    assert checked.signature_hex == desk.payer.voucher(config, 3 * PRICE)["signature"]


def _hostile(desk: Desk, case: str) -> dict[str, Any]:
    payer, config = desk.payer, desk.payer.config()
    good = payer.voucher_payload(config, PRICE)
    other = Account.create().address
    if case == "another channel's id":
        return {**good, "voucher": {**good["voucher"], "channelId": Payer.channel_id(payer.config())}}
    if case == "non-canonical channel id":
        return {**good, "voucher": {**good["voucher"], "channelId": good["voucher"]["channelId"][:-2]}}
    changes = {
        "another receiver": {"receiver": other},
        "another token": {"token": other},
        "another receiverAuthorizer": {"receiverAuthorizer": other},
        "another withdrawDelay": {"withdrawDelay": 1800},
    }
    if case in changes:
        changed = payer.config(**changes[case])
        return payer.voucher_payload(changed, PRICE)  # consistently signed: only the terms are wrong
    if case == "signed by another key":
        return payer.voucher_payload(config, PRICE, key=STRANGER_KEY)
    if case == "signature over another amount":
        return {**good, "voucher": {**good["voucher"], "maxClaimableAmount": str(2 * PRICE)}}
    if case == "withdrawDelay as a string":
        return {**good, "channelConfig": {**config, "withdrawDelay": "900"}}
    if case == "missing voucher":
        return {"type": "voucher", "channelConfig": config}
    if case == "unknown type":
        return {**good, "type": "claim"}
    if case == "signature not hex":
        return {**good, "voucher": {**good["voucher"], "signature": "0xzz"}}
    if case == "amount not decimal":
        return {**good, "voucher": {**good["voucher"], "maxClaimableAmount": "0x10"}}
    if case == "permit2 deposit":
        deposit = payer.deposit_payload(config, USDC, PRICE)
        deposit["deposit"]["authorization"] = {"permit2Authorization": {"from": payer.address}}
        return deposit
    raise AssertionError(case)


HOSTILE = {
    "another channel's id": Reason.BATCH_CHANNEL_ID_MISMATCH,
    "non-canonical channel id": Reason.BATCH_CHANNEL_ID_INVALID,
    "another receiver": Reason.BATCH_RECEIVER_MISMATCH,
    "another token": Reason.BATCH_TOKEN_MISMATCH,
    "another receiverAuthorizer": Reason.BATCH_RECEIVER_AUTHORIZER_MISMATCH,
    "another withdrawDelay": Reason.BATCH_WITHDRAW_DELAY_MISMATCH,
    "signed by another key": Reason.BATCH_VOUCHER_SIGNATURE,
    "signature over another amount": Reason.BATCH_VOUCHER_SIGNATURE,
    "withdrawDelay as a string": Reason.INVALID_PAYLOAD,
    "missing voucher": Reason.INVALID_PAYLOAD,
    "unknown type": Reason.BATCH_PAYLOAD_TYPE,
    "signature not hex": Reason.INVALID_PAYLOAD,
    "amount not decimal": Reason.INVALID_PAYLOAD,
    "permit2 deposit": Reason.BATCH_ERC3009_AUTHORIZATION_REQUIRED,
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_the_local_check_refuses_hostile_vouchers(desk: Desk, case: str) -> None:
    refused = check_voucher(_hostile(desk, case), desk.offer)
    assert isinstance(refused, Refusal), refused
    assert refused.reason == HOSTILE[case], refused


async def test_a_zero_payer_authorizer_is_left_to_the_chain(desk: Desk) -> None:
    config = desk.payer.config(payerAuthorizer="0x" + "00" * 20)
    checked = desk.check(desk.payer.voucher_payload(config, PRICE))
    assert not checked.signer_verified
    assert (
        await desk.chain.voucher_signature_refusal(checked) is None
    )  # ECDSA by the payer, checked as the contract does
    forged = desk.check(desk.payer.voucher_payload(config, PRICE, key=STRANGER_KEY))
    refused = await desk.chain.voucher_signature_refusal(forged)
    assert refused is not None and refused.reason == Reason.BATCH_VOUCHER_SIGNATURE


# ---- deposits ----


async def test_a_deposit_is_verified_then_moves_exactly_its_amount(desk: Desk) -> None:
    config = desk.payer.config()
    checked = desk.check(desk.payer.deposit_payload(config, 2 * USDC, PRICE))
    assert checked.kind == "deposit" and checked.deposit is not None and checked.deposit.signer_verified
    verified = await desk.chain.verify_deposit(checked, min_deposit=10 * PRICE)
    assert not isinstance(verified, Refusal), verified
    assert (verified.channel.balance, verified.payer_balance) == (0, 100 * USDC)

    payer_before, escrow_before = await desk.balance(desk.payer.address), await desk.balance(BATCH_SETTLEMENT_ADDRESS)
    hashes: list[str] = []

    async def on_broadcast(tx_hash: str) -> None:
        hashes.append(tx_hash)

    outcome = await desk.chain.deposit(checked, on_broadcast=on_broadcast)
    assert outcome.success, outcome
    assert hashes == [outcome.transaction]
    assert outcome.amount == 2 * USDC and outcome.gas_used and outcome.gas_used > 50_000
    [channel] = outcome.channels
    assert (channel.channel_id, channel.balance, channel.total_claimed) == (checked.channel_id, 2 * USDC, 0)
    assert await desk.balance(desk.payer.address) == payer_before - 2 * USDC
    assert await desk.balance(BATCH_SETTLEMENT_ADDRESS) == escrow_before + 2 * USDC
    assert await desk.balance(ERC3009_DEPOSIT_COLLECTOR_ADDRESS) == 0

    # The same authorization again: the token's spent nonce fails the simulation; nothing is sent.
    again = await desk.chain.deposit(checked)
    assert (again.success, again.reason, again.transaction) == (False, Reason.BATCH_DEPOSIT_SIMULATION_FAILED, "")
    assert "authorization is used" in (again.message or "")
    # A top-up with a voucher continuing the cumulative.
    top_up = desk.check(desk.payer.deposit_payload(config, USDC, 2 * PRICE))
    assert (await desk.chain.deposit(top_up)).channels[0].balance == 3 * USDC


HOSTILE_DEPOSITS = {
    "bad signature": Reason.BATCH_RECEIVE_AUTHORIZATION_SIGNATURE,
    "expired": Reason.BATCH_VALID_BEFORE,
    "wrong collector": Reason.BATCH_RECEIVE_AUTHORIZATION_SIGNATURE,
    "voucher above the deposit": Reason.BATCH_CUMULATIVE_EXCEEDS_BALANCE,
    "payer without the funds": Reason.BATCH_INSUFFICIENT_BALANCE,
    "below the minimum deposit": Reason.BATCH_DEPOSIT_BELOW_MIN_DEPOSIT,
}


@pytest.mark.parametrize("case", sorted(HOSTILE_DEPOSITS))
async def test_hostile_deposits_are_refused_before_sending(desk: Desk, case: str) -> None:
    payer, config = desk.payer, desk.payer.config()
    if case == "bad signature":
        payload = payer.deposit_payload(config, USDC, PRICE, key=STRANGER_KEY)
    elif case == "expired":
        payload = payer.deposit_payload(config, USDC, PRICE, valid_before=int(time.time()) + 3)
    elif case == "wrong collector":
        payload = payer.deposit_payload(config, USDC, PRICE, to=desk.pay_to)
    elif case == "voucher above the deposit":
        payload = payer.deposit_payload(config, USDC, USDC + 1)
    elif case == "payer without the funds":
        payload = payer.deposit_payload(config, 101 * USDC, PRICE)
    else:
        payload = payer.deposit_payload(config, PRICE, PRICE)
    checked = desk.check(payload)  # every one passes the local check: the chain side must refuse it
    escrow_before = await desk.balance(BATCH_SETTLEMENT_ADDRESS)
    outcome = await desk.chain.deposit(checked, min_deposit=10 * PRICE)
    assert (outcome.success, outcome.reason, outcome.transaction) == (False, HOSTILE_DEPOSITS[case], "")
    assert await desk.balance(BATCH_SETTLEMENT_ADDRESS) == escrow_before


# ---- claims, settlement, refunds ----


async def test_one_claim_transaction_for_three_channels_then_one_settle(desk: Desk) -> None:
    opened = [await desk.open(USDC) for _ in range(3)]
    rows = []
    for index, (config, _) in enumerate(opened, start=1):
        charged = index * 5 * PRICE
        checked = desk.check(desk.payer.voucher_payload(config, charged))
        rows.append(ClaimRow(checked.config, checked.max_claimable, checked.signature, charged))
    nonce_before = await desk.rpc.get_transaction_count(desk.chain.relayer_address or "", "latest")

    outcome = await desk.chain.claim(rows)
    assert outcome.success, outcome
    assert await desk.rpc.get_transaction_count(desk.chain.relayer_address or "", "latest") == nonce_before + 1
    assert outcome.amount == 30 * PRICE and outcome.gas_used
    assert [c.total_claimed for c in outcome.channels] == [5 * PRICE, 10 * PRICE, 15 * PRICE]
    assert [c.balance for c in outcome.channels] == [USDC] * 3  # claims never reduce the balance
    assert await desk.chain.read_receiver(desk.pay_to, desk.devnet.asset) == (30 * PRICE, 0)

    # Claiming the same totals again moves nothing (the contract skips them).
    assert (await desk.chain.claim(rows)).amount == 0

    settled = await desk.chain.settle(desk.pay_to, desk.devnet.asset)
    assert settled.success and settled.amount == 30 * PRICE and settled.gas_used, settled
    assert await desk.balance(desk.pay_to) == 30 * PRICE
    nothing = await desk.chain.settle(desk.pay_to, desk.devnet.asset)
    assert (nothing.success, nothing.reason, nothing.transaction) == (False, Reason.BATCH_NOTHING_TO_SETTLE, "")


async def test_claims_that_cannot_land_are_refused_before_sending(desk: Desk) -> None:
    config, _ = await desk.open(USDC)
    checked = desk.check(desk.payer.voucher_payload(config, 2 * USDC))  # beyond the escrow
    over = await desk.chain.claim([ClaimRow(checked.config, checked.max_claimable, checked.signature, 2 * USDC)])
    assert (over.reason, over.transaction) == (Reason.BATCH_CLAIM_SIMULATION_FAILED, "")
    assert "ClaimExceedsBalance" in (over.message or "")
    forged = desk.check(desk.payer.voucher_payload(config, PRICE)).config
    row = ClaimRow(forged, PRICE, bytes(65), PRICE)
    assert (await desk.chain.claim([row])).reason == Reason.BATCH_CLAIM_SIMULATION_FAILED
    assert (await desk.chain.claim([])).reason == Reason.BATCH_CLAIM_PAYLOAD
    foreign = msgspec.structs.replace(checked.config, receiver_authorizer=Account.create().address.lower())
    assert (await desk.chain.claim([ClaimRow(foreign, PRICE, checked.signature, PRICE)])).reason == (
        Reason.BATCH_AUTHORIZER_ADDRESS_MISMATCH
    )


async def test_a_cooperative_refund_claims_the_charge_and_returns_the_rest(desk: Desk) -> None:
    config, _ = await desk.open(2 * USDC)
    charged = 7 * PRICE
    refund_voucher = desk.check({**desk.payer.voucher_payload(config, charged), "type": "refund"})
    assert refund_voucher.kind == "refund" and refund_voucher.refund_amount is None
    row = ClaimRow(refund_voucher.config, charged, refund_voucher.signature, charged)
    payer_before = await desk.balance(desk.payer.address)

    partial = await desk.chain.refund(row, amount=USDC)
    assert partial.success and partial.amount == USDC, partial
    [channel] = partial.channels
    assert (channel.balance, channel.total_claimed, channel.refund_nonce) == (USDC, charged, 1)
    assert await desk.balance(desk.payer.address) == payer_before + USDC

    too_much = await desk.chain.refund(row, amount=USDC)  # only USDC - charged is left
    assert (too_much.reason, too_much.transaction) == (Reason.BATCH_REFUND_AMOUNT_INVALID, "")
    rest = await desk.chain.refund(row)
    assert rest.success and rest.amount == USDC - charged, rest
    assert (rest.channels[0].balance, rest.channels[0].total_claimed, rest.channels[0].refund_nonce) == (
        charged,
        charged,
        2,
    )
    assert await desk.balance(desk.payer.address) == payer_before + 2 * USDC - charged
    assert (await desk.chain.refund(row)).reason == Reason.BATCH_REFUND_NO_BALANCE
    # The charge was claimed in the same transaction: the receiver is owed exactly it.
    assert await desk.chain.read_receiver(desk.pay_to, desk.devnet.asset) == (charged, 0)


async def test_reads_of_many_channels_come_from_one_block(desk: Desk) -> None:
    (first, a), (second, b) = await desk.open(USDC), await desk.open(2 * USDC)
    snapshots = await desk.chain.read_channels([a.channel_id, b.channel_id, "0x" + "00" * 32])
    assert [(s.balance, s.total_claimed, s.refund_nonce) for s in snapshots] == [
        (USDC, 0, 0),
        (2 * USDC, 0, 0),
        (0, 0, 0),
    ]
    assert not snapshots[2].exists
    verified = await desk.chain.verify_voucher(desk.check(desk.payer.voucher_payload(first, 2 * PRICE)))
    assert not isinstance(verified, Refusal) and verified.balance == USDC
    missing = await desk.chain.verify_voucher(desk.check(desk.payer.voucher_payload(desk.payer.config(), PRICE)))
    assert isinstance(missing, Refusal) and missing.reason == Reason.BATCH_CHANNEL_NOT_FOUND
    over = await desk.chain.verify_voucher(desk.check(desk.payer.voucher_payload(second, 2 * USDC + 1)))
    assert isinstance(over, Refusal) and over.reason == Reason.BATCH_CUMULATIVE_EXCEEDS_BALANCE


async def test_a_claim_over_the_relayers_gas_limit_is_refused_before_signing(desk: Desk) -> None:
    rows = []
    for _ in range(3):
        config, _ = await desk.open(USDC)
        checked = desk.check(desk.payer.voucher_payload(config, PRICE))
        rows.append(ClaimRow(checked.config, checked.max_claimable, checked.signature, PRICE))
    small = Relayer(desk.rpc, desk.devnet.relayer_private_key, CHAIN_ID, gas_limit=100_000)
    chain = BatchSettlementChain(NETWORK, desk.rpc, small, LocalAuthorizer(AUTHORIZER_KEY))
    assert rows_per_claim(small.gas_limit) < len(rows) <= rows_per_claim(1_000_000)
    refused = await chain.claim(rows)
    assert (refused.success, refused.reason, refused.transaction) == (False, Reason.UNEXPECTED_SETTLE_ERROR, "")
    assert "over the relayer's limit of 100000" in (refused.message or "")
    assert (await desk.chain.claim(rows)).amount == 3 * PRICE
