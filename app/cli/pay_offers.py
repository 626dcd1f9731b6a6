"""The offers of an x402 quote as the paying client reads them: network names, known USDC assets, exact
prices (never a float), and which offer a payer's key pays under the spend cap."""

from __future__ import annotations

from decimal import Decimal

from app.cli.pay_errors import EXIT_OVER_CAP, CliError
from payments.codec import PaymentRequirements
from payments.money import to_display
from payments.networks import (
    BASE_MAINNET,
    BASE_SEPOLIA,
    KNOWN_USDC,
    SOLANA_DEVNET,
    SOLANA_MAINNET,
    KnownAsset,
    caip2,
)

NETWORK_NAMES = {
    BASE_MAINNET: "Base",
    BASE_SEPOLIA: "Base Sepolia",
    SOLANA_MAINNET: "Solana",
    SOLANA_DEVNET: "Solana devnet",
}
FAMILY_NAMES = {"eip155": "EVM", "solana": "Solana"}


def family(network: str) -> str:
    """'eip155' or 'solana' (the CAIP-2 namespace)."""
    return network.partition(":")[0]


def network_name(network: str) -> str:
    known = NETWORK_NAMES.get(network)
    if known:
        return known
    kind = FAMILY_NAMES.get(family(network))
    return f"{kind} (unknown chain)" if kind else "unknown"


def known_asset(offer: PaymentRequirements) -> KnownAsset | None:
    """The USDC this offer's network is known to use, if the offer asks for exactly that asset."""
    asset = KNOWN_USDC.get(offer.network)
    if asset is None:
        return None
    if family(offer.network) == "eip155":  # EVM addresses may come in any checksum case
        return asset if asset.address.lower() == offer.asset.lower() else None
    return asset if asset.address == offer.asset else None


def decimals_of(offer: PaymentRequirements) -> int:
    """The asset's decimals: the known USDC's, else what the offer states in `extra.decimals`, else 6 (USDC)."""
    asset = known_asset(offer)
    if asset is not None:
        return asset.decimals
    stated = offer.extra.get("decimals")
    return stated if isinstance(stated, int) and not isinstance(stated, bool) and 0 <= stated <= 36 else 6


def atomic_of(offer: PaymentRequirements) -> int:
    if not (offer.amount.isascii() and offer.amount.isdigit()):
        raise CliError(f"the offer on {offer.network} has an amount that is not atomic units: {offer.amount!r}")
    return int(offer.amount)


def price_of(offer: PaymentRequirements) -> Decimal:
    """The price in whole tokens, exact: atomic units scaled by the asset's decimals (never a float)."""
    return Decimal(atomic_of(offer)).scaleb(-decimals_of(offer))


def price_text(offer: PaymentRequirements) -> str:
    """'0.001 USDC'; an asset this CLI does not know is marked, since its decimals are a guess."""
    asset = known_asset(offer)
    shown = to_display(atomic_of(offer), decimals_of(offer))
    return f"{shown} {asset.symbol}" if asset else f"{shown} (unknown asset, {decimals_of(offer)} decimals assumed)"


def choose_offer(offers: list[PaymentRequirements], payer_family: str, network: str | None) -> PaymentRequirements:
    """The offer on `network` (CAIP-2 id or v1 name), else the first on the key's family; exact scheme only."""
    listed = ", ".join(o.network for o in offers) or "none"
    if network is not None:
        wanted = caip2(network)
        if family(wanted) != payer_family:
            raise CliError(
                f"--network {wanted} is on {FAMILY_NAMES.get(family(wanted), 'an unknown chain')}, "
                f"but the payer key is for {FAMILY_NAMES[payer_family]}"
            )
        matching = [o for o in offers if o.network == wanted and o.scheme == "exact"]
        if not matching:
            raise CliError(f"no offer on {wanted}; this resource takes: {listed}")
        return matching[0]
    matching = [o for o in offers if family(o.network) == payer_family and o.scheme == "exact"]
    if not matching:
        raise CliError(
            f"no offer on {FAMILY_NAMES[payer_family]}, the payer key's chain; this resource takes: {listed}"
            " (use a key of one of those networks)"
        )
    return matching[0]


def check_offer(offer: PaymentRequirements, cap: Decimal) -> None:
    """Refuse what this CLI cannot price in dollars (an unknown asset), and anything above the cap."""
    if known_asset(offer) is None:
        raise CliError(
            f"the offer on {offer.network} asks for asset {offer.asset}, which is not a USDC this CLI knows"
            f" ({', '.join(NETWORK_NAMES.values())}); nothing was paid"
        )
    price = price_of(offer)
    if price > cap:
        raise CliError(
            f"the price, {price_text(offer)} ({offer.amount} atomic units) on {offer.network}, is above"
            f" --max {cap} (the spend cap); nothing was paid",
            EXIT_OVER_CAP,
        )
