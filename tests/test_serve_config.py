"""`worldgate serve --config FILE` as real processes: every worker serves the file's prices, rate limits and
admin audience (the workers get the validated settings object, not a partial environment), with one worker
and with two. And `worldgate migrate` needs a database and nothing else.

No chain runs here: the gateway settles through a stub facilitator that only answers /supported, which is
all a 402 quote needs, so a start costs the imports and not the devnets."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.edge.admin.auth import mint

from .chain import unb64
from .services import ServerThread, free_port, postgres, redis_server

ROOT = Path(__file__).resolve().parents[1]
PAY_TO = "0x000000000000000000000000000000000000bEEF"
AUDIENCE = "serve-config-test"
pytestmark = pytest.mark.slow


def _bare_env(**extra: str) -> dict[str, str]:
    """This process's environment without any setting: whatever the gateway gets comes from the file."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WORLDGATE_", "X402_", "PROMETHEUS_")) and k not in ("DATABASE_URL", "REDIS_URL")
    }
    return {**env, **extra}


async def _supported(request: Request) -> JSONResponse:
    return JSONResponse({"kinds": [{"x402Version": 2, "scheme": "exact", "network": "eip155:84532"}]})


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """(database URL, Redis URL, facilitator URL) for every gateway of this module."""
    state_dir = tmp_path_factory.mktemp("serve-config-services")
    facilitator = ServerThread(Starlette(routes=[Route("/supported", _supported)])).start()
    try:
        with postgres(state_dir, prefix="wg_servecfg") as database, redis_server(state_dir) as (redis_url, _kind):
            yield database.url, redis_url, facilitator.url
    finally:
        facilitator.stop()


@pytest.fixture(scope="module", params=[1, 2], ids=["1-worker", "2-workers"])
def served(
    request: pytest.FixtureRequest, services: tuple[str, str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, Path, int]]:
    """A gateway configured by its file alone: (its URL, the admin secret the file points at, its state dir,
    its workers)."""
    database_url, redis_url, facilitator_url = services
    workers = request.param
    state_dir = tmp_path_factory.mktemp(f"serve-config-{workers}")
    admin_secret = secrets.token_hex(32)
    (state_dir / "admin.secret").write_text(admin_secret + "\n")
    config = state_dir / "worldgate.toml"
    config.write_text(
        f'[server]\nstate_dir = "{state_dir}"\nlog_level = "warning"\n'
        f'[database]\nurl = "{database_url}"\n'
        f'[redis]\nurl = "{redis_url}"\nprefix = "wgcfg:{secrets.token_hex(4)}:"\n'  # no count shared with others
        f'[payments]\nfacilitator_url = "{facilitator_url}"\n'
        f'[evm]\npay_to = "{PAY_TO}"\n'
        '[pricing.tiers]\nbasic = "$0.05"\n'
        '[pricing.routes]\n"/v1/streams/static.volcanoes" = "$0.25"\n'
        "[upstreams]\nscheduler = false\nreplay = true\n"
        "[reconcile]\ninterval_s = 0\n"
        f'[admin]\njwt_audience = "{AUDIENCE}"\njwt_secret_file = "{state_dir / "admin.secret"}"\n'
        '[limits]\nfree = "5/minute"\ntrusted_proxies = ["127.0.0.1"]\n'  # X-Forwarded-For names the client
    )
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--config", str(config), "--port", str(port), "--workers", str(workers)],
        cwd=ROOT,
        env=_bare_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"worldgate serve exited: {process.stdout.read() if process.stdout else ''}")
            try:
                if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("worldgate serve did not become healthy")
            time.sleep(0.2)
        yield url, admin_secret, state_dir, workers
    finally:
        process.terminate()
        try:
            output = process.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            process.kill()
            output = process.communicate()[0]
        assert admin_secret not in output  # the banner shows where the settings point, never a secret


def _quoted_amount(url: str, path: str) -> str:
    answer = httpx.get(f"{url}{path}", timeout=10)
    assert answer.status_code == 402, answer.text
    [offer] = unb64(answer.headers["payment-required"])["accepts"]
    return str(offer["amount"])


