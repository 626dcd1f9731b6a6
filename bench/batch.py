"""Batch-settlement vouchers vs exact on one worldgate, same route, same run: requests/s and gas per request.

`make bench` runs it after bench/paid.py; alone: `.venv/bin/python bench/batch.py [--quick] [--requests N]
[--concurrency C] [--quotes Q] [--vouchers-only]` (the last: no exact phase, for profiling the voucher path).

1. One anvil devnet with the channel contracts where `worldgate serve` places them, a fresh Postgres
   database, Redis db 14, and worldgate as bench/paid.py runs it (uvicorn, 1 worker, uvloop, httptools)
   offering both schemes on one route, the settler's timers far off (the flush below claims).
2. C funded payers, one per client, each opening one channel through the gateway before timing (the deposit
   rides on its first paid request; the gateway's relayer sends it): a channel serves one request at a time.
3. Every payment is signed before timing (EIP-3009 for exact, each channel's cumulative vouchers in order),
   so client-side signing is not measured.
4. Untimed warm-up (quotes, one exact payment and one voucher per client), then timed at concurrency C:
   Q unpaid quotes (402 with PAYMENT-REQUIRED), then N exact and N voucher requests in ABBA order (exact,
   vouchers, vouchers, exact; half each), as anvil slows while exact's settlements pile up. Only 200s with
   a successful PAYMENT-RESPONSE and the stream's body count.
5. Then the settler's flush (as `worldgate batch flush`) claims every voucher and sweeps to payTo. Gas from
   receipts: exact = its settlements / paid requests; batch = (deposits + claims + sweep) / every request
   paid by voucher (opening and warm-up ones included: the flush claims them too).

Prints raw numbers, then `batch_vs_exact_rps=`, `batch_vs_exact_gas=`, `batch_vs_quote_rps=`. Exit 1 if a
request or a check failed, 2 if the bench could not set itself up.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ledger  # noqa: E402
from app.runtime.settings import load_settings  # noqa: E402
from app.usecases import batch_setup  # noqa: E402
from app.usecases.services import Services  # noqa: E402
from app.wiring import MIGRATIONS_DIR  # noqa: E402
from bench import harness, paid  # noqa: E402
from bench.load import TRANSPORT_ERRORS, Answer, PhaseResult, RawLoad, fmt, run_async  # noqa: E402
from payments.devnet import batch as devnet_batch  # noqa: E402
from payments.devnet.anvil import Anvil  # noqa: E402
from payments.devnet.evm import EvmDevnet, Rpc, provision  # noqa: E402
from payments.devnet.process import DevnetError, free_port  # noqa: E402
from tests.batch_payer import sign_deposit_authorization  # noqa: E402
from tests.chain import b64, unb64  # noqa: E402
from tests.services import postgres, redis_server  # noqa: E402

CHAIN_ID = paid.CHAIN_ID
PATH = harness.PATH
PRICE = paid.PRICE_ATOMIC
REQUEST_TIMEOUT_S = 30.0
FLUSH_TIMEOUT_S = 180.0
VOUCHER_TYPES = {
    "Voucher": [{"name": "channelId", "type": "bytes32"}, {"name": "maxClaimableAmount", "type": "uint128"}]
}


# ---- A payer's channel: deposit and cumulative vouchers, signed with eth_account as the official clients do ----


class Channel:
    def __init__(self, devnet: EvmDevnet, key: str, offer: dict[str, Any]) -> None:
        self.devnet, self.key, self.offer = devnet, key, offer
        payer = str(Account.from_key(key).address)
        extra = offer["extra"]
        receiver, authorizer, delay = offer["payTo"], extra["receiverAuthorizer"], extra["withdrawDelay"]
        salt = os.urandom(32)
        # payerAuthorizer non-zero: the gateway checks the voucher's signature locally, with no chain read
        self.config = {
            "payer": payer,
            "payerAuthorizer": payer,
            "receiver": receiver,
            "receiverAuthorizer": authorizer,
            "token": offer["asset"],
            "withdrawDelay": delay,
            "salt": "0x" + salt.hex(),
        }
        config = devnet_batch.ChannelConfig(payer, payer, receiver, authorizer, offer["asset"], int(delay), salt)
        self.channel_id = devnet_batch.channel_id(config, CHAIN_ID)
        self.cumulative = 0

    def _voucher(self) -> dict[str, Any]:
        self.cumulative += int(self.offer["amount"])
        signed = Account.sign_typed_data(
            self.key,
            domain_data={
                "name": devnet_batch.DOMAIN_NAME,
                "version": devnet_batch.DOMAIN_VERSION,
                "chainId": CHAIN_ID,
                "verifyingContract": devnet_batch.BATCH_SETTLEMENT_ADDRESS,
            },
            message_types=VOUCHER_TYPES,
            message_data={"channelId": self.channel_id, "maxClaimableAmount": self.cumulative},
        )
        return {
            "channelId": "0x" + self.channel_id.hex(),
            "maxClaimableAmount": str(self.cumulative),
            "signature": "0x" + signed.signature.hex(),
        }

    def _header(self, payload: dict[str, Any]) -> str:
        return b64({"x402Version": 2, "accepted": self.offer, "payload": payload})

    def voucher(self) -> str:
        return self._header({"type": "voucher", "channelConfig": self.config, "voucher": self._voucher()})

    def deposit(self, amount: int) -> str:
        """The channel's first payment: an ERC-3009 deposit to the collector, with the first voucher."""
        salt = "0x" + os.urandom(32).hex()
        valid_before = int(time.time()) + 3600
        nonce = devnet_batch.erc3009_deposit_nonce(self.channel_id, int(salt, 16))
        signature = sign_deposit_authorization(
            self.devnet, self.key, self.config["payer"], amount, valid_before=valid_before, nonce=nonce
        )
        authorization = {
            "validAfter": "0",
            "validBefore": str(valid_before),
            "salt": salt,
            "signature": "0x" + signature.hex(),
        }
        return self._header(
            {
                "type": "deposit",
                "channelConfig": self.config,
                "voucher": self._voucher(),
                "deposit": {"amount": str(amount), "authorization": {"erc3009Authorization": authorization}},
            }
        )


