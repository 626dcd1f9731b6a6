"""Networks and assets worldgate knows by name: CAIP-2 ids, v1 names, USDC addresses, EIP-712 domains.

Values come from the x402 reference SDK's constants and network docs; the Base mainnet and
Base Sepolia domains differ in `name` ("USD Coin" vs "USDC"), which breaks signatures if mixed up.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KnownAsset:
    network: str
    address: str
    symbol: str
    decimals: int
    eip712_name: str | None = None
    eip712_version: str | None = None


BASE_MAINNET = "eip155:8453"
BASE_SEPOLIA = "eip155:84532"
SOLANA_MAINNET = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"
SOLANA_DEVNET = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"

USDC_BASE_MAINNET = KnownAsset(BASE_MAINNET, "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "USDC", 6, "USD Coin", "2")
USDC_BASE_SEPOLIA = KnownAsset(BASE_SEPOLIA, "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "USDC", 6, "USDC", "2")

USDC_SOLANA_MAINNET = KnownAsset(SOLANA_MAINNET, "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", "USDC", 6)
USDC_SOLANA_DEVNET = KnownAsset(SOLANA_DEVNET, "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU", "USDC", 6)

KNOWN_USDC: dict[str, KnownAsset] = {
    a.network: a for a in (USDC_BASE_MAINNET, USDC_BASE_SEPOLIA, USDC_SOLANA_MAINNET, USDC_SOLANA_DEVNET)
}

# v1 headers name networks instead of using CAIP-2 ids.
V1_NAMES: dict[str, str] = {
    "base": BASE_MAINNET,
    "base-sepolia": BASE_SEPOLIA,
    "solana": SOLANA_MAINNET,
    "solana-devnet": SOLANA_DEVNET,
}


def evm_chain_id(network: str) -> int | None:
    """The chain id of an `eip155:<id>` network, or None if the id is not an EVM CAIP-2 id."""
    namespace, _, reference = network.partition(":")
    if namespace != "eip155" or not (reference.isascii() and reference.isdigit()) or len(reference) > 18:
        return None
    return int(reference)


def caip2(network: str) -> str:
    """Accept a CAIP-2 id or a v1 name; return the CAIP-2 id (unknown names come back unchanged)."""
    return V1_NAMES.get(network, network)
