"""`worldgate quote` and `worldgate pay`: read an x402 quote, and pay it, from a shell.

`quote` GETs a URL and shows its 402 quote (the PAYMENT-REQUIRED header, decoded) as a table.
`pay` picks the offer the payer's key can pay (or `--network`), refuses it if the price is above the
spend cap (`--max`, exact decimal dollars), signs it with worldgate's paying side
(payments/evm/client.py or payments/svm/client.py) and sends the paid request; `--header-only`
prints just the PAYMENT-SIGNATURE value, for curl.

The payer's key comes from a file or WORLDGATE_PAYER_KEY, never from argv (shell history, `ps`),
and is never printed: errors about it say what is wrong, not what it was.

Exit codes: 0 done (paid, quoted, or the resource is free); 1 the gateway refused the payment, the
settlement failed, or the paid request answered an error; 2 nothing was paid (unreachable, no quote,
no offer for the key, a key or RPC problem); 3 the price is above --max (nothing was paid).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import string
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec

from app.runtime.devnet_file import devnet_state
from payments.codec import (
    PAYMENT_REQUIRED_HEADER,
    PAYMENT_RESPONSE_HEADER,
    PaymentRequired,
    PaymentRequirements,
)
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

EXIT_OK, EXIT_FAILED, EXIT_NOT_PAID, EXIT_OVER_CAP = 0, 1, 2, 3
KEY_ENV = "WORLDGATE_PAYER_KEY"
RPC_ENV = "WORLDGATE_SVM_RPC_URL"
DEFAULT_CAP = Decimal("0.10")
QUOTE_TIMEOUT_S = 30.0
PAID_TIMEOUT_S = 120.0  # the gateway settles on chain before it answers

NETWORK_NAMES = {
    BASE_MAINNET: "Base",
    BASE_SEPOLIA: "Base Sepolia",
    SOLANA_MAINNET: "Solana",
    SOLANA_DEVNET: "Solana devnet",
}
FAMILY_NAMES = {"eip155": "EVM", "solana": "Solana"}

PAY_EPILOG = f"""\
the payer key:
  read from --key-file PATH or the {KEY_ENV} environment variable, never from a
  command-line argument (an argument lands in your shell history and in `ps`); it is
  never printed or logged.
    EVM (Base)  0x and 64 hex digits
    Solana      a base58 64-byte secret, or a solana-keygen JSON array (a keypair file)

exit codes:
  0  paid and served (or the resource is free)
  1  the gateway refused the payment, settlement failed, or the paid request failed
  2  nothing was paid: unreachable URL, no 402 quote, no offer for the key, bad key, no RPC
  3  the price is above --max: nothing was paid

with curl:
  worldgate quote URL
  curl -i -H "PAYMENT-SIGNATURE: $(worldgate pay --header-only --key-file payer.key URL)" URL
"""


class CliError(Exception):
    """A short message for stderr and the exit code that goes with it; never a traceback."""

    def __init__(self, message: str, code: int = EXIT_NOT_PAID) -> None:
        super().__init__(message)
        self.code = code


# --- offers: names, assets and exact prices ----------------------------------------------------


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
    if not offer.amount.isdigit():
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


def parse_cap(text: str) -> Decimal:
    """--max: a dollar amount, exact ('0.01', '$0.25'); argparse reports the error."""
    try:
        cap = Decimal(text.strip().removeprefix("$"))
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount in dollars, like 0.01") from None
    if not cap.is_finite() or cap < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount in dollars, like 0.01")
    return cap


# --- HTTP ---------------------------------------------------------------------------------------


def host_of(url: str) -> str:
    """scheme://host[:port] of a URL, for messages: no path, query or credentials (RPC URLs carry API keys)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def fetch(url: str, headers: dict[str, str] | None = None, timeout_s: float = QUOTE_TIMEOUT_S) -> httpx.Response:
    """One GET, no redirects followed; an unreachable or malformed URL becomes a CliError."""
    try:
        return httpx.get(url, headers=headers, timeout=timeout_s, follow_redirects=False)
    except httpx.InvalidURL as exc:
        raise CliError(f"{url!r} is not a URL this can fetch: {exc}") from None
    except httpx.UnsupportedProtocol:
        raise CliError(f"{url!r} is not an http:// or https:// URL") from None
    except httpx.TimeoutException:
        raise CliError(f"{host_of(url)} did not answer within {timeout_s:.0f} s") from None
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach {host_of(url)}: {str(exc) or type(exc).__name__}") from None


def status_line(response: httpx.Response) -> str:
    return f"HTTP {response.status_code} {response.reason_phrase}".rstrip()


