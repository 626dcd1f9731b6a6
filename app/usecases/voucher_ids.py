"""payment-identifier for batch-settlement vouchers: one delivery per id, replayed to its retries.

A voucher is its own idempotency key already: sent again, it is served again only if its first answer never
left this gateway, else refused with the corrective 402. An answer lost on the way to the client is the gap: the
client's retry sends the same voucher (its channel state moves only with an answer), is refused, re-bases and
pays the next price for the same request. Under an id, the retry gets the answer stored for the id, replayed, and
nothing more is booked; so does a voucher the same payer signed anew for the same request (the fingerprint:
method, route, query, price) under that id. The replayed PAYMENT-RESPONSE carries the channel's state as it was
booked, the state the clients re-base on.

The id is taken before the voucher is booked and freed if nothing was delivered (a refusal: the payer may fix
it and retry under the same id). While the first attempt runs, a retry waits for its answer; if none comes
within REDELIVER_AFTER_S, the same voucher sent again follows the voucher's own rules, and a re-signed one is
told to retry later (503 `payment_in_progress`), never booked beside the first. A first attempt whose process
died stores nothing: its id stays bound until it expires, and only its own voucher, sent again, is answered (the
voucher's rules serve a booked sale whose answer never left).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import anyio

import ledger
from app.usecases.outcomes import NOT_RECORDED, Delivered, IdConflict, Outcome, Replayed, Unavailable, Unsettled
from app.usecases.retries import REDELIVER_AFTER_S, REPLAY_WAIT_POLL_S, Idempotency
from app.usecases.services import Services
from ledger import idempotency

log = logging.getLogger("worldgate.checkout")
IN_PROGRESS = "the first attempt with this payment id has not answered yet; retry after Retry-After"


class VoucherIds:
    def __init__(self, services: Services) -> None:
        self.services = services

    async def sell_once(
        self, key: Idempotency, voucher: str, payer: str | None, sell: Callable[[], Awaitable[Outcome]]
    ) -> Outcome:
        """Run `sell` (the voucher's sale) as the id's first attempt, or answer with the id's stored answer.
        `voucher` is the voucher's payment key; `payer` the one its signature recovered to (None: an EIP-1271
        payer, checked on chain later: its re-signed vouchers are not replayed)."""
        pool = self.services.pool
        started = time.monotonic()
        while True:
            try:
                held = await idempotency.begin(
                    pool,
                    key.id,
                    voucher,
                    key.transport,
                    self.services.idempotency_ttl_s,
                    key.fingerprint,
                    payer,
                    resigned_replays=True,
                )
                stored = None if held.first or held.conflict else await idempotency.lookup(pool, key.id)
            except ledger.LedgerUnavailable:
                return Unavailable("ledger_unavailable", NOT_RECORDED)
            if held.conflict:
                return IdConflict(held.conflict)
            if held.first:
                outcome = await sell()
                await self._record(key, outcome)
                return outcome
            if stored is not None and stored.response is not None:
                log.info("payment id replayed", extra={"payment_identifier": key.id})
                return Replayed(stored.response)
            waited = time.monotonic() - started
            if stored is not None and waited >= REDELIVER_AFTER_S:  # the first attempt has not answered
                # the same voucher: its own rules serve it again only if its first answer never left
                return await sell() if held.payment_key == voucher else Unavailable("payment_in_progress", IN_PROGRESS)
            if waited >= self.services.settle_wait_s:
                return Unavailable("payment_in_progress", IN_PROGRESS)
            await asyncio.sleep(REPLAY_WAIT_POLL_S)  # then its answer is there, or the id was freed: take it

    async def _record(self, key: Idempotency, outcome: Outcome) -> None:
        """The delivery, stored for the id's retries; a deposit whose transaction's outcome is unknown keeps the
        id (only the chain can say); anything else frees it (nothing was charged)."""
        with anyio.CancelScope(shield=True):  # the record must land even if the client went away
            try:
                if isinstance(outcome, Delivered):
                    await idempotency.complete(self.services.pool, key.id, key.encode(outcome))
                elif isinstance(outcome, Unsettled) and outcome.settlement.pending:
                    await idempotency.park(self.services.pool, key.id)
                else:
                    await idempotency.abandon(self.services.pool, key.id)
            except ledger.LedgerError as exc:
                log.error("could not record the payment id's outcome", extra={"detail": str(exc)})
