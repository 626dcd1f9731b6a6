"""What `worldgate pay`'s argument parser needs, apart from pay.py so that building the parser (and so
`worldgate --help`, `--version`) imports nothing heavy: the spend cap's type, the key's sources, the epilog."""

from __future__ import annotations

import argparse
from decimal import Decimal, InvalidOperation

DEFAULT_CAP = Decimal("0.10")
KEY_ENV = "WORLDGATE_PAYER_KEY"
RPC_ENV = "WORLDGATE_SVM_RPC_URL"

PAY_EPILOG = f"""\
the payer key:
  read from --key-file PATH or the {KEY_ENV} environment variable, never from a
  command-line argument (an argument lands in your shell history and in `ps`); it is
  never printed or logged. With --devnet, the local devnet's payer key for the
  offer's chain, from devnet.json in WORLDGATE_STATE_DIR (default .worldgate).
    EVM (Base)  0x and 64 hex digits
    Solana      a base58 64-byte secret, or a solana-keygen JSON array (a keypair file)

exit codes:
  0  paid and served (or the resource is free)
  1  the gateway refused the payment, settlement failed, or the paid request failed
  2  nothing was paid: unreachable URL, no 402 quote, no offer for the key, bad key, no RPC
  3  the price is above --max: nothing was paid

with curl:
  worldgate quote URL
  curl -i -H "PAYMENT-SIGNATURE: $(worldgate pay --header-only --devnet URL)" URL
"""


def parse_cap(text: str) -> Decimal:
    """--max: a dollar amount, exact ('0.01', '$0.25'); argparse reports the error."""
    try:
        cap = Decimal(text.strip().removeprefix("$"))
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount in dollars, like 0.01") from None
    if not cap.is_finite() or cap < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount in dollars, like 0.01")
    return cap