def body_text(response: httpx.Response) -> str:
    """The body for a terminal: JSON pretty-printed, anything else as text."""
    try:
        return json.dumps(response.json(), indent=2, ensure_ascii=False)
    except ValueError:
        return response.text


def decode_b64_json(value: str, what: str) -> dict[str, Any]:
    try:
        document = json.loads(base64.b64decode(value.strip() + "=" * (-len(value.strip()) % 4), validate=True))
    except (binascii.Error, ValueError):
        raise CliError(f"the {what} header is not base64 JSON") from None
    if not isinstance(document, dict):
        raise CliError(f"the {what} header is not a JSON object")
    return document


def decode_quote(response: httpx.Response) -> tuple[PaymentRequired, dict[str, Any]]:
    """A 402's PAYMENT-REQUIRED header: the typed quote and the JSON as sent."""
    header = response.headers.get(PAYMENT_REQUIRED_HEADER)
    if header is None:
        raise CliError("the 402 has no PAYMENT-REQUIRED header: not an x402 v2 quote")
    document = decode_b64_json(header, "PAYMENT-REQUIRED")
    try:
        required = msgspec.convert(document, type=PaymentRequired)
    except msgspec.ValidationError as exc:
        raise CliError(f"the PAYMENT-REQUIRED header is not an x402 PaymentRequired: {exc}") from None
    return required, document


def decode_receipt(response: httpx.Response) -> dict[str, Any] | None:
    header = response.headers.get(PAYMENT_RESPONSE_HEADER)
    return decode_b64_json(header, "PAYMENT-RESPONSE") if header is not None else None


def get_quote(url: str) -> httpx.Response:
    """The unpaid answer; anything but a 402 (or a free 2xx) is an error that names the status."""
    response = fetch(url)
    if response.status_code == 402 or response.is_success:
        return response
    detail = response.text.strip()[:500]
    raise CliError(f"{url} answered {status_line(response)}, not a 402 quote" + (f": {detail}" if detail else ""))


# --- quote --------------------------------------------------------------------------------------


def table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def offer_row(offer: PaymentRequirements) -> list[str]:
    asset = known_asset(offer)
    return [
        offer.network,
        network_name(offer.network),
        price_text(offer),
        offer.amount,
        f"{offer.asset}" + (f" ({asset.symbol})" if asset else ""),
        offer.pay_to,
        f"{offer.max_timeout_seconds}s",
        str(offer.extra.get("feePayer", "-")) if family(offer.network) == "solana" else "-",
    ]


def render_quote(required: PaymentRequired) -> str:
    resource = required.resource
    lines = [
        f"resource     {resource.url if resource else '-'}",
        f"description  {(resource.description if resource else None) or '-'}",
        f"x402         v{required.x402_version}, {len(required.accepts)} offer(s): pay any one",
        "",
    ]
    header = ["network", "name", "price", "atomic", "asset", "payTo", "validity", "feePayer"]
    return "\n".join(lines + table([header] + [offer_row(o) for o in required.accepts]))


def cmd_quote(args: argparse.Namespace) -> int:
    try:
        response = fetch(args.url)
        if response.status_code == 402:
            required, document = decode_quote(response)
            print(
                json.dumps(document, indent=2, ensure_ascii=False) if args.format == "json" else render_quote(required)
            )
            return EXIT_OK
    except CliError as exc:
        print(f"worldgate: {exc}", file=sys.stderr)
        return exc.code
    print(status_line(response))
    print(body_text(response))
    if response.is_success:
        print(f"worldgate: {args.url} is free: it answered {response.status_code} without payment", file=sys.stderr)
        return EXIT_OK
    print(f"worldgate: {args.url} answered {response.status_code}, not a 402 quote", file=sys.stderr)
    return EXIT_NOT_PAID


# --- the payer's key ----------------------------------------------------------------------------

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


# --- choosing and checking the offer ------------------------------------------------------------


