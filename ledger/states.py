"""A payment's states: one name each for the ledger, the app and the operator's tools.

The migration's CHECK constraint and `payment_transitions` table spell the same values in SQL.
"""

from __future__ import annotations

from enum import StrEnum


class PaymentState(StrEnum):
    CLAIMED = "claimed"  # its key is held by one request; nothing verified yet
    VERIFIED = "verified"  # the facilitator accepted the payment
    SERVED = "served"  # the handler produced data, not yet handed over
    SETTLING = "settling"  # settlement started: a transaction may be out (reconciliation decides)
    SETTLED = "settled"  # charged and booked
    FAILED = "failed"  # settlement failed: nothing charged
    EXPIRED = "expired"  # abandoned before settlement and closed by reconciliation
    RELEASED = "released"  # given up before settlement: nothing charged, the key may be claimed again
