"""What became of an open claim whose payment came back: asked of the chain and the ledger, for that one payment.

A claim left `claimed`, `verified`, `served` or `settling` by a request that died (SIGKILL, OOM, a lost host)
is resolved by the retry of its payment, there and then, instead of after reconciliation's grace period:

- a request still holding the claim (app/usecases/holders.py) finishes it: `PENDING` (it books and delivers
  the payment itself, so that one payment is delivered once).
- a transaction of ours on record (`settling` with a hash): its receipt (EVM) or signature status (Solana)
  decides. Landed as paid: booked (`SETTLED`); not final yet: `PENDING`.
- else, for `settling`: was the authorization used by some other transaction (EVM `authorizationState`;
  Solana through a remote facilitator: the payer's history)? That transaction is judged and booked.
- nothing landed: if our transaction reverted, or the payment can no longer land, the claim is closed
  (`failed`, `expired`) and the payer was not charged (`NOT_CHARGED`); else the retry may run the payment
  itself (`TAKE_OVER`), unless a remote facilitator may still land it (no hash is written ahead there):
  `PENDING` until it can no longer.

Every write is a compare-and-set on the claim's state, so a holder that was alive after all, or reconciliation,
never books or closes the same payment twice.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import ledger
from app.usecases import reconcile
from app.usecases.pricing import revenue_account
from ledger import PaymentState, audit, claims
from payments import (
    ChainAuditor,
    EvmAuditor,
    ExactEvmScheme,
    ExactSvmScheme,
    LocalFacilitator,
    Reason,
    SettlementFinding,
    SvmAuditor,
)
from payments.audit import CONFIRMED, NOT_FOUND, REVERTED

IN_PROGRESS = (PaymentState.CLAIMED, PaymentState.VERIFIED, PaymentState.SERVED, PaymentState.SETTLING)


class Verdict(StrEnum):
    SETTLED = "settled"  # the chain shows the transfer; it is booked (now, or by someone else): deliver it
    PENDING = "pending"  # a request still holds it, or its transaction is not final: retry the same payment later
    NOT_CHARGED = "not_charged"  # it failed or can no longer land: closed, nothing charged
    TAKE_OVER = "take_over"  # nothing of it landed, nobody holds it, it can still land: this retry may run it


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: Verdict
    holder: claims.Holder  # as it stands after the judgement (re-read after any write)
    reason: str = ""  # NOT_CHARGED: the reason code the payer is told
    detail: str = ""  # what the chain or the ledger said, in words


def readers(facilitator: Any) -> dict[str, ChainAuditor]:
    """A chain reader per network the local facilitator settles on, over the very node it settles through. A
    remote facilitator's chains are not ours to read from here: none (its claims stay pending until
    reconciliation, which has its own readers)."""
    if not isinstance(facilitator, LocalFacilitator):
        return {}
    found: dict[str, ChainAuditor] = {}
    for scheme in facilitator.schemes:
        if isinstance(scheme, ExactEvmScheme):
            found[scheme.network] = EvmAuditor(scheme.rpc, scheme.network)
        elif isinstance(scheme, ExactSvmScheme):
            found[scheme.network] = SvmAuditor(scheme.rpc, scheme.network)
    return found


def writes_ahead(facilitator: Any) -> bool:
    """The local facilitator records a settlement's hash before broadcasting it: `settling` without a hash
    sent nothing. A remote one names its transaction only in its answer."""
    return isinstance(facilitator, LocalFacilitator)


def expired(holder: claims.Holder, now: float | None = None) -> bool:
    """The payment can no longer land: its EVM authorization's validBefore has passed, or (Solana, no
    validBefore) its blockhash has surely expired since the claim last moved."""
    now = time.time() if now is None else now  # reconciliation's margins, read when asked (tests tune them)
    if holder.valid_before is not None:
        return holder.valid_before.timestamp() + reconcile.EVM_EXPIRY_MARGIN_S < now
    if holder.network.startswith("solana:") and holder.updated_at is not None:
        return now - holder.updated_at.timestamp() > reconcile.SOLANA_LANDING_WINDOW_S
    return False


async def judge(
    pool: Any, holder: claims.Holder, reader: ChainAuditor | None, *, gone: bool, write_ahead: bool
) -> Judgement:
    """What became of an open claim (see the module docstring). `gone`: no request still works on it
    (app/usecases/holders.py). Raises PaymentError when the chain cannot be read, LedgerError for the ledger."""
    if not gone:  # its request books and delivers it, or closes it: one outcome, one delivery per payment
        return Judgement(Verdict.PENDING, holder, detail="its request is still at work")
    settling = holder.state == PaymentState.SETTLING
    reverted = False
    if settling and holder.tx_hash:
        if reader is None:
            return Judgement(Verdict.PENDING, holder, detail=f"no chain reader for {holder.network}")
        finding = await _settlement(reader, holder, holder.tx_hash)
        if finding.status == CONFIRMED:
            return await _book(pool, holder, finding)
        if finding.status == REVERTED:
            reverted = True
        elif finding.status != NOT_FOUND:  # pending, or moved something else (the operator's, via reconcile)
            return Judgement(Verdict.PENDING, holder, detail=finding.detail)
    if settling:
        if reader is None:
            return Judgement(Verdict.PENDING, holder, detail=f"no chain reader for {holder.network}")
        used = await reader.authorization_used(holder.payment_key)
        if used or (used is None and not write_ahead):  # spent, or (Solana) unknowable: what carried it?
            found = await reader.find_settlement(holder.payment_key, payer=holder.payer, asset=holder.asset)
            if found is not None and found != holder.tx_hash:
                finding = await _settlement(reader, holder, found)
                if finding.status == CONFIRMED:
                    return await _book(pool, holder, finding)
                return Judgement(Verdict.PENDING, holder, detail=finding.detail)
            if used:  # spent by a transaction the chain will not show us: reconciliation flags it
                return Judgement(Verdict.PENDING, holder, detail="the authorization was used by an unknown transaction")
    if reverted:
        return await _close(pool, holder, Reason.TRANSACTION_FAILED, "reverted on chain (retried payment)")
    if expired(holder):
        reason = Reason.EVM_VALID_BEFORE if holder.valid_before is not None else Reason.SVM_BLOCKHASH_EXPIRED
        return await _close(pool, holder, reason, "never landed; it can no longer (retried payment)")
    if settling and not write_ahead:
        return Judgement(Verdict.PENDING, holder, detail="a remote facilitator may still land it")
    return Judgement(Verdict.TAKE_OVER, holder, detail="nothing of it landed; its request is gone")


async def rejudge(pool: Any, holder: claims.Holder, reader: ChainAuditor | None, *, write_ahead: bool) -> Judgement:
    """After this retry's own settlement of a taken-over claim failed: judged again as it now stands (a
    Solana resend refused because the first copy had just landed is a payment; a revert closes it failed).
    Never TAKE_OVER again here: what can still land is left PENDING for a later retry."""
    fresh = await _reread(pool, holder)
    if fresh.state != PaymentState.SETTLING:
        verdict = Verdict.SETTLED if fresh.state == PaymentState.SETTLED else Verdict.PENDING
        return Judgement(verdict, fresh, detail=f"the claim is {fresh.state}")
    judged = await judge(pool, fresh, reader, gone=True, write_ahead=write_ahead)
    if judged.verdict is Verdict.TAKE_OVER:
        return Judgement(Verdict.PENDING, judged.holder, detail="nothing landed yet; it still may")
    return judged


async def _settlement(reader: ChainAuditor, holder: claims.Holder, tx_hash: str) -> SettlementFinding:
    return await reader.settlement(
        tx_hash, asset=holder.asset, pay_to=holder.pay_to, payer=holder.payer, amount_atomic=holder.amount_atomic
    )


async def _reread(pool: Any, holder: claims.Holder) -> claims.Holder:
    return await claims.holder(pool, holder.payment_key) or holder


async def _book(pool: Any, holder: claims.Holder, finding: SettlementFinding) -> Judgement:
    """Book a transfer the chain shows, as the sale's own request would have (the same postings)."""
    postings = ledger.settlement_postings(
        network=holder.network,
        asset=holder.asset,
        pay_to=holder.pay_to,
        revenue_account=revenue_account(holder.stream, holder.resource),
        amount_atomic=holder.amount_atomic,
        relayer=finding.gas_payer,
        gas_cost_atomic=finding.gas_cost_atomic,
    )
    # No longer settling: its request (or reconciliation) booked it first; the re-read says.
    with contextlib.suppress(ledger.LedgerIntegrityError):
        await audit.resolve_settled(
            pool,
            holder.payment_id,
            finding.tx_hash,
            postings,
            gas_cost_atomic=finding.gas_cost_atomic,
            memo=claims.RESOLVED_MEMO,
        )
    fresh = await _reread(pool, holder)
    if fresh.state == PaymentState.SETTLED:
        return Judgement(Verdict.SETTLED, fresh, detail=finding.detail)
    return Judgement(Verdict.PENDING, fresh, detail=f"not booked: the claim is {fresh.state}")


async def _close(pool: Any, holder: claims.Holder, reason: str, why: str) -> Judgement:
    """Close a claim nothing was charged for: settling -> failed, before that -> expired."""
    if holder.state == PaymentState.SETTLING:
        await claims.advance(pool, holder.payment_id, PaymentState.SETTLING, PaymentState.FAILED, reason=why)
    else:
        await audit.expire(pool, holder.payment_id, holder.state, why)
    fresh = await _reread(pool, holder)
    if fresh.state in (PaymentState.FAILED, PaymentState.EXPIRED):
        return Judgement(Verdict.NOT_CHARGED, fresh, reason=reason, detail=why)
    if fresh.state == PaymentState.SETTLED:  # its request booked it meanwhile
        return Judgement(Verdict.SETTLED, fresh, detail="settled by its own request")
    return Judgement(Verdict.PENDING, fresh, detail=f"not closed: the claim is {fresh.state}")
