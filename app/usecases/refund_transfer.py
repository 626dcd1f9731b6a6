"""The operator's transfer of a refund owed (`worldgate ledger refund-sent REFUND_ID --tx HASH`).

A refund of a sale whose money we hold is owed to the payer; the operator sends it from payTo (the gateway holds
no payTo key). Before the ledger books that transfer against the payable, the chain is asked, with the auditor
reconcile uses: the transaction must have landed and moved exactly the refund's amount of the sale's asset from
its payTo to its payer. Anything else (unknown, pending, reverted, another amount or party) books nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg

import ledger
from ledger.refund_transfers import RefundTransfer
from ledger.refunds import RefundRefused
from payments import ChainAuditor
from payments.audit import CONFIRMED, PENDING
from payments.jsonrpc import RpcUnavailable

CHAIN_UNAVAILABLE = "chain_unavailable"


async def record_refund_transfer(
    pool: asyncpg.Pool, auditors: Mapping[str, ChainAuditor], refund_id: int, tx_hash: str, *, actor: str
) -> RefundTransfer | RefundRefused:
    """Book `tx_hash` as the transfer that paid refund `refund_id`, once the chain shows it did. A chain that does
    not answer is `chain_unavailable` (CHAIN_UNAVAILABLE): nothing is booked, the caller may try again."""
    refund = await ledger.refund_transfers.owed(pool, refund_id)
    refused = ledger.refund_transfers.refusal(refund, refund_id)
    if refused is not None:
        return refused
    assert refund is not None
    auditor = auditors.get(refund.network)
    if auditor is None:
        return RefundRefused("network_not_configured", f"no RPC for {refund.network} is configured to read it")
    tx = ledger.refund_transfers.transaction_id(refund.network, tx_hash)
    # the auditor's question, sender and recipient swapped: did `tx` move the amount from payTo to the payer?
    try:
        finding = await auditor.settlement(
            tx, asset=refund.token, pay_to=refund.payer, payer=refund.pay_to, amount_atomic=refund.amount_atomic
        )
    except RpcUnavailable as exc:
        return RefundRefused(CHAIN_UNAVAILABLE, f"the chain did not answer ({exc}); nothing was booked, try again")
    if finding.status == PENDING:
        return RefundRefused("transfer_pending", f"{tx}: {finding.detail}; record it again once it has landed")
    if finding.status != CONFIRMED:
        return RefundRefused(
            f"transfer_{finding.status}",  # transfer_not_found, transfer_reverted, transfer_mismatch
            f"{tx} is {finding.status}: {finding.detail}; refund {refund_id} owes {refund.amount_atomic} "
            f"from {refund.pay_to} to {refund.payer}",
        )
    return await ledger.refund_transfers.record(pool, refund, tx, actor=actor)
