"""The ledger: Postgres pool, migrations, payment claims and their state machine, journal, reports,
verification of the stored books, the ledger side of reconciliation (audit), and batch-settlement channels.

Imports nothing of worldgate's; values cross in as `PaymentRecord` and `Posting`, defined here.
"""

from . import (
    audit,
    channels,
    claims,
    idempotency,
    journal,
    locks,
    operator,
    refund_transfers,
    refunds,
    reports,
    verify,
    voucher_bookings,
)
from .claims import PaymentRecord
from .errors import LedgerError, LedgerIntegrityError, LedgerUnavailable
from .journal import Posting, batch_acceptance_postings, settlement_postings
from .migrate import migrate
from .pool import create_pool
from .states import PaymentState

__all__ = [
    "LedgerError",
    "LedgerIntegrityError",
    "LedgerUnavailable",
    "PaymentRecord",
    "PaymentState",
    "Posting",
    "audit",
    "batch_acceptance_postings",
    "channels",
    "claims",
    "create_pool",
    "idempotency",
    "journal",
    "locks",
    "migrate",
    "operator",
    "refund_transfers",
    "refunds",
    "reports",
    "settlement_postings",
    "verify",
    "voucher_bookings",
]
