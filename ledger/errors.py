"""Ledger failures, translated once from asyncpg and OS errors at this edge."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import asyncpg


class LedgerError(Exception):
    """Base of every ledger failure."""


class LedgerUnavailable(LedgerError):
    """Postgres could not be reached or dropped the connection: paid routes must fail closed."""


class LedgerIntegrityError(LedgerError):
    """A ledger rule refused a write (illegal transition, unbalanced entry, edit of an immutable row)."""


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Map driver and socket errors to ledger errors, without leaking the DSN or its password."""
    try:
        yield
    except (
        asyncpg.IntegrityConstraintViolationError,
        asyncpg.CheckViolationError,
        asyncpg.RaiseError,
    ) as exc:
        raise LedgerIntegrityError(str(exc).splitlines()[0]) from exc
    except (
        OSError,
        TimeoutError,
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,  # the driver's protocol state, e.g. a connection the server just dropped
        asyncpg.CannotConnectNowError,
        asyncpg.TooManyConnectionsError,
        asyncpg.AdminShutdownError,
    ) as exc:
        raise LedgerUnavailable(f"Postgres unavailable ({type(exc).__name__})") from exc
