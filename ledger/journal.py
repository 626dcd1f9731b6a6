"""Double entry: the chart of accounts and the balanced postings of a settlement.

A posting is signed (debit > 0, credit < 0) and an entry sums to zero per asset. Python asserts
that before the insert; the migration's deferred constraint trigger checks it again at commit, and
its immutability triggers refuse any UPDATE or DELETE afterwards.

Accounts:
- `onchain:<network>:<address>`: money held at an address (the payTo receives, the relayer spends gas)
- `revenue:<stream>`: what a stream earned
- `expense:gas:<network>`: gas the relayer paid to settle
- `receivable:batch:<network>:<receiver>`: batch-settlement sales accepted but not yet swept to the receiver
Assets are `<network>/<token address>` or `<network>/native`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import LedgerIntegrityError


@dataclass(frozen=True, slots=True)
class Posting:
    account: str
    asset: str
    amount_atomic: int  # debit > 0, credit < 0


def asset_id(network: str, asset: str) -> str:
    return f"{network}/{asset.lower()}"


def assert_balanced(postings: Sequence[Posting]) -> None:
    if len(postings) < 2:
        raise LedgerIntegrityError("a journal entry needs at least two postings")
    totals: dict[str, int] = defaultdict(int)
    for posting in postings:
        if posting.amount_atomic == 0 or not isinstance(posting.amount_atomic, int):
            raise LedgerIntegrityError(f"posting to {posting.account} must be a non-zero integer")
        totals[posting.asset] += posting.amount_atomic
    unbalanced = {asset: total for asset, total in totals.items() if total != 0}
    if unbalanced:
        raise LedgerIntegrityError(f"journal entry does not balance: {unbalanced}")


def settlement_postings(
    *,
    network: str,
    asset: str,
    pay_to: str,
    revenue_account: str,
    amount_atomic: int,
    relayer: str | None = None,
    gas_cost_atomic: int | None = None,
) -> list[Posting]:
    """The payment lands at payTo and is the stream's revenue; the relayer's gas is an expense."""
    token = asset_id(network, asset)
    postings = [
        Posting(onchain_account(network, pay_to), token, amount_atomic),
        Posting(f"revenue:{revenue_account}", token, -amount_atomic),
    ]
    if relayer and gas_cost_atomic:
        postings += gas_postings(network=network, relayer=relayer, gas_cost_atomic=gas_cost_atomic)
    return postings


def onchain_account(network: str, address: str) -> str:
    """Money held at `address` on `network` (payTo's takings, the relayer's gas coin)."""
    return f"onchain:{network}:{address.lower()}"


def receivable_account(network: str, receiver: str) -> str:
    """What batch-settlement payers owe `receiver` on `network`: accepted vouchers not yet swept."""
    return f"receivable:batch:{network}:{receiver.lower()}"


def gas_postings(*, network: str, relayer: str, gas_cost_atomic: int) -> list[Posting]:
    """The relayer's gas for one transaction, an expense in the network's native coin."""
    native = f"{network}/native"
    return [
        Posting(f"expense:gas:{network}", native, gas_cost_atomic),
        Posting(onchain_account(network, relayer), native, -gas_cost_atomic),
    ]


def batch_acceptance_postings(
    *, network: str, asset: str, pay_to: str, revenue_account: str, amount_atomic: int
) -> list[Posting]:
    """A batch voucher accepted and its data served: revenue now, against a receivable the sweep clears."""
    token = asset_id(network, asset)
    return [
        Posting(receivable_account(network, pay_to), token, amount_atomic),
        Posting(f"revenue:{revenue_account}", token, -amount_atomic),
    ]


def batch_sweep_postings(
    *,
    network: str,
    asset: str,
    receiver: str,
    amount_atomic: int,
    relayer: str | None = None,
    gas_cost_atomic: int | None = None,
) -> list[Posting]:
    """`settle(receiver, token)` landed: the receivable becomes money at the receiver; the relayer paid gas.
    Either part may be zero (nothing swept, or no gas booked); an empty list means nothing to book."""
    token = asset_id(network, asset)
    postings: list[Posting] = []
    if amount_atomic:
        postings += [
            Posting(onchain_account(network, receiver), token, amount_atomic),
            Posting(receivable_account(network, receiver), token, -amount_atomic),
        ]
    if relayer and gas_cost_atomic:
        postings += gas_postings(network=network, relayer=relayer, gas_cost_atomic=gas_cost_atomic)
    return postings
