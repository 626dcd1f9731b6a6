"""The batch settler: accepted vouchers claimed on chain many channels to a transaction, then swept to payTo.

Runs in every gateway on two timers (claim, settle); a Postgres advisory lock lets one process per network
act at a time, so replicas never send the same claim twice. `flush` does both now (`worldgate batch
flush`). A claim or sweep is recorded under its transaction hash, once; a crash between the transaction
and its record leaves the vouchers owed, and the next claim moves nothing for them on chain (the contract
skips totals it already has) while the record catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import asyncpg

import ledger
from ledger import channels
from ledger.channels import OwedChannel
from payments import PaymentError
from payments.evm.batch import BatchSettlementChain, ClaimRow
from payments.evm.batch.wire import ChannelConfig

log = logging.getLogger("worldgate.batch.settler")


@dataclass(frozen=True, slots=True)
class FlushReport:
    claims: int  # claim transactions sent
    channels: int  # channel rows claimed
    claimed_atomic: int
    settled_atomic: int
    transactions: tuple[str, ...]


def claim_row(owed: OwedChannel) -> ClaimRow:
    config = owed.config
    return ClaimRow(
        config=ChannelConfig(
            payer=config.payer,
            payer_authorizer=config.payer_authorizer,
            receiver=config.receiver,
            receiver_authorizer=config.receiver_authorizer,
            token=config.token,
            withdraw_delay=config.withdraw_delay,
            salt=config.salt,
        ),
        max_claimable=owed.signed_max_atomic,
        signature=bytes.fromhex(owed.signature.removeprefix("0x")),
        total_claimed=owed.claimable_atomic,
    )


class BatchSettler:
    def __init__(
        self,
        pool: asyncpg.Pool,
        chain: BatchSettlementChain,
        *,
        pay_to: str,
        token: str,
        rows_per_claim: int,
        claim_interval_s: float,
        settle_interval_s: float,
    ) -> None:
        self.pool = pool
        self.chain = chain
        self.network = chain.network
        self.pay_to = pay_to.lower()
        self.token = token.lower()
        self.rows_per_claim = max(1, rows_per_claim)
        self.claim_interval_s = claim_interval_s
        self.settle_interval_s = settle_interval_s

    async def claim(self) -> tuple[int, int, str | None]:
        """One claim transaction for up to `rows_per_claim` owed channels: (channels, amount, tx hash)."""
        owed = [
            o
            for o in await channels.owed_channels(self.pool, self.network, self.rows_per_claim)
            if o.claimable_atomic > o.claimed_atomic
        ]
        if not owed:
            return 0, 0, None
        outcome = await self.chain.claim([claim_row(o) for o in owed])
        if not outcome.success:
            log.warning("claim not landed", extra={"reason": outcome.reason, "tx": outcome.transaction})
            return 0, 0, None
        await channels.record_claim(
            self.pool,
            self.network,
            [(o.config.channel_id, o.claimable_atomic) for o in owed],
            outcome.transaction,
            outcome.gas_cost_atomic or 0,
            outcome.gas_payer,
        )
        log.info("vouchers claimed", extra={"channels": len(owed), "tx": outcome.transaction})
        return len(owed), sum(o.claimable_atomic - o.claimed_atomic for o in owed), outcome.transaction

    async def settle(self) -> tuple[int, str | None]:
        """Sweep what is claimed to payTo in one transfer: (amount, tx hash); (0, None) when nothing is owed."""
        outcome = await self.chain.settle(self.pay_to, self.token)
        if not outcome.success:
            if outcome.sent:
                log.warning("sweep not landed", extra={"reason": outcome.reason, "tx": outcome.transaction})
            return 0, None
        await channels.record_settlement(
            self.pool,
            self.network,
            self.pay_to,
            self.token,
            outcome.transaction,
            outcome.amount,
            outcome.gas_cost_atomic or 0,
            outcome.gas_payer,
        )
        log.info("claims swept to payTo", extra={"amount": outcome.amount, "tx": outcome.transaction})
        return outcome.amount, outcome.transaction

    async def flush(self) -> FlushReport:
        """Claim everything owed, then sweep: what `worldgate batch flush` runs."""
        async with ledger.locks.advisory_lock(self.pool, f"batch-settler:{self.network}"):
            claims = rows = claimed = 0
            sent: list[str] = []
            while True:
                count, amount, tx = await self.claim()
                if tx is None:
                    break
                claims, rows, claimed = claims + 1, rows + count, claimed + amount
                sent.append(tx)
            settled, tx = await self.settle()
            if tx:
                sent.append(tx)
            return FlushReport(claims, rows, claimed, settled, tuple(sent))

    async def run(self) -> None:
        """The timers: a claim every claim interval, a sweep every settle interval, expired holds released."""
        loop = asyncio.get_running_loop()
        next_settle = loop.time() + self.settle_interval_s
        while True:
            await asyncio.sleep(self.claim_interval_s)
            with contextlib.suppress(ledger.LedgerError, PaymentError):
                await channels.expire_reservations(self.pool)
                async with ledger.locks.try_advisory_lock(self.pool, f"batch-settler:{self.network}") as held:
                    if not held:
                        continue
                    while (await self.claim())[2] is not None:
                        pass
                    if loop.time() >= next_settle:
                        next_settle = loop.time() + self.settle_interval_s
                        await self.settle()
