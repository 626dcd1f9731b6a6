"""`worldgate quote` and `worldgate pay`: read an x402 quote, and pay it, from a shell.

`quote` GETs a URL and shows its 402 quote (the PAYMENT-REQUIRED header, decoded) as a table.
`pay` picks the offer the payer's key can pay (or `--network`), refuses it if the price is above the
spend cap (`--max`, exact decimal dollars), signs it with worldgate's paying side
(payments/evm/client.py or payments/svm/client.py) and sends the paid request; `--header-only`
prints just the PAYMENT-SIGNATURE value, for curl. The offers' arithmetic is pay_offers.py's, the
key and the signature pay_key.py's, HTTP pay_http.py's.

The payer's key comes from a file or WORLDGATE_PAYER_KEY, never from argv (shell history, `ps`), or with
`--devnet` from the local devnet's devnet.json (the offer picks the chain, so the key follows it); it is
never printed: errors about it say what is wrong, not what it was.

Exit codes: 0 done (paid, quoted, or the resource is free); 1 the gateway refused the payment, the
settlement failed, or the paid request answered an error; 2 nothing was paid (unreachable, no quote,
no offer for the key, a key or RPC problem); 3 the price is above --max (nothing was paid).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping

import httpx

from app.cli.pay_args import DEFAULT_CAP, KEY_ENV, PAY_EPILOG, RPC_ENV, parse_cap
from app.cli.pay_errors import EXIT_FAILED, EXIT_NOT_PAID, EXIT_OK, CliError
from app.cli.pay_http import (
    body_text,
    decode_b64_json,
    decode_quote,
    decode_receipt,
    fetch,
    get_quote,
    status_line,
)
from app.cli.pay_key import devnet_payer, parse_key, read_key_text, sign, svm_rpc_url
from app.cli.pay_offers import check_offer, choose_offer, family, known_asset, network_name, price_text
from payments.codec import PAYMENT_REQUIRED_HEADER, PaymentRequired, PaymentRequirements

__all__ = ["DEFAULT_CAP", "KEY_ENV", "PAY_EPILOG", "RPC_ENV", "cmd_pay", "cmd_quote", "parse_cap", "report_paid"]

PAID_TIMEOUT_S = 120.0  # the gateway settles on chain before it answers (a stream: between reads; heartbeats 15 s)
EVENT_STREAM = "text/event-stream"


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


# --- pay ----------------------------------------------------------------------------------------


def prepare(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[httpx.Response, str | None]:
    """The unpaid answer to args.url and a PAYMENT-SIGNATURE for it (None when the resource is free)."""
    devnet = getattr(args, "devnet", False)
    if devnet and args.key_file:
        raise CliError("--devnet uses the devnet's payer key: leave out --key-file")
    payer = None if devnet else parse_key(read_key_text(args.key_file, env))  # a bad key fails before any request
    response = get_quote(args.url)
    if response.status_code != 402:
        return response, None
    required, _ = decode_quote(response)
    if payer is None:  # --devnet: the offer decides the chain, devnet.json the key
        offer, payer = devnet_payer(required.accepts, args.network, env)
    else:
        offer = choose_offer(required.accepts, payer.family, args.network)
    check_offer(offer, args.max)
    rpc_url = svm_rpc_url(args.rpc_url, offer.network, env) if payer.family == "solana" else None
    print(
        f"worldgate: {'signing' if args.header_only else 'paying'} {price_text(offer)} ({offer.amount} atomic units)"
        f" on {network_name(offer.network)} ({offer.network}) to {offer.pay_to}, from {payer.address}",
        file=sys.stderr,
    )
    return response, sign(payer, offer, rpc_url)


def send_paid(url: str, header: str) -> int:
    """The paid request, reported. An event stream (a live feed) is printed as its events arrive, until the server
    ends it or the user interrupts; any other answer once read whole. Once the request is sent the payment may
    settle, so a lost answer is not 'nothing was paid'."""
    headers = {"PAYMENT-SIGNATURE": header, "Accept": f"{EVENT_STREAM}, application/json;q=0.9, */*;q=0.8"}
    try:
        with httpx.stream("GET", url, headers=headers, timeout=PAID_TIMEOUT_S, follow_redirects=False) as response:
            if not response.headers.get("content-type", "").startswith(EVENT_STREAM):
                response.read()
                return report_paid(response)
            code = report_paid(response, body=False)
            try:
                for line in response.iter_lines():
                    print(line, flush=True)
            except KeyboardInterrupt:
                pass
            except httpx.HTTPError as exc:  # after the receipt: the window was paid, only the stream broke off
                print(f"worldgate: the stream broke off: {str(exc) or type(exc).__name__}", file=sys.stderr)
                return EXIT_FAILED
            return code
    except httpx.HTTPError as exc:
        raise CliError(
            f"the paid request got no answer ({str(exc) or type(exc).__name__}); the payment may still settle:"
            " check your balance before paying again",
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


def report_paid(response: httpx.Response, *, body: bool = True) -> int:
    """Status, receipt and body (unless `body` is False: a stream printed as it comes) on stdout; a one-line
    verdict on stderr when it did not work."""
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
    if body:
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
        return send_paid(args.url, header)
    except CliError as exc:
        print(f"worldgate: {exc}", file=sys.stderr)
        return exc.code
