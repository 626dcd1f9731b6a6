"""The payer's key and the payment it signs: read from a file or the environment (never argv), parsed as
an EVM or a Solana key, and used by worldgate's paying side (payments/evm/client.py,
payments/svm/client.py) to sign an offer. The key is never printed: errors say what is wrong, not what it was.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.cli.pay_args import KEY_ENV, RPC_ENV
from app.cli.pay_errors import CliError
from app.cli.pay_http import QUOTE_TIMEOUT_S, host_of
from app.cli.pay_offers import FAMILY_NAMES, decimals_of, family
from app.runtime.devnet_file import devnet_state
from payments.codec import PaymentRequirements
from payments.networks import caip2

_HEX = frozenset(string.hexdigits)
_KEY_HELP = "an EVM key is 0x and 64 hex digits; a Solana key is a base58 64-byte secret or a solana-keygen JSON array"


@dataclass(frozen=True)
class Payer:
    """A parsed key: its family and address. `secret` (hex string or solders Keypair) is never shown."""

    family: str
    address: str
    secret: Any = field(repr=False)


def read_key_text(key_file: str | None, env: Mapping[str, str]) -> str:
    if key_file:
        try:
            return Path(key_file).expanduser().read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a readable text file"
            raise CliError(f"cannot read the key file {key_file}: {reason}") from None
    text = env.get(KEY_ENV, "").strip()
    if not text:
        raise CliError(f"no payer key: set {KEY_ENV} or pass --key-file PATH ({_KEY_HELP})")
    return text


def evm_payer(text: str) -> Payer:
    from eth_account import Account

    digits = text[2:] if text[:2].lower() == "0x" else text
    if len(digits) != 64 or not set(digits) <= _HEX:
        raise CliError(f"the payer key is not a valid EVM private key ({_KEY_HELP})")
    try:
        account = Account.from_key("0x" + digits)
    except Exception:  # out of the curve's range; the library's message is not shown (it may quote the key)
        raise CliError("the payer key is not a valid EVM private key (out of range)") from None
    return Payer("eip155", account.address, "0x" + digits)


def solana_payer(text: str) -> Payer:
    from solders.keypair import Keypair

    try:
        if text.startswith("["):
            numbers = json.loads(text)
            if not isinstance(numbers, list) or not all(isinstance(n, int) and 0 <= n <= 255 for n in numbers):
                raise ValueError("not a list of bytes")
            keypair = Keypair.from_bytes(bytes(numbers))
        else:
            keypair = Keypair.from_base58_string(text)
    except Exception:  # ValueError from solders or json; its text is not shown
        raise CliError(f"the payer key is not a valid Solana keypair ({_KEY_HELP})") from None
    return Payer("solana", str(keypair.pubkey()), keypair)


def parse_key(text: str) -> Payer:
    """An EVM key (0x hex, or 64 hex digits) or a Solana keypair (base58, or a JSON byte array)."""
    is_hex = text[:2].lower() == "0x" or (len(text) == 64 and set(text) <= _HEX)
    return evm_payer(text) if is_hex else solana_payer(text)


def _devnet_file(env: Mapping[str, str], hint: str) -> tuple[Path, dict[str, Any] | None]:
    state_dir = Path(env.get("WORLDGATE_STATE_DIR") or ".worldgate")
    try:
        return state_dir, devnet_state(state_dir)
    except (OSError, ValueError):
        raise CliError(f"cannot read {state_dir / 'devnet.json'}: {hint}") from None


# devnet.json's section per chain family, and where it keeps the payer's key
_DEVNET_KEYS = {"eip155": ("evm", "payer_private_key"), "solana": ("svm", "payer_secret_key")}


def devnet_payer(
    offers: list[PaymentRequirements], network: str | None, env: Mapping[str, str]
) -> tuple[PaymentRequirements, Payer]:
    """--devnet: the offer on `network` (else the first offer on a chain the local devnet runs) and the
    devnet's payer key for it, from <WORLDGATE_STATE_DIR>/devnet.json."""
    state_dir, state = _devnet_file(env, "start `worldgate serve` or `worldgate devnet`, or pass --key-file")
    if state is None:
        raise CliError(
            f"--devnet: no {state_dir / 'devnet.json'}; start `worldgate serve` (or `worldgate devnet`) first,"
            " or set WORLDGATE_STATE_DIR"
        )
    keys: dict[str, str] = {}
    for fam, (section_name, key_name) in _DEVNET_KEYS.items():
        section = state.get(section_name) or {}
        if section.get("network") and section.get(key_name) and family(section["network"]) == fam:
            keys[section["network"]] = section[key_name]
    wanted = caip2(network) if network else None
    exact = [o for o in offers if o.scheme == "exact" and (wanted is None or o.network == wanted)]
    offer = next((o for o in exact if o.network in keys), None)
    if offer is None:
        listed = ", ".join(o.network for o in offers) or "none"
        ran = ", ".join(keys) or "no chain"
        raise CliError(
            f"--devnet: the local devnet runs {ran}; this resource takes {listed}"
            + (f" (asked for {wanted})" if wanted else "")
        )
    payer = parse_key(keys[offer.network])
    if payer.family != family(offer.network):
        raise CliError(
            f"--devnet: devnet.json's key for {offer.network} is not a {FAMILY_NAMES[family(offer.network)]} key"
        )
    return offer, payer


