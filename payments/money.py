"""Prices as exact integers: parse "$0.001" or "1000" into atomic units, and format them back.

Never through float ("$2.01" must be 2_010_000 units, not 2_009_999), and a price finer than the
token can express is refused rather than rounded.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_DOLLARS = re.compile(r"^\$?(\d+)(?:\.(\d+))?$")
UINT256_MAX = 2**256 - 1


class PriceError(ValueError):
    """A configured price that cannot be charged exactly."""


def to_atomic(price: str | int, decimals: int) -> int:
    """Atomic units of a price given as an int (atomic), a digit string (atomic) or "$1.25" (dollars).

    A plain digit string is atomic units, as in the wire format; a dollar amount needs the `$` or a
    decimal point, so "1000" means 1000 units and "$1000" means a thousand dollars.
    """
    if isinstance(price, bool):
        raise PriceError(f"price {price!r} is not a number")
    if isinstance(price, int):
        atomic = price
    else:
        text = price.strip().replace("_", "")
        if text.isascii() and text.isdigit():
            atomic = int(text)
        else:
            match = _DOLLARS.match(text)
            if not match or not (text.startswith("$") or "." in text):
                raise PriceError(f"price {price!r} is neither atomic units nor a dollar amount like '$0.001'")
            whole, fraction = match.group(1), match.group(2) or ""
            if len(fraction.rstrip("0")) > decimals:
                raise PriceError(f"price {price!r} has more than {decimals} decimals; it cannot be charged exactly")
            try:
                atomic = int(Decimal(f"{whole}.{fraction or '0'}").scaleb(decimals))
            except InvalidOperation as exc:  # pragma: no cover - the regex admits only digits
                raise PriceError(f"price {price!r} is not a number") from exc
    if atomic <= 0:
        raise PriceError(f"price {price!r} must be more than zero")
    if atomic > UINT256_MAX:
        raise PriceError(f"price {price!r} does not fit in uint256")
    return atomic


def to_display(atomic: int, decimals: int) -> str:
    """Atomic units as a plain decimal string with no trailing zeros: 1500 @ 6 → "0.0015"."""
    text = str(Decimal(atomic).scaleb(-decimals).quantize(Decimal(1).scaleb(-decimals)))
    return text.rstrip("0").rstrip(".") if "." in text else text