# ---- The load: C clients on bench/load.py's raw keep-alive connections, each with its own list of requests ----


@dataclass
class Phase(PhaseResult):
    receipts: list[dict[str, Any]] = field(default_factory=list)  # decoded PAYMENT-RESPONSEs of the successes

    def merge(self, other: PhaseResult) -> None:
        super().merge(other)
        if isinstance(other, Phase):
            self.receipts += other.receipts


Check = Callable[[Answer], tuple[str | None, dict[str, Any] | None]]


def quote_ok(answer: Answer) -> tuple[str | None, dict[str, Any] | None]:
    if answer.status == 402 and "payment-required" in answer.headers:
        return None, None
    return f"status {answer.status}, not a 402 quote: {answer.text()}", None


def paid_ok(needs_transaction: bool) -> Check:
    def check(answer: Answer) -> tuple[str | None, dict[str, Any] | None]:
        if answer.status != 200:
            return f"status {answer.status}: {answer.text()}", None
        try:
            receipt = unb64(answer.headers["payment-response"])
            document = json.loads(answer.body)
        except (KeyError, ValueError) as exc:
            return f"200 without a readable payment-response or body: {exc!r}", None
        if receipt.get("success") is not True or (needs_transaction and not receipt.get("transaction")):
            return f"200 with an unsuccessful payment-response: {receipt}", None
        if not isinstance(document, dict) or document.get("stream") != "static.capitals" or not document.get("count"):
            return f"200 with an unexpected body: {answer.text()}", None
        return None, receipt

    return check


async def phase(
    load: RawLoad, work: list[list[str]], check: Check, deadline: float, cpu: harness.CpuProbe | None = None
) -> Phase:
    """Client i sends work[i] in order ("" = no payment header); the phase ends when every client is done."""
    result = Phase()

    async def client(index: int) -> None:
        connection = load.connection(index)
        for header in work[index]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                result.record(0.0, "deadline", "not sent: the bench's --timeout passed")
                continue
            started = time.perf_counter()
            try:
                request = connection.get(PATH, {"payment-signature": header} if header else {})
                answer = await asyncio.wait_for(request, min(REQUEST_TIMEOUT_S, remaining))
            except TRANSPORT_ERRORS as exc:  # a timeout is an OSError too
                result.record(0.0, type(exc).__name__, f"{type(exc).__name__}: {exc}")
                continue
            elapsed = time.perf_counter() - started
            problem, receipt = check(answer)
            result.record(elapsed, answer.status, problem)
            if receipt is not None:
                result.receipts.append(receipt)

    before = cpu() if cpu else {}
    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(len(work))))
    result.wall_s = time.perf_counter() - started
    if cpu:
        result.cpu_s = {k: v - before[k] for k, v in cpu().items()}
    return result


