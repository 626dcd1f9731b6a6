"""A payment's states: one name each for the ledger, the app and the operator's tools.

The migrations' CHECK constraint and `payment_transitions` table spell the same values in SQL (0001, and
0007 for the batch-settlement states).
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
    # batch-settlement only (served -> accepted -> claimed_onchain -> settled; ledger/channels.py):
    ACCEPTED = "accepted"  # its voucher was accepted and the data served: owed to us, booked against a receivable
    CLAIMED_ONCHAIN = "claimed_onchain"  # its channel's claim transaction landed; the sweep is still to come
    REFUNDED = "refunded"  # accepted, then refunded by the operator before its claim: never collected (0010)