def choose_offer(offers: list[PaymentRequirements], payer: Payer, network: str | None) -> PaymentRequirements:
    """The offer on `network` (CAIP-2 id or v1 name), else the first on the key's family; exact scheme only."""
    listed = ", ".join(o.network for o in offers) or "none"
    if network is not None:
        wanted = caip2(network)
        if family(wanted) != payer.family:
            raise CliError(
                f"--network {wanted} is on {FAMILY_NAMES.get(family(wanted), 'an unknown chain')}, "
                f"but the payer key is for {FAMILY_NAMES[payer.family]}"
            )
        matching = [o for o in offers if o.network == wanted and o.scheme == "exact"]
        if not matching:
            raise CliError(f"no offer on {wanted}; this resource takes: {listed}")
        return matching[0]
    matching = [o for o in offers if family(o.network) == payer.family and o.scheme == "exact"]
    if not matching:
        raise CliError(
            f"no offer on {FAMILY_NAMES[payer.family]}, the payer key's chain; this resource takes: {listed}"
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


# --- Solana: where a recent blockhash comes from ------------------------------------------------


def devnet_rpc_url(network: str, env: Mapping[str, str]) -> str | None:
    """The local devnet's Solana RPC URL from <WORLDGATE_STATE_DIR>/devnet.json, if it runs `network`."""

    state_dir = Path(env.get("WORLDGATE_STATE_DIR") or ".worldgate")
    try:
        state = devnet_state(state_dir)
    except (OSError, ValueError):
        raise CliError(f"cannot read {state_dir / 'devnet.json'}: pass --rpc-url") from None
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


# --- signing ------------------------------------------------------------------------------------


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


def prepare(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[httpx.Response, str | None]:
    """The unpaid answer to args.url and a PAYMENT-SIGNATURE for it (None when the resource is free)."""
    payer = parse_key(read_key_text(args.key_file, env))  # a bad key fails before any request is made
    response = get_quote(args.url)
    if response.status_code != 402:
        return response, None
    required, _ = decode_quote(response)
    offer = choose_offer(required.accepts, payer, args.network)
    check_offer(offer, args.max)
    rpc_url = svm_rpc_url(args.rpc_url, offer.network, env) if payer.family == "solana" else None
    print(
        f"worldgate: {'signing' if args.header_only else 'paying'} {price_text(offer)} ({offer.amount} atomic units)"
        f" on {network_name(offer.network)} ({offer.network}) to {offer.pay_to}, from {payer.address}",
        file=sys.stderr,
    )
    return response, sign(payer, offer, rpc_url)


def send_paid(url: str, header: str) -> httpx.Response:
    """The paid request. Once it is sent the payment may settle, so a lost answer is not 'nothing was paid'."""
    try:
        return fetch(url, {"PAYMENT-SIGNATURE": header}, timeout_s=PAID_TIMEOUT_S)
    except CliError as exc:
        raise CliError(
            f"the paid request got no answer ({exc}); the payment may still settle: check your balance"
            " before paying again",
            EXIT_FAILED,
        ) from None


# --- the paid answer ----------------------------------------------------------------------------


def refusal_of(response: httpx.Response) -> str:
    """'reason: message' of a 402 that refused the payment (the reason is in the new quote's `error`)."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    reason = body.get("error")
    if reason is None and PAYMENT_REQUIRED_HEADER in response.headers:
        try:
            reason = decode_b64_json(response.headers[PAYMENT_REQUIRED_HEADER], "PAYMENT-REQUIRED").get("error")
        except CliError:
            reason = None
    message = body.get("message")
    return f"{reason or 'unknown reason'}" + (f": {message}" if message else "")


def report_paid(response: httpx.Response) -> int:
    """Status, receipt and body on stdout; a one-line verdict on stderr when it did not work."""
    print(status_line(response))
    try:
        receipt = decode_receipt(response)
    except CliError as exc:  # the payment was sent: whatever happened, it is not "nothing was paid"
        raise CliError(f"{exc}; the payment's outcome is unknown", EXIT_FAILED) from None
    if receipt is not None:
        shown = {k: receipt.get(k) for k in ("success", "transaction", "network", "payer") if k in receipt}
        shown.update({k: v for k, v in receipt.items() if k not in shown})
        print("PAYMENT-RESPONSE: " + json.dumps(shown))
    if response.status_code == 402 and receipt is not None and not receipt.get("success"):
        print(f"worldgate: settlement failed: {refusal_of(response)}", file=sys.stderr)
        return EXIT_FAILED
    if response.status_code == 402:
        print(f"worldgate: payment refused: {refusal_of(response)}", file=sys.stderr)
        return EXIT_FAILED
    print(body_text(response))
    if not response.is_success:
        print(f"worldgate: the paid request answered {response.status_code}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_pay(args: argparse.Namespace) -> int:
    try:
        unpaid, header = prepare(args, os.environ)
        if header is None:
            if args.header_only:
                raise CliError(f"{args.url} is free: it answered {unpaid.status_code} without a quote; nothing to sign")
            print(status_line(unpaid))
            print(body_text(unpaid))
            print(f"worldgate: {args.url} is free: nothing was paid", file=sys.stderr)
            return EXIT_OK
        if args.header_only:
            print(header)
            return EXIT_OK
        return report_paid(send_paid(args.url, header))
    except CliError as exc:
        print(f"worldgate: {exc}", file=sys.stderr)
        return exc.code
