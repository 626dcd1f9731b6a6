"""Crash points for the fault suite: `WORLDGATE_FAULT_KILL_AT=<step>` makes this process SIGKILL itself there.

The checkouts and the batch settler call `reach(step)` at each step between a payment's claim and its response
(or a claim's transaction and its record). With the variable unset (every real deployment) that is one
comparison with None. Set, the process dies at that step the way a power cut or the OOM killer would kill it:
no `finally`, no shutdown, no flush, so tests/faults/test_sigkill.py (and test_batch_faults.py) can restart
the gateway and check what recovery makes of the wreck.
"""

from __future__ import annotations

import os
import signal
import sys

# In the order a paid request passes them (the journal is written in one transaction with the settled row).
STEPS = ("after_claim", "after_verify", "after_serve", "after_broadcast", "after_journal")
# batch-settlement's, apart so the exact scheme's list above stays what tests/faults/test_sigkill.py draws from:
# a voucher's request (served but not booked, booked with its answer unsent), then the settler's claim and sweep,
# each landed on chain and not yet recorded (app/usecases/batch_checkout.py, batch_settler.py).
BATCH_STEPS = (
    "batch_after_serve",
    "batch_after_accept",
    "batch_after_claim",
    "batch_after_sweep",
)
VARIABLE = "WORLDGATE_FAULT_KILL_AT"

_ARMED: str | None = None


def arm(step: str | None) -> None:
    """Arm one step (or disarm with None). Read from the environment at import; the fault suite's
    fork server calls it again in each gateway it forks from an already-imported parent."""
    global _ARMED
    if step and step not in STEPS + BATCH_STEPS:
        raise SystemExit(f"{VARIABLE}={step!r} is not one of {', '.join(STEPS + BATCH_STEPS)}")
    _ARMED = step or None
    if _ARMED is not None:  # loud on purpose: this must never be set outside the fault suite
        print(f"*** {VARIABLE}={_ARMED}: this process kills itself at that step (fault injection) ***", file=sys.stderr)


def reach(step: str) -> None:
    """Die here with SIGKILL if the fault suite armed this step; otherwise nothing."""
    if step == _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)


arm(os.environ.get(VARIABLE))
