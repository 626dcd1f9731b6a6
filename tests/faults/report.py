"""The reliability table: every fault scenario records what it did and what the gateway did, as counts.

Scenarios call `record(...)` once per fault with counts they measured (from HTTP answers, the ledger and
the chains, never assumed). `tests/faults/conftest.py` writes them to docs/reliability.md at the end of a
session that ran the whole fault suite, so the document's claims are this run's figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FaultRow:
    section: str  # the group in the document, e.g. "Chain RPC", "Process crashes", "Hostile input"
    fault: str  # what was injected
    action: str  # what the test did
    outcome: str  # what the gateway did, in words (the status codes, what it logged or left for reconcile)
    requests: int  # requests (or tool calls) sent
    served: int  # answers that carried data
    settled: int  # payments settled on chain (counted on the chain or from the ledger after recovery)
    charged: int  # payers' debits observed on chain
    served_unsettled: int = 0  # data answers whose payment did not settle (sync mode): must be 0
    double_charged: int = 0  # payments debited more than once: must be 0
    lost: int = 0  # on-chain settlements missing from the ledger after recovery: must be 0
    status_500: int = 0  # answers with status 500 or more that were not an intended 502/503/504: must be 0
    charged_undelivered: int = 0  # payers charged whose data never arrived and who cannot fetch it again
    told_to_pay_again: int = 0  # retries answered 402 although charged, or without saying "not charged"
    notes: tuple[str, ...] = field(default_factory=tuple)


ROWS: list[FaultRow] = []


def record(row: FaultRow) -> FaultRow:
    ROWS.append(row)
    return row
