"""x402 `batch-settlement` groundwork: our own escrow contracts on anvil at the official CREATE2 addresses.

Digests are checked against the reference's chain-84532 vectors, an independent eth_abi encoding and the contract's
views; deposit, claim, settle, refund and withdrawal then run on TestUSDC with real signatures. The withdrawal moves
the chain clock, so it runs on a private anvil, never on the session devnet other tests pay on.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_abi import decode, encode
from eth_account import Account
from eth_utils import keccak

from payments.devnet import batch
from payments.devnet.anvil import Anvil
from payments.devnet.batch import BATCH_SETTLEMENT_ADDRESS as SETTLEMENT
from payments.devnet.batch import ERC3009_DEPOSIT_COLLECTOR_ADDRESS as COLLECTOR
from payments.devnet.batch import ChannelConfig, VoucherClaim
from payments.devnet.evm import DevnetError, EvmDevnet, Rpc, artifact, calldata, deploy, devnet_key, mint, provision

from .batch_payer import sign_deposit_authorization

ROOT = Path(__file__).resolve().parents[1]
CHAIN_ID = 84532
USDC = 10**6

# Test vectors for the scheme's EIP-712 digests, computed independently for chain 84532.
VECTOR_CONFIG = ChannelConfig(
    "0x" + "11" * 20,
    "0x" + "11" * 20,
    "0x" + "22" * 20,
    "0x" + "33" * 20,
    "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
    900,
)
VECTORS = {
    "channel_id": "c79f4ebce8ab654688879c8bfd3965227d8fc491dd10697b71a457416d65d904",
    "voucher_1000": "b805ebc6a18826782a51385e69bb8d12292dafab9b1bdfd7343e18881be8eb5f",
    "refund_0_500": "ee919de21232267a9b24e9e276526ac31f42724ed14f25b67ee2afa277bfa6d7",
    "claim_batch_1000_1000": "7078fd949136154a77440701f271631fcc5d0de0e64af91160dbbd07e777132b",
    "erc3009_nonce_salt_1": "e9c1051244f4a5fcecc0e51afb3c1ab5426c5cfbeae7ee91ae6046e646f393a3",
    "domain_84532": "fdef80764086b1e0fc6ba99f0cb9aa1d59109fda7c23d60334c89d2de44dffce",
}


def _independent_digests() -> dict[str, str]:
    """The §3 values encoded here from the type strings alone (eth_abi + eth_utils), not via payments.devnet.batch."""
    domain_type = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    words = [keccak(text=domain_type), keccak(text="x402 Batch Settlement"), keccak(text="1")]
    types = ["bytes32", "bytes32", "bytes32", "uint256", "address"]
    domain = keccak(encode(types, [*words, CHAIN_ID, SETTLEMENT]))

    def typed(type_string: str, types: list[str], values: list[Any]) -> bytes:
        struct = keccak(encode(["bytes32", *types], [keccak(text=type_string), *values]))
        return keccak(b"\x19\x01" + domain + struct)

    c = VECTOR_CONFIG
    config_type = (
        "ChannelConfig(address payer,address payerAuthorizer,address receiver,address receiverAuthorizer,"
        "address token,uint40 withdrawDelay,bytes32 salt)"
    )
    channel = typed(
        config_type,
        ["address", "address", "address", "address", "address", "uint40", "bytes32"],
        [c.payer, c.payer_authorizer, c.receiver, c.receiver_authorizer, c.token, c.withdraw_delay, bytes(32)],
    )
    entry_type = "ClaimEntry(bytes32 channelId,uint128 maxClaimableAmount,uint128 totalClaimed)"
    entry = keccak(encode(["bytes32", "bytes32", "uint128", "uint128"], [keccak(text=entry_type), channel, 1000, 1000]))
    return {
        "channel_id": channel.hex(),
        "voucher_1000": typed(
            "Voucher(bytes32 channelId,uint128 maxClaimableAmount)", ["bytes32", "uint128"], [channel, 1000]
        ).hex(),
        "refund_0_500": typed(
            "Refund(bytes32 channelId,uint256 nonce,uint128 amount)",
            ["bytes32", "uint256", "uint128"],
            [channel, 0, 500],
        ).hex(),
        "claim_batch_1000_1000": typed(
            "ClaimBatch(ClaimEntry[] claims)" + entry_type, ["bytes32"], [keccak(entry)]
        ).hex(),
        "erc3009_nonce_salt_1": keccak(encode(["bytes32", "uint256"], [channel, 1])).hex(),
        "domain_84532": domain.hex(),
    }


# ---- chain helpers ----

_ERRORS = {
    keccak(text=f"{e['name']}({','.join(i['type'] for i in e['inputs'])})")[:4].hex(): e["name"]
    for name in ("x402BatchSettlement", "ERC3009DepositCollector")
    for e in artifact(name)["abi"]
    if e["type"] == "error"
}


def revert_reason(rpc_url: str, sender: str, to: str, data: str) -> str:
    """The custom error name (or Error(string) text) an eth_call of `data` reverts with."""
    body = httpx.post(
        rpc_url,
        json={"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [{"from": sender, "to": to, "data": data}]},
    ).json()
    assert "error" in body, f"expected a revert, got {body}"
    raw = str(body["error"].get("data") or "0x").removeprefix("0x")
    if raw[:8] == "08c379a0":  # Error(string)
        return str(decode(["string"], bytes.fromhex(raw[8:]))[0])
    return _ERRORS.get(raw[:8], f"unknown revert 0x{raw} ({body['error'].get('message')})")


class Batch:
    """One devnet with the batch contracts installed, its own funded accounts, and the calls tests make."""

    def __init__(self, devnet: EvmDevnet, label: str) -> None:
        self.devnet = devnet
        self.url = devnet.rpc_url
        self.token = devnet.asset
        self.rpc = Rpc(self.url)
        batch.install_batch_settlement(self.url)
        self.payer_key = devnet_key(f"batch payer {label}")
        self.payer = Account.from_key(self.payer_key).address
        self.authorizer_key = devnet_key(f"batch receiver authorizer {label}")
        self.authorizer = Account.from_key(self.authorizer_key).address
        self.receiver = Account.from_key(devnet_key(f"batch receiver {label}")).address
        self.gas = Account.from_key(devnet_key(f"batch gas {label}")).address
        for account in (self.payer, self.gas):
            self.rpc("anvil_setBalance", account, hex(10**19))
            self.rpc("anvil_impersonateAccount", account)
        mint(self.url, self.token, self.payer, 100 * USDC)

    def config(self, withdraw_delay: int = 900) -> ChannelConfig:
        # A fresh random salt: a fresh channel per call.
        salt = os.urandom(32)
        return ChannelConfig(self.payer, self.payer, self.receiver, self.authorizer, self.token, withdraw_delay, salt)

    def balance(self, address: str) -> int:
        data = "0x70a08231" + encode(["address"], [address]).hex()
        return int.from_bytes(self.rpc.call(self.token, data), "big")

    def now(self) -> int:
        return int(self.rpc("eth_getBlockByNumber", "latest", False)["timestamp"], 16)

    def deposit_calldata(self, config: ChannelConfig, amount: int, salt: int | None = None) -> str:
        """deposit() with the payer's real ERC-3009 ReceiveWithAuthorization (signed by eth_account's encoder)."""
        salt = int.from_bytes(os.urandom(32), "big") if salt is None else salt
        channel = batch.channel_id(config, CHAIN_ID)
        valid_before = self.now() + 3600
        nonce = batch.erc3009_deposit_nonce(channel, salt)
        signature = sign_deposit_authorization(
            self.devnet, self.payer_key, self.payer, amount, valid_before=valid_before, nonce=nonce, to=COLLECTOR
        )
        collector_data = batch.erc3009_collector_data(0, valid_before, salt, signature)
        return batch.deposit_calldata(config, amount, collector_data)

    def deposit(self, config: ChannelConfig, amount: int) -> bytes:
        self.rpc.send(self.gas, SETTLEMENT, self.deposit_calldata(config, amount))
        return batch.channel_id(config, CHAIN_ID)

    def voucher(self, config: ChannelConfig, max_claimable: int, total: int, key: str | None = None) -> VoucherClaim:
        digest = batch.voucher_digest(CHAIN_ID, batch.channel_id(config, CHAIN_ID), max_claimable)
        return VoucherClaim(config, max_claimable, batch.sign_digest(key or self.payer_key, digest), total)

    def claim_calldata(self, rows: list[VoucherClaim], key: str | None = None) -> str:
        digest = batch.claim_batch_digest(CHAIN_ID, [(r.config, r.max_claimable, r.total_claimed) for r in rows])
        return batch.claim_with_signature_calldata(rows, batch.sign_digest(key or self.authorizer_key, digest))

    def send(self, data: str, sender: str | None = None) -> None:
        self.rpc.send(sender or self.gas, SETTLEMENT, data)

    def reverts(self, data: str, sender: str | None = None) -> str:
        return revert_reason(self.url, sender or self.gas, SETTLEMENT, data)


@pytest.fixture
def chain(devnet: EvmDevnet, request: pytest.FixtureRequest) -> Iterator[Batch]:
    b = Batch(devnet, request.node.name)
    yield b
    b.rpc.close()


# ---- digests ----


def test_digests_match_the_reference_vectors_offchain_and_onchain(chain: Batch) -> None:
    assert _independent_digests() == VECTORS
    cid = batch.channel_id(VECTOR_CONFIG, CHAIN_ID)
    assert cid.hex() == VECTORS["channel_id"]
    assert batch.voucher_digest(CHAIN_ID, cid, 1000).hex() == VECTORS["voucher_1000"]
    assert batch.refund_digest(CHAIN_ID, cid, 0, 500).hex() == VECTORS["refund_0_500"]
    assert batch.claim_batch_digest(CHAIN_ID, [(VECTOR_CONFIG, 1000, 1000)]).hex() == VECTORS["claim_batch_1000_1000"]
    assert batch.erc3009_deposit_nonce(cid, 1).hex() == VECTORS["erc3009_nonce_salt_1"]

    def view(data: str) -> str:
        return chain.rpc.call(SETTLEMENT, data).hex()

    assert batch.onchain_channel_id(chain.url, VECTOR_CONFIG).hex() == VECTORS["channel_id"]
    assert view(batch.encode_call("DOMAIN_SEPARATOR()", [], [])) == VECTORS["domain_84532"]
    voucher = batch.encode_call("getVoucherDigest(bytes32,uint128)", ["bytes32", "uint128"], [cid, 1000])
    assert view(voucher) == VECTORS["voucher_1000"]
    refund = batch.encode_call(
        "getRefundDigest(bytes32,uint256,uint128)", ["bytes32", "uint256", "uint128"], [cid, 0, 500]
    )
    assert view(refund) == VECTORS["refund_0_500"]
    rows = [VoucherClaim(VECTOR_CONFIG, 1000, b"", 1000).as_tuple()]
    claim_batch = batch.encode_call(
        f"getClaimBatchDigest({batch.VOUCHER_CLAIM_ABI}[])", [f"{batch.VOUCHER_CLAIM_ABI}[]"], [rows]
    )
    assert view(claim_batch) == VECTORS["claim_batch_1000_1000"]


# ---- deposit ----


def test_deposit_through_the_collector_moves_exactly_the_amount_and_reinstall_keeps_it(chain: Batch) -> None:
    config = chain.config()
    payer_before, escrow_before = chain.balance(chain.payer), chain.balance(SETTLEMENT)
    data = chain.deposit_calldata(config, 7 * USDC, salt=1)
    chain.send(data)
    cid = batch.channel_id(config, CHAIN_ID)
    assert chain.balance(chain.payer) == payer_before - 7 * USDC
    assert chain.balance(SETTLEMENT) == escrow_before + 7 * USDC
    assert chain.balance(COLLECTOR) == 0
    assert batch.channel_state(chain.url, cid) == batch.ChannelState(balance=7 * USDC, total_claimed=0)
    # The same authorization again: the token refuses its spent nonce.
    assert chain.reverts(data) == "FiatTokenV2: authorization is used or canceled"
    # A top-up adds to the balance.
    chain.deposit(config, 1 * USDC)
    assert batch.channel_state(chain.url, cid).balance == 8 * USDC
    # Installing again is idempotent and keeps the contracts' state.
    batch.install_batch_settlement(chain.url)
    for address, name in batch.CONTRACTS.items():
        assert chain.rpc("eth_getCode", address, "latest") == artifact(name)["deployedBytecode"]
    assert batch.channel_state(chain.url, cid).balance == 8 * USDC


def test_deposit_checks_the_config_and_the_collector(chain: Batch) -> None:
    config = chain.config()
    assert chain.reverts(chain.deposit_calldata(config, 0)) == "ZeroDeposit"
    short = chain.config(withdraw_delay=899)
    assert chain.reverts(chain.deposit_calldata(short, USDC)) == "WithdrawDelayOutOfRange"
    no_receiver = ChannelConfig(**{**config.__dict__, "receiver": "0x" + "00" * 20})
    assert chain.reverts(chain.deposit_calldata(no_receiver, USDC)) == "InvalidChannel"
    not_a_contract = batch.deposit_calldata(config, USDC, b"", collector=chain.receiver)
    assert chain.reverts(not_a_contract) == "InvalidCollector"
    collect = calldata("collect(address,address,uint256,bytes32,bytes)", chain.payer, chain.token, 1, bytes(32), b"")
    assert revert_reason(chain.url, chain.gas, COLLECTOR, collect) == "OnlyX402BatchSettlement"


# ---- claims and settlement ----


def test_claim_with_signature_then_settle_pays_the_receiver(chain: Batch) -> None:
    config = chain.config()
    cid = chain.deposit(config, 10 * USDC)
    chain.send(chain.claim_calldata([chain.voucher(config, 3 * USDC, 3 * USDC)]))
    assert batch.channel_state(chain.url, cid) == batch.ChannelState(balance=10 * USDC, total_claimed=3 * USDC)
    # A later voucher with a higher ceiling; claiming below the ceiling is fine, an old total is skipped.
    chain.send(chain.claim_calldata([chain.voucher(config, 6 * USDC, 5 * USDC)]))
    chain.send(chain.claim_calldata([chain.voucher(config, 3 * USDC, 3 * USDC)]))
    assert batch.channel_state(chain.url, cid).total_claimed == 5 * USDC
    assert batch.receiver_state(chain.url, chain.receiver, chain.token) == batch.ReceiverState(5 * USDC, 0)

    chain.send(batch.settle_calldata(chain.receiver, chain.token))
    assert chain.balance(chain.receiver) == 5 * USDC
    assert batch.receiver_state(chain.url, chain.receiver, chain.token) == batch.ReceiverState(5 * USDC, 5 * USDC)
    chain.send(batch.settle_calldata(chain.receiver, chain.token))  # nothing owed: a silent no-op
    assert chain.balance(chain.receiver) == 5 * USDC
    assert batch.channel_state(chain.url, cid).balance == 10 * USDC  # claims never reduce the balance


def test_direct_claim_is_for_the_receiver_side_only(chain: Batch) -> None:
    config = chain.config()
    cid = chain.deposit(config, 4 * USDC)
    data = batch.claim_calldata([chain.voucher(config, 2 * USDC, 2 * USDC)])
    assert chain.reverts(data) == "NotAuthorizedToClaim"
    chain.rpc("anvil_impersonateAccount", chain.receiver)
    chain.rpc("anvil_setBalance", chain.receiver, hex(10**18))
    chain.send(data, sender=chain.receiver)
    assert batch.channel_state(chain.url, cid).total_claimed == 2 * USDC


def test_claims_over_the_balance_or_the_ceiling_revert(chain: Batch) -> None:
    config = chain.config()
    chain.deposit(config, 5 * USDC)
    over = chain.voucher(config, 5 * USDC + 1, 5 * USDC + 1)
    assert chain.reverts(chain.claim_calldata([over])) == "ClaimExceedsBalance"
    above_ceiling = chain.voucher(config, 2 * USDC, 3 * USDC)
    assert chain.reverts(chain.claim_calldata([above_ceiling])) == "ClaimExceedsCeiling"
    assert chain.reverts(batch.claim_with_signature_calldata([], b"")) == "EmptyBatch"
    with pytest.raises(DevnetError):
        chain.send(chain.claim_calldata([over]))


def test_bad_signatures_revert(chain: Batch) -> None:
    config = chain.config()
    chain.deposit(config, 5 * USDC)
    stranger = devnet_key("batch stranger")
    forged = chain.voucher(config, 2 * USDC, 2 * USDC, key=stranger)
    assert chain.reverts(chain.claim_calldata([forged])) == "InvalidSignature"
    good = chain.voucher(config, 2 * USDC, 2 * USDC)
    assert chain.reverts(chain.claim_calldata([good], key=stranger)) == "InvalidSignature"
    # A malleable twin of a valid voucher signature (s -> n - s, v flipped) is refused too.
    r, s, v = good.signature[:32], int.from_bytes(good.signature[32:64], "big"), good.signature[64]
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    twin = VoucherClaim(
        config, good.max_claimable, r + (n - s).to_bytes(32, "big") + bytes([55 - v]), good.total_claimed
    )
    assert chain.reverts(chain.claim_calldata([twin])) == "InvalidSignature"
    chain.send(chain.claim_calldata([good]))


def test_contract_signers_go_through_eip1271(chain: Batch) -> None:
    """A zero payerAuthorizer checks the payer with SignatureChecker; a TestWallet receiverAuthorizer signs by 1271."""
    wallet = deploy(chain.url, "TestWallet", ["address"], [chain.authorizer])
    config = ChannelConfig(chain.payer, "0x" + "00" * 20, chain.receiver, wallet, chain.token, 900, os.urandom(32))
    cid = chain.deposit(config, 3 * USDC)
    chain.send(chain.claim_calldata([chain.voucher(config, USDC, USDC)]))
    assert batch.channel_state(chain.url, cid).total_claimed == USDC


# ---- refunds ----


def test_refund_with_signature_bumps_the_nonce_and_pays_the_payer(chain: Batch) -> None:
    config = chain.config()
    cid = chain.deposit(config, 10 * USDC)
    assert batch.refund_nonce(chain.url, cid) == 0
    payer_before = chain.balance(chain.payer)

    def refund(amount: int, nonce: int) -> str:
        signature = batch.sign_digest(chain.authorizer_key, batch.refund_digest(CHAIN_ID, cid, nonce, amount))
        return batch.refund_with_signature_calldata(config, amount, nonce, signature)

    chain.send(refund(2 * USDC, 0))
    assert batch.refund_nonce(chain.url, cid) == 1
    assert chain.balance(chain.payer) == payer_before + 2 * USDC
    assert batch.channel_state(chain.url, cid).balance == 8 * USDC
    assert chain.reverts(refund(2 * USDC, 0)) == "InvalidRefundNonce"
    assert chain.reverts(refund(0, 1)) == "ZeroRefund"
    forged = batch.sign_digest(devnet_key("batch stranger"), batch.refund_digest(CHAIN_ID, cid, 1, USDC))
    assert chain.reverts(batch.refund_with_signature_calldata(config, USDC, 1, forged)) == "InvalidSignature"

    # The cooperative refund as the server sends it: claim the charged total and refund the rest, atomically.
    claim = chain.claim_calldata([chain.voucher(config, 3 * USDC, 3 * USDC)])
    chain.send(batch.multicall_calldata([claim, refund(100 * USDC, 1)]))  # capped to the free escrow
    assert batch.refund_nonce(chain.url, cid) == 2
    assert batch.channel_state(chain.url, cid) == batch.ChannelState(balance=3 * USDC, total_claimed=3 * USDC)
    chain.send(refund(USDC, 2))  # no free escrow left: nothing moves, the nonce still goes up
    assert (batch.refund_nonce(chain.url, cid), chain.balance(chain.payer)) == (3, payer_before + 7 * USDC)
    assert chain.reverts(batch.refund_calldata(config, USDC)) == "NotAuthorizedToRefund"


# ---- the payer's timed withdrawal (on a private anvil: it moves the clock) ----


@pytest.fixture
def private_chain() -> Iterator[Batch]:
    anvil = Anvil(CHAIN_ID).start()
    try:
        b = Batch(provision(anvil.rpc_url, CHAIN_ID), "private")
        yield b
        b.rpc.close()
    finally:
        anvil.stop()


def test_timed_withdraw_respects_the_delay(private_chain: Batch) -> None:
    chain = private_chain
    config = chain.config(withdraw_delay=900)
    cid = chain.deposit(config, 10 * USDC)
    chain.send(chain.claim_calldata([chain.voucher(config, 4 * USDC, 4 * USDC)]))
    initiate = batch.initiate_withdraw_calldata
    assert chain.reverts(initiate(config, USDC)) == "InvalidChannel"  # only the payer side may start it
    assert chain.reverts(initiate(config, 7 * USDC), sender=chain.payer) == "WithdrawAmountExceedsAvailable"
    chain.send(initiate(config, 6 * USDC), sender=chain.payer)
    started = chain.now()
    assert batch.pending_withdrawal(chain.url, cid) == batch.WithdrawalState(6 * USDC, started)
    assert chain.reverts(initiate(config, USDC), sender=chain.payer) == "WithdrawalAlreadyPending"

    finalize = batch.finalize_withdraw_calldata(config)
    assert chain.reverts(finalize, sender=chain.payer) == "WithdrawDelayNotElapsed"
    chain.rpc("evm_setNextBlockTimestamp", hex(started + 899))
    chain.rpc("evm_mine")
    assert chain.reverts(finalize, sender=chain.payer) == "WithdrawDelayNotElapsed"
    assert chain.reverts(finalize) == "NotAuthorizedToFinalizeWithdraw"
    chain.rpc("evm_increaseTime", hex(1))
    chain.rpc("evm_mine")
    payer_before = chain.balance(chain.payer)
    chain.send(finalize, sender=chain.payer)
    assert chain.balance(chain.payer) == payer_before + 6 * USDC
    assert batch.channel_state(chain.url, cid) == batch.ChannelState(balance=4 * USDC, total_claimed=4 * USDC)
    assert batch.pending_withdrawal(chain.url, cid) == batch.WithdrawalState(0, 0)
    assert chain.reverts(finalize, sender=chain.payer) == "WithdrawalNotPending"


# ---- the official SDK (x402 2.25.0, in .venv-x402-svm) signs what our contracts accept ----

_SDK_SCRIPT = """
import json, sys
from eth_account import Account
from x402.mechanisms.evm.batch_settlement import abi
from x402.mechanisms.evm.batch_settlement.authorizer_signer import LocalAuthorizerSigner, sign_claim_batch, sign_refund
from x402.mechanisms.evm.batch_settlement.client import compute_channel_id
from x402.mechanisms.evm.batch_settlement.client.eip3009 import create_batch_settlement_eip3009_deposit_payload
from x402.mechanisms.evm.batch_settlement.facilitator.deposit_eip3009 import build_eip3009_deposit_collector_data
from x402.mechanisms.evm.batch_settlement.types import ChannelConfig, VoucherClaim
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.schemas import PaymentRequirements
a = json.loads(sys.argv[1])
config, network = ChannelConfig(**a["config"]), "eip155:84532"
requirements = PaymentRequirements(
    scheme="batch-settlement", network=network, asset=config.token, amount="1", pay_to=config.receiver,
    max_timeout_seconds=300, extra={"receiverAuthorizer": config.receiver_authorizer, "withdrawDelay": 900,
    "name": "USDC", "version": "2"})