def devnet_rpc_url(network: str, env: Mapping[str, str]) -> str | None:
    """The local devnet's Solana RPC URL from <WORLDGATE_STATE_DIR>/devnet.json, if it runs `network`."""
    _, state = _devnet_file(env, "pass --rpc-url")
    svm = (state or {}).get("svm") or {}
    return svm.get("rpc_url") if svm.get("network") == network else None


def svm_rpc_url(explicit: str | None, network: str, env: Mapping[str, str]) -> str:
    url = explicit or env.get(RPC_ENV) or devnet_rpc_url(network, env)
    if not url:
        raise CliError(
            f"paying on Solana needs a recent blockhash from an RPC node of {network}: pass --rpc-url or set {RPC_ENV}"
        )
    return url


def latest_blockhash(rpc_url: str) -> Any:
    from solders.hash import Hash

    request = {"jsonrpc": "2.0", "id": 1, "method": "getLatestBlockhash", "params": [{"commitment": "confirmed"}]}
    try:
        answer = httpx.post(rpc_url, json=request, timeout=QUOTE_TIMEOUT_S)
        return Hash.from_string(answer.json()["result"]["value"]["blockhash"])
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach the Solana RPC at {host_of(rpc_url)}: {str(exc) or type(exc).__name__}") from None
    except (ValueError, KeyError, TypeError):
        raise CliError(f"the Solana RPC at {host_of(rpc_url)} gave no recent blockhash") from None


def sign(payer: Payer, offer: PaymentRequirements, rpc_url: str | None) -> str:
    """The PAYMENT-SIGNATURE value for `offer`, signed by worldgate's paying side for its chain."""
    try:
        if payer.family == "eip155":
            from payments.evm import client as evm

            if not {"name", "version"} <= offer.extra.keys():
                raise CliError(f"the offer on {offer.network} lacks extra.name/version (its EIP-712 domain)")
            return evm.pay(payer.secret, offer)
        from payments.svm import client as svm

        if "feePayer" not in offer.extra:
            raise CliError(f"the offer on {offer.network} lacks extra.feePayer")
        assert rpc_url is not None
        return svm.pay(payer.secret, offer, blockhash=latest_blockhash(rpc_url), decimals=decimals_of(offer))
    except CliError:
        raise
    except Exception as exc:  # a malformed address in the offer, say; never the key
        raise CliError(f"cannot sign a payment for the offer on {offer.network}: {type(exc).__name__}") from None
