"""Writing one journal entry with its postings, inside the caller's transaction.

Every writer of the journal (settlements, voucher claims and sweeps, refunds) goes through here; the database
checks again at commit that each entry balances (migration 0001) and keeps account_balances (0002, 0009).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from .journal import Posting, assert_balanced
from .sql import queries


async def insert_entry(
    connection: asyncpg.Connection,
    kind: str,
    postings: Sequence[Posting],
    *,
    payment_id: int | None = None,
    reverses: int | None = None,
    memo: str | None = None,
) -> int:
    """Insert a balanced entry of `kind` ('settlement', 'reversal', 'adjustment') and its postings; its id."""
    assert_balanced(postings)
    entry_id: int = await connection.fetchval(queries["insert_journal_entry"], payment_id, kind, reverses, memo)
    await connection.execute(
        queries["insert_journal_postings"],
        entry_id,
        [p.account for p in postings],
        [p.asset for p in postings],
        [p.amount_atomic for p in postings],
    )
    return entry_id