payload = create_batch_settlement_eip3009_deposit_payload(
    EthAccountSigner(Account.from_key(a["payer_key"])), requirements, config, a["deposit"], a["max"])
authorizer = LocalAuthorizerSigner(a["authorizer_key"])
claims = [VoucherClaim(config, str(a["max"]), payload.voucher.signature, str(a["max"]))]
channel_id = compute_channel_id(config, network)
print(json.dumps({
    "channel_id": channel_id,
    "collector_data": build_eip3009_deposit_collector_data(payload).hex(),
    "voucher_signature": payload.voucher.signature,
    "claim_signature": sign_claim_batch(authorizer, claims, network),
    "refund_signature": sign_refund(authorizer, channel_id, a["refund"], 0, network),
    "abi": abi.BATCH_SETTLEMENT_ABI,
}))
"""


def _signature(entry: dict[str, Any]) -> str:
    def kind(i: dict[str, Any]) -> str:
        if i["type"].startswith("tuple"):
            return "(" + ",".join(kind(c) for c in i["components"]) + ")" + i["type"][5:]
        return str(i["type"])

    return f"{entry['name']}({','.join(kind(i) for i in entry['inputs'])})"


def test_the_official_sdk_signs_what_the_contracts_accept(chain: Batch) -> None:
    python = ROOT / ".venv-x402-svm" / "bin" / "python"
    if not python.exists():
        pytest.skip(".venv-x402-svm (the official x402 SDK venv) is not installed")
    config = chain.config()
    fields = ("payer", "payer_authorizer", "receiver", "receiver_authorizer", "token", "withdraw_delay")
    sdk_config = {**dict(zip(fields, config.as_tuple(), strict=False)), "salt": "0x" + config.salt.hex()}
    keys = {"payer_key": chain.payer_key, "authorizer_key": chain.authorizer_key}
    arguments = {"config": sdk_config, **keys, "deposit": 5 * USDC, "max": 2 * USDC, "refund": USDC}
    result = subprocess.run(
        [str(python), "-c", _SDK_SCRIPT, json.dumps(arguments)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    sdk = json.loads(result.stdout)
    cid = batch.onchain_channel_id(chain.url, config)
    assert sdk["channel_id"].lower() == "0x" + cid.hex()
    # Every function and event the SDK's ABI names exists in ours with the same signature.
    ours = {_signature(e) for e in artifact("x402BatchSettlement")["abi"] if e["type"] in ("function", "event")}
    assert {_signature(e) for e in sdk["abi"]} <= ours

    chain.send(batch.deposit_calldata(config, 5 * USDC, bytes.fromhex(sdk["collector_data"])))
    assert batch.channel_state(chain.url, cid).balance == 5 * USDC
    row = VoucherClaim(config, 2 * USDC, bytes.fromhex(sdk["voucher_signature"][2:]), 2 * USDC)
    chain.send(batch.claim_with_signature_calldata([row], bytes.fromhex(sdk["claim_signature"][2:])))
    assert batch.channel_state(chain.url, cid).total_claimed == 2 * USDC
    refund = batch.refund_with_signature_calldata(config, USDC, 0, bytes.fromhex(sdk["refund_signature"][2:]))
    chain.send(refund)
    assert batch.refund_nonce(chain.url, cid) == 1
    assert batch.channel_state(chain.url, cid) == batch.ChannelState(balance=4 * USDC, total_claimed=2 * USDC)
