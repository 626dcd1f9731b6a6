"""Provision the EVM side of the devnet: test USDC at Base Sepolia's USDC address, a funded payer and relayer.

Keys are derived from fixed labels, so every devnet has the same payer, relayer and payTo; they
hold only devnet money and are printed in devnet.json on purpose. Provisioning is idempotent, so a
devnet restarted from anvil's --state file is topped up, not re-created.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import httpx
from eth_abi import encode as abi_encode
from eth_account import Account

from ..evm.eip712 import keccak256
from ..networks import USDC_BASE_SEPOLIA
from .process import DevnetError

CONTRACTS = Path(__file__).parent / "contracts"
PAYER_USDC_ATOMIC = 1_000 * 10**6  # 1,000 test USDC
RELAYER_WEI = 100 * 10**18  # gas money for settlements
OWNER_WEI = 10 * 10**18


@cache
def artifact(name: str) -> dict[str, Any]:
    """A committed compiler artifact (`make contracts` rebuilds them from the .sol sources)."""
    return json.loads((CONTRACTS / f"{name}.json").read_text())


def devnet_key(label: str) -> str:
    """A deterministic private key for a devnet role. Devnet only: everyone can derive it."""
    return "0x" + keccak256(f"worldgate devnet {label}".encode()).hex()


def address_of(private_key: str) -> str:
    return str(Account.from_key(private_key).address)


def selector(signature: str) -> bytes:
    return keccak256(signature.encode())[:4]


def calldata(signature: str, *args: Any) -> str:
    types = signature[signature.index("(") + 1 : -1]
    type_list = [t for t in types.split(",") if t] if types else []
    return "0x" + (selector(signature) + abi_encode(type_list, list(args))).hex()


@dataclass(frozen=True)
class EvmDevnet:
    network: str
    chain_id: int
    rpc_url: str
    asset: str
    eip712_name: str
    eip712_version: str
    pay_to: str
    payer_address: str
    payer_private_key: str
    relayer_address: str
    relayer_private_key: str
    owner_address: str

    def state(self) -> dict[str, Any]:
        """The `evm` section of devnet.json (the issue's fields, plus the relayer key for a separate gateway)."""
        return {
            "network": self.network,
            "chain_id": self.chain_id,
            "rpc_url": self.rpc_url,
            "asset": self.asset,
            "eip712": {"name": self.eip712_name, "version": self.eip712_version},
            "pay_to": self.pay_to,
            "payer_address": self.payer_address,
            "payer_private_key": self.payer_private_key,
            "relayer_address": self.relayer_address,
            "relayer_private_key": self.relayer_private_key,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EvmDevnet:
        """The devnet a devnet.json `evm` section describes (`state()` read back; the owner is not in it)."""
        return cls(
            network=state["network"],
            chain_id=state["chain_id"],
            rpc_url=state["rpc_url"],
            asset=state["asset"],
            eip712_name=state["eip712"]["name"],
            eip712_version=state["eip712"]["version"],
            pay_to=state["pay_to"],
            payer_address=state["payer_address"],
            payer_private_key=state["payer_private_key"],
            relayer_address=state["relayer_address"],
            relayer_private_key=state["relayer_private_key"],
            owner_address="",
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Rpc:
    """A minimal blocking JSON-RPC client for setup-time calls (never used on the request path)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client = httpx.Client(timeout=10.0)
        self._id = 0

    def __call__(self, method: str, *params: Any) -> Any:
        self._id += 1
        answer = self._client.post(
            self.url, json={"jsonrpc": "2.0", "id": self._id, "method": method, "params": params}
        )
        body = answer.json()
        if "error" in body:
            raise DevnetError(f"{method} failed: {body['error'].get('message')}")
        return body["result"]

    def send(self, sender: str, to: str | None, data: str, value: int = 0) -> dict[str, Any]:
        """Send from an unlocked or impersonated account; anvil mines at once, so the receipt is there."""
        tx: dict[str, Any] = {"from": sender, "data": data, "value": hex(value)}
        if to is not None:
            tx["to"] = to
        tx_hash = self("eth_sendTransaction", tx)
        receipt = self.receipt(tx_hash)
        if int(receipt["status"], 16) != 1:
            raise DevnetError(f"devnet transaction {tx_hash} failed")
        return dict(receipt)

    def receipt(self, tx_hash: str, timeout_s: float = 10.0) -> dict[str, Any]:
        """Poll for a receipt: even with automine, anvil may answer the hash before the receipt is indexed."""
        deadline = time.monotonic() + timeout_s
        while (receipt := self("eth_getTransactionReceipt", tx_hash)) is None:
            if time.monotonic() > deadline:
                raise DevnetError(f"no receipt for devnet transaction {tx_hash} after {timeout_s:.0f} s")
            time.sleep(0.01)
        return dict(receipt)

    def call(self, to: str, data: str) -> bytes:
        return bytes.fromhex(self("eth_call", {"to": to, "data": data}, "latest")[2:])

    def close(self) -> None:
        self._client.close()


def _uint(raw: bytes) -> int:
    return int.from_bytes(raw[:32], "big")


def provision(
    rpc_url: str,
    chain_id: int,
    *,
    network: str | None = None,
    asset: str = USDC_BASE_SEPOLIA.address,
    eip712_name: str = "USDC",
    eip712_version: str = "2",
    payer_usdc_atomic: int = PAYER_USDC_ATOMIC,
) -> EvmDevnet:
    """Place TestUSDC at `asset`, initialise it once, and top up the payer (USDC) and relayer (ETH)."""
    owner = address_of(devnet_key("token owner"))
    payer_key, relayer_key = devnet_key("payer"), devnet_key("relayer")
    devnet = EvmDevnet(
        network=network or f"eip155:{chain_id}",
        chain_id=chain_id,
        rpc_url=rpc_url,
        asset=asset,
        eip712_name=eip712_name,
        eip712_version=eip712_version,
        pay_to=address_of(devnet_key("pay to")),
        payer_address=address_of(payer_key),
        payer_private_key=payer_key,
        relayer_address=address_of(relayer_key),
        relayer_private_key=relayer_key,
        owner_address=owner,
    )
    rpc = Rpc(rpc_url)
    try:
        if int(rpc("eth_chainId"), 16) != chain_id:
            raise DevnetError(f"{rpc_url} is not chain {chain_id}")
        rpc("anvil_setCode", asset, artifact("TestUSDC")["deployedBytecode"])
        rpc("anvil_setBalance", owner, hex(OWNER_WEI))
        rpc("anvil_impersonateAccount", owner)
        if not _uint(rpc.call(asset, calldata("initialized()"))):
            rpc.send(
                owner,
                asset,
                calldata("initialize(string,string,string,address)", eip712_name, eip712_version, "USDC", owner),
            )
        balance = _uint(rpc.call(asset, calldata("balanceOf(address)", devnet.payer_address)))
        if balance < payer_usdc_atomic:
            rpc.send(
                owner,
                asset,
                calldata("mint(address,uint256)", devnet.payer_address, payer_usdc_atomic - balance),
            )
        if int(rpc("eth_getBalance", devnet.relayer_address, "latest"), 16) < RELAYER_WEI // 2:
            rpc("anvil_setBalance", devnet.relayer_address, hex(RELAYER_WEI))
    finally:
        rpc.close()
    return devnet


def mint(rpc_url: str, asset: str, to: str, amount_atomic: int) -> None:
    """Mint devnet USDC to any address (the token owner is impersonated)."""
    owner = address_of(devnet_key("token owner"))
    rpc = Rpc(rpc_url)
    try:
        rpc("anvil_impersonateAccount", owner)
        rpc.send(owner, asset, calldata("mint(address,uint256)", to, amount_atomic))
    finally:
        rpc.close()


def deploy(rpc_url: str, name: str, constructor_types: list[str], constructor_args: list[Any]) -> str:
    """Deploy a committed artifact from the impersonated owner; returns the contract address."""
    owner = address_of(devnet_key("token owner"))
    rpc = Rpc(rpc_url)
    try:
        rpc("anvil_setBalance", owner, hex(OWNER_WEI))
        rpc("anvil_impersonateAccount", owner)
        code = artifact(name)["bytecode"] + abi_encode(constructor_types, constructor_args).hex()
        receipt = rpc.send(owner, None, code)
        return str(receipt["contractAddress"])
    finally:
        rpc.close()
