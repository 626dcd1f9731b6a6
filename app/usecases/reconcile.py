"""Reconciliation: make the ledger agree with the chains, or say where it does not.

For each payment not final (older than the grace period, so live requests finish first):
- `settling` with a transaction hash: ask its network's auditor. Confirmed → book it (settled +
  journal entry, gas included); reverted → failed; succeeded but moved something else → flagged;
  pending → left; unknown to the node → failed once it can no longer land (EVM: its authorization's
  validBefore has passed and the authorization is unused; Solana: its blockhash has long expired);
  if the authorization was used by some other transaction, that one is looked up and booked (flagged
  if it cannot be found).
- `settling` without a hash: with the local facilitator the hash is written before any broadcast, so
  nothing left: failed. A remote facilitator names its transaction only in its answer, so a lost answer
  leaves no hash: the chain is searched for the transaction that carried the payment (EVM: the
  `AuthorizationUsed` log; Solana: the payer's token account history) and it is booked; without one
  the row fails once the payment can no longer land. Used authorization, no transaction found: flagged.
- `claimed`/`verified`/`served`: abandoned before settlement began (the response was held back,
  so no data left either) → expired.
Then settled payments are checked against the chain, each once, resuming at the last run's cursor
(a sample of `settled_sample` per run; all of them again with `--all`): a settlement the chain does
not show is flagged. Released and expired EVM
payments whose authorization the chain shows used are flagged too (money moved that we never booked).
A settled sale made on an earlier instance of a local devnet (one restarted fresh, see ledger/epochs.py)
is not asked about: that chain is gone, so its absence is a reset, not a loss (counted as `chain_reset`).
Batch-settlement vouchers move no money themselves: their channels are compared with the contract, and the
settler's recorded claims and sweeps with their receipts (app/usecases/channel_reconcile.py).

A run holds a Postgres advisory lock, so with several workers and replicas one runs at a time; it
saves its progress as it goes, so an interrupted run resumes where it stopped. Everything it does is
idempotent: a second run over the same state changes nothing and raises no new findings.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import asyncpg

import ledger
from app.runtime.settings import BatchSettings, ReconcileSettings, Settings
from app.usecases.channel_reconcile import ChannelReconciler
from app.usecases.pricing import revenue_account
from ledger import PaymentState, audit, epochs, idempotency, locks
from payments import ChainAuditor, EvmAuditor, EvmRpc, SettlementFinding, SvmAuditor, SvmRpc
from payments.evm.batch.reads import BatchAuditor
from payments.jsonrpc import RpcUnavailable

log = logging.getLogger("worldgate.reconcile")
LOCK = "worldgate:reconcile"
BATCH = 200
SOLANA_LANDING_WINDOW_S = 180.0  # a blockhash lives ~60-90 s; after this a transaction cannot land
EVM_EXPIRY_MARGIN_S = 60.0  # blocks' timestamps lag the wall clock a little


@dataclass
class RunReport:
    run_id: int | None = None
    trigger: str = ""
    checked: int = 0
    resolved: int = 0
    flagged: int = 0
    left_pending: int = 0
    chain_reset: int = 0  # settled sales made on a devnet instance that no longer runs: not asked
    channels: int = 0  # batch-settlement channels compared with their contract
    batch_transactions: int = 0  # recorded claims and sweeps whose receipts were read
    skipped: str | None = None  # why nothing ran (another run holds the lock)
    errors: list[str] = field(default_factory=list)
    cursor: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Progress = Callable[[int, int], None]  # (done, total) for a progress bar


class Reconciler:
    def __init__(
        self,
        pool: asyncpg.Pool,
        auditors: Mapping[str, ChainAuditor],
        settings: ReconcileSettings,
        *,
        write_ahead: bool = True,
        claim_interval_s: float = BatchSettings().claim_interval_s,
    ) -> None:
        self.pool = pool
        self.auditors = dict(auditors)
        self.settings = settings
        batch = {network: a for network, a in self.auditors.items() if isinstance(a, BatchAuditor)}
        self.channels = ChannelReconciler(pool, batch, claim_interval_s=claim_interval_s)
        # True with the local facilitator, which records a settlement's hash before broadcasting it, so a
        # `settling` row without one sent nothing. A remote facilitator names its transaction only in its
        # answer: a lost answer leaves a row without a hash whose transaction may well have landed.
        self.write_ahead = write_ahead
        self._epochs = epochs.Epochs()

    async def run(self, trigger: str, *, all_settled: bool = False, progress: Progress | None = None) -> RunReport:
        async with locks.try_advisory_lock(self.pool, LOCK) as held:
            if not held:
                return RunReport(trigger=trigger, skipped="another reconcile run is in progress")
            return await self._run(trigger, all_settled, progress)

    async def _run(self, trigger: str, all_settled: bool, progress: Progress | None) -> RunReport:
        await idempotency.purge_expired(self.pool)  # housekeeping: replayable responses past their time
        run = await audit.start_run(self.pool, trigger)
        report = RunReport(run_id=run.id, trigger=trigger, cursor=0 if all_settled else run.cursor)
        error = None
        try:
            self._epochs = await epochs.load(self.pool)
            await self._open(report, progress)
            await self._settled(report, all_settled, progress)
            await self._unbooked(report)
            await self._channels(report, all_settled)
        except (RpcUnavailable, ledger.LedgerUnavailable) as exc:
            error = f"stopped: {exc}"  # the progress saved so far stands; the next run resumes
            report.errors.append(error)
        except Exception as exc:  # a node's odd answer or a bug: recorded on the run, never a 500
            log.exception("reconcile run failed")
            error = f"failed: {type(exc).__name__}"
            report.errors.append(error)
        finally:
            try:
                await audit.update_run(
                    self.pool, run.id, report.checked, report.resolved, report.flagged, report.cursor
                )
                await audit.finish_run(self.pool, run.id, error)
            except ledger.LedgerError as exc:  # the ledger went away mid-run: the run stays open, resumable
                report.errors.append(f"could not close the run: {exc}")
        log.info("reconcile run finished", extra={k: v for k, v in report.as_dict().items() if k != "errors"})
        return report

    # ---- payments not final ----

    async def _open(self, report: RunReport, progress: Progress | None) -> None:
        pending = await audit.open_payments(self.pool, self.settings.grace_s, 10_000)
        for done, payment in enumerate(pending, 1):
            report.checked += 1
            if payment.state == PaymentState.SETTLING:
                await self._settling(payment, report)
            elif await audit.expire(self.pool, payment.id, payment.state, "abandoned before settlement (reconcile)"):
                report.resolved += 1
            if progress:
                progress(done, len(pending))

    async def _settling(self, payment: audit.OpenPayment, report: RunReport) -> None:
        auditor = self.auditors.get(payment.network)
        if auditor is None:
            await self._flag(report, payment.id, "settlement_unknown", f"no RPC for {payment.network}")
            return
        if payment.tx_hash is None:  # no transaction on record: look for one on chain that carried the payment
            await self._not_found(payment, None, auditor, report)
        else:
            await self._judge(payment, payment.tx_hash, auditor, report)

    async def _judge(self, payment: audit.OpenPayment, tx_hash: str, auditor: ChainAuditor, report: RunReport) -> None:
        finding = await auditor.settlement(
            tx_hash,
            asset=payment.asset,
            pay_to=payment.pay_to,
            payer=payment.payer,
            amount_atomic=payment.amount_atomic,
        )
        if finding.status == "confirmed":
            await self._book(payment, finding, report)
        elif finding.status == "reverted":
            if await audit.resolve_failed(self.pool, payment.id, f"reverted on chain: {finding.detail}"[:500]):
                report.resolved += 1
        elif finding.status == "mismatch":
            await self._flag(report, payment.id, "settlement_mismatch", finding.detail, tx_hash)
        elif finding.status == "pending":
            report.left_pending += 1
        else:
            await self._not_found(payment, tx_hash, auditor, report)

    async def _not_found(
        self, payment: audit.OpenPayment, tx_hash: str | None, auditor: ChainAuditor, report: RunReport
    ) -> None:
        """The chain knows no transaction of this payment: the one on record was dropped or made up, or there
        is none on record (nothing was sent, or a remote facilitator's answer naming it was lost)."""
        used = await auditor.authorization_used(payment.payment_key)
        if used is not False:  # spent (EVM), or the chain has no such notion (Solana): what carried it?
            found = await auditor.find_settlement(payment.payment_key, payer=payment.payer, asset=payment.asset)
            if found is not None and found != tx_hash:
                await self._judge(payment, found, auditor, report)
                return
        unsent = tx_hash is None and self.write_ahead  # our own hash is written before any broadcast
        if used:
            detail = (
                "authorization used, no hash kept"
                if tx_hash is None
                else "our transaction is unknown, yet the authorization was used (by another transaction)"
            )
            await self._flag(report, payment.id, "chain_transfer_not_recorded", detail, tx_hash)
        elif unsent or self._expired(payment):
            reason = "never broadcast (reconcile)" if unsent else "never landed; it can no longer (reconcile)"
            if await audit.resolve_failed(self.pool, payment.id, reason):
                report.resolved += 1
        else:
            report.left_pending += 1

    @staticmethod
    def _expired(payment: audit.OpenPayment) -> bool:
        """Whether the payment can no longer land: its EVM authorization's validBefore has passed, or its
        Solana blockhash has surely expired."""
        now = time.time()
        if payment.network.startswith("solana:"):
            return now - payment.updated_at.timestamp() > SOLANA_LANDING_WINDOW_S
        return payment.valid_before is not None and payment.valid_before.timestamp() + EVM_EXPIRY_MARGIN_S < now

    async def _book(self, payment: audit.OpenPayment, finding: SettlementFinding, report: RunReport) -> None:
        postings = ledger.settlement_postings(
            network=payment.network,
            asset=payment.asset,
            pay_to=payment.pay_to,
            revenue_account=revenue_account(payment.stream, payment.resource),
            amount_atomic=payment.amount_atomic,
            relayer=finding.gas_payer,
            gas_cost_atomic=finding.gas_cost_atomic,
        )
        try:
            await audit.resolve_settled(
                self.pool, payment.id, finding.tx_hash, postings, gas_cost_atomic=finding.gas_cost_atomic
            )
            report.resolved += 1
        except ledger.LedgerIntegrityError:
            pass  # someone else moved it since we read it: their outcome stands

    # ---- settled payments: does the chain agree? ----

    async def _settled(self, report: RunReport, all_settled: bool, progress: Progress | None) -> None:
        budget = None if all_settled else self.settings.settled_sample
        seen = 0
        while budget is None or seen < budget:
            size = BATCH if budget is None else min(BATCH, budget - seen)
            batch = await audit.settled_after(self.pool, report.cursor, size)
            if not batch:
                break  # every settled payment has been audited once; new ones come next run
            for payment in batch:
                await self._audit_settled(payment, report)
                report.cursor = payment.id
            seen += len(batch)
            await audit.update_run(
                self.pool, report.run_id or 0, report.checked, report.resolved, report.flagged, report.cursor
            )
            if progress:
                progress(seen, seen if budget is None else budget)

    async def _audit_settled(self, payment: audit.SettledPayment, report: RunReport) -> None:
        report.checked += 1
        auditor = self.auditors.get(payment.network)
        if auditor is None:
            return  # nothing to ask; not a finding about the payment
        if self._epochs.from_earlier_instance(payment.network, payment.id):
            report.chain_reset += 1  # that devnet was restarted fresh: the chain we would ask never saw it
            return
        finding = await auditor.settlement(
            payment.tx_hash,
            asset=payment.asset,
            pay_to=payment.pay_to,
            payer=payment.payer,
            amount_atomic=payment.amount_atomic,
        )
        if finding.status == "confirmed":
            await audit.resolve_flags(self.pool, payment.id, ["settlement_not_on_chain", "settlement_mismatch"])
        elif finding.status == "not_found":
            await self._flag(report, payment.id, "settlement_not_on_chain", finding.detail, payment.tx_hash)
        elif finding.status in ("reverted", "mismatch"):
            await self._flag(report, payment.id, "settlement_mismatch", finding.detail, payment.tx_hash)

    # ---- nothing booked, yet money moved? ----

    async def _unbooked(self, report: RunReport) -> None:
        for payment in await audit.unbooked_candidates(self.pool, self.settings.grace_s, 500):
            auditor = self.auditors.get(payment.network)
            if auditor is not None and await auditor.authorization_used(payment.payment_key):
                detail = f"the chain shows this {payment.state} payment's authorization used; nothing is booked"
                await self._flag(report, payment.id, "chain_transfer_not_recorded", detail)

    # ---- batch-settlement channels and the settler's transactions ----

    async def _channels(self, report: RunReport, all_settled: bool) -> None:
        tally = await self.channels.run(self._epochs, every_tx=all_settled)
        report.channels += tally.channels
        report.batch_transactions += tally.transactions
        report.flagged += tally.flagged
        report.left_pending += tally.left_pending
        report.chain_reset += tally.chain_reset
        report.errors += tally.errors

    async def _flag(self, report: RunReport, payment_id: int, kind: str, detail: str, tx: str | None = None) -> None:
        if await audit.flag(self.pool, payment_id, kind, detail, tx):
            report.flagged += 1
            log.warning("reconcile finding", extra={"payment_id": payment_id, "kind": kind, "detail": detail})


def chains_of(settings: Settings) -> list[tuple[str, str]]:
    """(network, RPC URL) of every configured chain the auditors can ask."""
    chains = []
    for chain in (settings.evm, settings.svm):
        if chain is not None and chain.rpc_url:
            chains.append((chain.network, chain.rpc_url))
    return chains


def auditors_for(chains: list[tuple[str, str]], timeout_s: float = 10.0) -> tuple[dict[str, ChainAuditor], list[Any]]:
    """An auditor per chain, and the RPC clients to close when done."""
    auditors: dict[str, ChainAuditor] = {}
    rpcs: list[Any] = []
    for network, url in chains:
        if network.startswith("solana:"):
            svm_rpc = SvmRpc(url, timeout_s=timeout_s)
            rpcs.append(svm_rpc)
            auditors[network] = SvmAuditor(svm_rpc, network)
        else:
            evm_rpc = EvmRpc(url, timeout_s=timeout_s)
            rpcs.append(evm_rpc)
            # an EvmAuditor that also reads the batch-settlement contract (channels, claims, sweeps)
            auditors[network] = (
                BatchAuditor(evm_rpc, network) if network.startswith("eip155:") else EvmAuditor(evm_rpc, network)
            )
    return auditors, rpcs


async def every(reconciler: Reconciler, interval_s: float, rng: random.Random | None = None) -> None:
    """Run on a schedule inside the server: the first run one (jittered) interval after start, so a
    restart storm does not reconcile at once; the lock makes one worker do it at a time."""
    chooser = rng or random.Random()  # noqa: S311 - jitter, not security
    while True:
        await asyncio.sleep(interval_s * chooser.uniform(0.8, 1.2))
        try:
            await reconciler.run("schedule")
        except Exception:  # logged; the schedule goes on
            log.exception("scheduled reconcile failed")
