"""How `worldgate serve` runs uvicorn, and its drain on SIGTERM (a rolling update, a scale-down, Ctrl-C).

On SIGTERM uvicorn stops accepting connections at once, closes idle keep-alive ones, and lets the requests in
flight finish for WORLDGATE_SHUTDOWN_GRACE_S. Past that it cancels what is left, natively, which would cut
through the checkout's shielded settlement. So `Draining` runs each request that carries a payment in a task
of its own under an anyio cancel scope, and turns uvicorn's cancel into that scope's: a payment not yet
settling stops where it is (its claim released or left for its retry: nothing charged) and is answered 503
`shutting_down`; one already settling finishes inside its shield, served and booked, however long its chain
takes (bounded by the settlement timeouts). The lifespan's shutdown (the delivery marks, the time machine's
hot layer, the pool) waits for those, then runs; the process exits 0.

Only paid requests pay for the extra task: a quote or a free read is cancelled natively, as nothing rides on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import TYPE_CHECKING

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from app.runtime.settings import Settings

log = logging.getLogger("worldgate.serve")

_PAYMENT_HEADERS = frozenset({b"payment-signature", b"x-payment"})
_SHUTTING_DOWN = (
    b'{"error":"shutting_down","message":"this gateway is shutting down and did not finish the request; send the'
    b" same payment again: a payment that was not settled is not charged, one that was is served without a second"
    b' charge"}'
)


def settle_bound_s(settings: Settings) -> float:
    """How long a settlement already under way can take at most: the longest of its timeouts, and a margin."""
    bounds = [settings.facilitator_settle_timeout_s]
    if settings.evm is not None:
        bounds.append(settings.evm.receipt_timeout_s + 3 * settings.evm.rpc_timeout_s)
    if settings.svm is not None:
        bounds.append(settings.svm.confirm_timeout_s + 2 * settings.svm.rpc_timeout_s)
    return max(bounds) + 10.0


def _carries_payment(scope: Scope) -> bool:
    return any(name in _PAYMENT_HEADERS for name, _ in scope["headers"])


class Draining:
    """Pure ASGI around the whole app, in each `serve` worker (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, settle_bound_s: float) -> None:
        self.app = app
        self.settle_bound_s = settle_bound_s
        self.paid: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _carries_payment(scope):
            await self._paid(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.app(scope, self._lifespan(receive), send)
        else:
            await self.app(scope, receive, send)

    async def _paid(self, scope: Scope, receive: Receive, send: Send) -> None:
        cancel = anyio.CancelScope()
        answered = False

        async def answering(message: Message) -> None:
            nonlocal answered
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        async def run() -> None:
            with cancel:
                await self.app(scope, receive, answering)

        task = asyncio.get_running_loop().create_task(run(), name="paid-request")
        self.paid.add(task)
        task.add_done_callback(self.paid.discard)
        try:
            await asyncio.shield(task)
            return
        except asyncio.CancelledError:
            this = asyncio.current_task()
            if task.done() or this is None or not this.cancelling():
                raise
            this.uncancel()  # the grace period is over: uvicorn cancels what is left; we take it from here
        log.warning("shutdown grace period over: a paid request in flight is cancelled unless it is settling")
        cancel.cancel()  # honoured outside the checkout's shields only: a settlement under way completes
        done, _ = await asyncio.wait({task}, timeout=self.settle_bound_s)
        if not done:
            log.error("a paid request outlived the settlement timeouts at shutdown; cancelled")
            task.cancel()
        if not answered:
            headers = [
                (b"content-type", b"application/json"),
                (b"cache-control", b"no-store"),
                (b"retry-after", b"1"),
                (b"connection", b"close"),
                (b"content-length", str(len(_SHUTTING_DOWN)).encode()),
            ]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": _SHUTTING_DOWN})

    def _lifespan(self, receive: Receive) -> Receive:
        async def receiving() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown" and self.paid:
                # paid requests cut by the grace period may still be settling: they finish before the pool closes
                await asyncio.wait(set(self.paid), timeout=self.settle_bound_s)
            return message

        return receiving


def worker_app() -> ASGIApp:
    """uvicorn's factory in each `serve` worker: the app `app_from_env` builds, drained on shutdown."""
    from app.wiring import app_from_env

    app = app_from_env()
    return Draining(app, settle_bound_s=settle_bound_s(app.state.settings))


def run(settings: Settings) -> None:
    """uvicorn with `settings.workers` workers over `worker_app`, until SIGTERM or SIGINT has drained it."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from app.edge.abuse import CappedHttpToolsProtocol

    class Supervisor(Multiprocess):
        def terminate_all(self) -> None:
            # The parent's copy of the listening socket: closed first, so once each worker has closed its own,
            # a new connection is refused (the next replica gets it) instead of waiting in a backlog nobody reads.
            for sock in self.sockets:
                sock.close()
            super().terminate_all()

    config = uvicorn.Config(
        "app.cli.serve:worker_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http=CappedHttpToolsProtocol,
        log_level="warning",
        access_log=False,  # ours is app/edge/access_log.py
        lifespan="on",
        proxy_headers=False,  # WORLDGATE_TRUSTED_PROXIES decides who is a proxy (app/edge/proxy.py), not uvicorn
        timeout_graceful_shutdown=settings.production.shutdown_grace_s,
    )
    if config.workers > 1:
        Supervisor(config, sockets=[config.bind_socket()]).run()
        return
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)