def halves(work: list[list[str]]) -> tuple[list[list[str]], list[list[str]]]:
    return [w[: len(w) // 2] for w in work], [w[len(w) // 2 :] for w in work]


async def drive(
    url: str,
    *,
    opens: list[str],
    warm_exact: list[str],
    warm_vouchers: list[str],
    quotes: list[list[str]],
    exact: list[list[str]],
    vouchers: list[list[str]],
    cpu: harness.CpuProbe,
    deadline: float,
) -> dict[str, Phase]:
    load = RawLoad(url, len(opens))
    try:
        await phase(load, [[""] * 20 for _ in opens], quote_ok, deadline)  # warm the connections and caches
        runs = {"opening": await phase(load, [[h] for h in opens], paid_ok(True), deadline)}
        runs["warm-up exact"] = await phase(load, [[h] for h in warm_exact], paid_ok(True), deadline)
        runs["warm-up vouchers"] = await phase(load, [[h] for h in warm_vouchers], paid_ok(False), deadline)
        runs["quote"] = await phase(load, quotes, quote_ok, deadline, cpu)
        (exact_1, exact_2), (vouchers_1, vouchers_2) = halves(exact), halves(vouchers)
        runs["exact"] = await phase(load, exact_1, paid_ok(True), deadline, cpu)  # empty lists: --vouchers-only
        runs["batch"] = await phase(load, vouchers_1, paid_ok(False), deadline, cpu)
        runs["batch"].merge(await phase(load, vouchers_2, paid_ok(False), deadline, cpu))
        runs["exact"].merge(await phase(load, exact_2, paid_ok(True), deadline, cpu))
    finally:
        await load.aclose()
    return runs


# ---- Setup, the flush, gas from receipts, the report ----


def offers(url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    answer = httpx.get(url + PATH, timeout=10.0)
    accepts = unb64(answer.headers["payment-required"])["accepts"]
    by_scheme = {o["scheme"]: o for o in accepts}
    if "exact" not in by_scheme or "batch-settlement" not in by_scheme:
        raise harness.BenchError(f"the 402 does not offer both exact and batch-settlement: {accepts}")
    return by_scheme["exact"], by_scheme["batch-settlement"]


def spread(total: int, clients: int) -> list[int]:
    return [total // clients + (1 if i < total % clients else 0) for i in range(clients)]


async def flush(env: dict[str, str]) -> dict[str, Any]:
    """The settler's flush (what `worldgate batch flush` runs) in this process, with the gateway's settings."""
    settings = load_settings(env)
    # more than the CLI's 2 connections: the flush holds its lock on one and the relayer's on another
    pool = await ledger.create_pool(env["DATABASE_URL"], size_min=1, size_max=4)
    try:
        parts = batch_setup.build(settings, pool, Services(pool=pool))
        try:
            report = await asyncio.wait_for(parts.settler.flush(), FLUSH_TIMEOUT_S)
        finally:
            await parts.rpc.close()
    finally:
        await pool.close()
    return {**dataclasses.asdict(report), "transactions": list(report.transactions)}


def gas_used(rpc_url: str, hashes: list[str]) -> tuple[int, list[str]]:
    """Total gasUsed of the transactions, and the hashes whose receipt says they failed."""
    rpc = Rpc(rpc_url)
    try:
        total, failed = 0, []
        for tx in dict.fromkeys(hashes):
            receipt = rpc.receipt(tx)
            total += int(receipt["gasUsed"], 16)
            if int(receipt["status"], 16) != 1:
                failed.append(tx)
        return total, failed
    finally:
        rpc.close()


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def line(name: str, run: PhaseResult) -> str:
    cpu = ", ".join(f"{k} {fmt(run.cpu_percent(k), 0)}%" for k in run.cpu_s)
    return (
        f"{name:<9} requests={run.total} ok={run.ok} seconds={run.wall_s:.2f} rps={fmt(run.rps)}"
        f" p50_ms={fmt(run.p_ms(50), 2)} p99_ms={fmt(run.p_ms(99), 2)} cpu({cpu})"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 40 paid requests per mode, 200 quotes")
    parser.add_argument("--requests", type=int, help="timed paid requests per mode (1600: 100 per channel; --quick 40)")
    parser.add_argument("--quotes", type=int, help="timed unpaid quotes (2000; --quick 200)")
    parser.add_argument("--concurrency", type=int, default=16, help="clients, one channel each (16)")
    parser.add_argument("--timeout", type=float, default=600.0, help="the whole load's deadline in seconds (600)")
    parser.add_argument(
        "--vouchers-only", action="store_true", help="no exact phase: vouchers/s alone, no exact ratios"
    )
    args = parser.parse_args(argv)
    args.requests = args.requests or (40 if args.quick else 1600)  # a channel's life: one deposit, ~100 vouchers
    args.quotes = args.quotes or (200 if args.quick else 2000)
    if args.concurrency < 1 or args.requests < 2 * args.concurrency or args.quotes < args.concurrency:
        parser.error("--requests must be at least 2x --concurrency, --quotes at least --concurrency")
    per_client = -(-args.requests // args.concurrency) + 2
    if (1 if args.vouchers_only else 2) * per_client * PRICE + 1_000_000 > paid.PAYER_USDC_ATOMIC:  # deposit + exact
        parser.error("too many requests per client for a payer's funds: raise --concurrency")
    return args


def run(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    clients = args.concurrency
    with harness.Cleanup() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="worldgate-bench-batch-")))
        database = stack.enter_context(postgres(workdir, prefix="bench"))
        asyncio.run(ledger.migrate(database.url, MIGRATIONS_DIR))
        redis, redis_kind = stack.enter_context(redis_server(workdir, db=14))
        anvil = Anvil(CHAIN_ID).start()
        stack.callback(anvil.stop)
        devnet = provision(anvil.rpc_url, CHAIN_ID)
        devnet_batch.install_batch_settlement(anvil.rpc_url)  # as `worldgate serve` does
        assert anvil.process is not None
        print(f"bench: chain {devnet.network} via anvil {devnet.rpc_url}; {database.kind}; {redis_kind}", flush=True)

        port = free_port()
        env = harness.server_env(
            {
                "DATABASE_URL": database.url,
                "REDIS_URL": redis,
                "WORLDGATE_EVM_RPC_URL": devnet.rpc_url,
                "WORLDGATE_EVM_NETWORK": devnet.network,
                "WORLDGATE_EVM_ASSET": devnet.asset,
                "WORLDGATE_EVM_PAY_TO": devnet.pay_to,
                "WORLDGATE_EVM_EIP712_NAME": devnet.eip712_name,
                "WORLDGATE_EVM_EIP712_VERSION": devnet.eip712_version,
                "WORLDGATE_EVM_RELAYER_KEY": devnet.relayer_private_key,
                "WORLDGATE_AUTO_MIGRATE": "0",
                "WORLDGATE_LOG_LEVEL": "warning",
                "WORLDGATE_SCHEMES": "exact,batch-settlement",
                # timers far off: no claim competes with the timed window; the flush claims after it
                "WORLDGATE_BATCH_CLAIM_INTERVAL_S": "3600",
                "WORLDGATE_BATCH_SETTLE_INTERVAL_S": "3600",
                # one address floods on purpose: the limits stay on but out of reach
                "WORLDGATE_RATE_LIMIT_FREE": "100000000/minute",
                "WORLDGATE_RATE_LIMIT_QUOTE": "100000000/minute",
                "WORLDGATE_RATE_LIMIT_PAYER": "100000000/minute",
            }
        )
        command = [
            harness.PYTHON, "-m", "uvicorn", "app.wiring:app_from_env", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
            "--lifespan", "on",
        ]  # fmt: skip
        server = stack.enter_context(harness.child("worldgate", command, env, workdir, port))
        harness.wait_until_quoting(server)
        exact_offer, batch_offer = offers(server.url)
        if exact_offer["amount"] != batch_offer["amount"]:
            raise harness.BenchError(f"exact and batch prices differ: {exact_offer} vs {batch_offer}")

        signing = time.monotonic()
        keys = paid.new_payers(devnet, clients)
        counts = spread(args.requests, clients)
        channels = [Channel(devnet, key, batch_offer) for key in keys]
        min_deposit = int(batch_offer["extra"].get("minDeposit", 0))
        opens = [c.deposit(max(min_deposit, (n + 2) * PRICE)) for c, n in zip(channels, counts, strict=True)]
        warm_vouchers = [c.voucher() for c in channels]
        vouchers = [[c.voucher() for _ in range(n)] for c, n in zip(channels, counts, strict=True)]
        warm_exact = [paid.sign_payment(key, exact_offer) for key in keys]
        exact = [
            [paid.sign_payment(key, exact_offer) for _ in range(0 if args.vouchers_only else n)]
            for key, n in zip(keys, counts, strict=True)
        ]
        quotes = [[""] * n for n in spread(args.quotes, clients)]
        print(
            f"bench: {clients} payers funded, {clients} deposits and {2 * (args.requests + clients)} payments signed"
            f" in {time.monotonic() - signing:.1f} s (before timing); {args.requests} paid requests per mode,"
            f" {args.quotes} quotes, concurrency {clients} (one channel per client)",
            flush=True,
        )

        runs = run_async(
            drive(
                server.url,
                opens=opens,
                warm_exact=warm_exact,
                warm_vouchers=warm_vouchers,
                quotes=quotes,
                exact=exact,
                vouchers=vouchers,
                cpu=harness.cpu_probe(server.process.pid, anvil.process.pid),
                deadline=time.monotonic() + args.timeout,
            )
        )
        alive = server.alive()
        log_tail = "" if alive else server.log_tail()
        print("bench: flushing (claim + sweep) ...", flush=True)
        flushed = asyncio.run(flush(env))

        deposits = [r["transaction"] for r in runs["opening"].receipts]
        exact_gas, exact_failed = gas_used(devnet.rpc_url, [r["transaction"] for r in runs["exact"].receipts])
        deposit_gas, deposit_failed = gas_used(devnet.rpc_url, deposits)
        flush_gas, flush_failed = gas_used(devnet.rpc_url, flushed["transactions"])
    elapsed = time.monotonic() - t0

    problems: list[str] = []
    for name, result in runs.items():
        if result.ok != result.total:
            problems.append(
                f"{name}: {result.total - result.ok} of {result.total} failed; statuses {dict(result.statuses)};"
                f" e.g. {result.failures[:2]}"
            )
    voucher_paid = runs["opening"].ok + runs["warm-up vouchers"].ok + runs["batch"].ok
    if flushed["settled_atomic"] != voucher_paid * PRICE:
        problems.append(f"the flush swept {flushed['settled_atomic']} atomic, not {voucher_paid} x {PRICE}")
    if failed := exact_failed + deposit_failed + flush_failed:
        problems.append(f"transactions reverted: {failed}")
    if not alive:
        problems.append(f"the gateway died during the run:\n{log_tail}")

    exact_per = _ratio(exact_gas, runs["exact"].ok)
    batch_gas = deposit_gas + flush_gas
    batch_per = _ratio(batch_gas, voucher_paid)
    print()
    print(line("quote", runs["quote"]))
    print(line("exact", runs["exact"]) + (" (--vouchers-only)" if not runs["exact"].total else ""))
    print(line("batch", runs["batch"]))
    print(
        f"gas exact: {len(set(r['transaction'] for r in runs['exact'].receipts))} settlement txs, {exact_gas} gasUsed"
        f" for {runs['exact'].ok} paid requests = {fmt(exact_per, 0)} per request"
    )
    print(
        f"gas batch: {len(set(deposits))} deposit txs {deposit_gas} + {flushed['claims']} claim tx(s) and the sweep"
        f" ({len(flushed['transactions'])} txs) {flush_gas} = {batch_gas} gasUsed for {voucher_paid} voucher"
        f" requests ({runs['opening'].ok} opening, {runs['warm-up vouchers'].ok} warm-up, {runs['batch'].ok} timed)"
        f" = {fmt(batch_per, 0)} per request"
    )
    print(
        f"flush: {flushed['channels']} channels claimed, {flushed['claimed_atomic']} claimed,"
        f" {flushed['settled_atomic']} swept (atomic); the gateway, anvil, Postgres and this load generator share"
        f" {os.cpu_count()} cores; signing done before timing; total bench time {elapsed:.0f} s"
    )
    for problem in problems:
        print(f"FAILED {problem}")
    print(f"batch_vs_exact_rps={_ratio(runs['batch'].rps, runs['exact'].rps):.2f}")
    print(f"batch_vs_exact_gas={_ratio(batch_per, exact_per):.3f}")
    print(f"batch_vs_quote_rps={_ratio(runs['batch'].rps, runs['quote'].rps):.2f}")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, harness.raise_exit)  # so cleanup stops the children and drops the database
    try:
        return run(args)
    except (harness.BenchError, DevnetError, TimeoutError) as exc:
        print(f"bench: {str(exc) or 'timed out (the flush)'}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; children stopped and the bench database dropped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