def _quoting_workers(state_dir: Path) -> set[str]:
    """The workers that issued a quote: each has its own counter file in the multiprocess metrics dir."""
    quoting = set()
    for path in (state_dir / "metrics").glob("counter_*.db"):
        values = MmapedDict(str(path), read_mode=True).read_all_values()
        if any("worldgate_quotes_issued" in key and value > 0 for key, value, *_ in values):
            quoting.add(path.stem)
    return quoting


def test_every_worker_quotes_the_files_prices(served: tuple[str, str, Path, int]) -> None:
    url, _, state_dir, workers = served
    amounts: set[str] = set()
    with ThreadPoolExecutor(10) as pool:  # bursts of concurrent connections, until every worker has answered
        for _ in range(10):
            amounts.update(pool.map(lambda _: _quoted_amount(url, "/v1/streams/static.capitals"), range(10)))
            if workers == 1 or len(_quoting_workers(state_dir)) == workers:
                break
    assert amounts == {"50000"}  # [pricing.tiers] basic = "$0.05" in every worker, not the default 1000
    if workers > 1:
        assert len(_quoting_workers(state_dir)) == workers
    assert _quoted_amount(url, "/v1/streams/static.volcanoes") == "250000"  # [pricing.routes]
    # the replay server `serve` started for [upstreams] replay = true: its URL reached every worker
    assert {httpx.get(f"{url}/v1/health").json()["upstreams"] for _ in range(10)} == {"replay (recorded payloads)"}


def test_every_worker_checks_the_files_admin_audience(served: tuple[str, str, Path, int]) -> None:
    url, admin_secret, _, _ = served
    ours = mint(admin_secret, AUDIENCE, "config-test", 600)
    default = mint(admin_secret, "worldgate-admin", "config-test", 600)
    for client in range(1, 11):  # a client apiece (via the trusted proxy): the free limit is not this test's
        forwarded = {"x-forwarded-for": f"203.0.113.{client}"}
        whoami = httpx.get(f"{url}/admin/api/whoami", headers={"authorization": f"Bearer {ours}", **forwarded})
        assert whoami.status_code == 200 and whoami.json()["subject"] == "config-test"
        wrong = httpx.get(f"{url}/admin/api/whoami", headers={"authorization": f"Bearer {default}", **forwarded})
        assert wrong.status_code == 401


def test_every_worker_applies_the_files_rate_limit(served: tuple[str, str, Path, int]) -> None:
    """[limits] free = "5/minute": each worker counts in memory and shares through Redis, so 20 requests
    from one address are refused long before the end (the default, 120/minute, would answer them all)."""
    url, _, _, _ = served
    forwarded = {"x-forwarded-for": "198.51.100.7"}
    statuses = [httpx.get(f"{url}/v1/streams", headers=forwarded, timeout=10).status_code for _ in range(20)]
    assert statuses[0] == 200 and 429 in statuses
    assert statuses.count(200) <= 10, statuses
    other = httpx.get(f"{url}/v1/streams", headers={"x-forwarded-for": "198.51.100.8"})
    assert other.status_code == 200  # [limits] trusted_proxies: the limit is per client, not per proxy


def _worldgate(env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *arguments], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_migrate_needs_a_database_and_nothing_else(tmp_path: Path) -> None:
    with postgres(tmp_path, prefix="wg_migrateonly") as database:
        alone = _worldgate(_bare_env(WORLDGATE_DATABASE_URL=database.url, WORLDGATE_STATE_DIR=str(tmp_path)), "migrate")
        assert alone.returncode == 0, alone.stderr
        assert alone.stdout.startswith("applied: ")
        # the server's chain without its key: no business of a migration job; `serve` refuses it
        chain = _bare_env(
            WORLDGATE_DATABASE_URL=database.url,
            WORLDGATE_STATE_DIR=str(tmp_path),
            WORLDGATE_EVM_RPC_URL="http://127.0.0.1:1",
            WORLDGATE_EVM_PAY_TO=PAY_TO,
            WORLDGATE_EVM_RELAYER_KEY_FILE=str(tmp_path / "not-mounted.key"),
        )
        again = _worldgate(chain, "migrate")
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip() == "the ledger schema is up to date"
        refused = _worldgate(chain, "serve")
        assert refused.returncode == 2 and "WORLDGATE_EVM_RELAYER_KEY_FILE" in refused.stderr
