"""Reconcile findings as an operator works through them (ledger, CLI, admin API), and a restarted devnet
not turning the sales it forgot into findings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app.runtime.devnet_file import devnet_state, write_devnet_state
from app.runtime.settings import ReconcileSettings, Settings
from app.usecases.reconcile import Reconciler
from ledger import LedgerError, audit, epochs, findings
from payments import SettlementFinding

from .conftest import running_gateway, with_settings
from .ledger_helpers import FreshDatabase, fresh_database, record, settle_new
from .services import Database
from .test_admin import bearer, token

ROOT = Path(__file__).resolve().parents[1]
SOLANA = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"
EVM = "eip155:84532"
AT_ONCE = ReconcileSettings(interval_s=0, grace_s=0.0, settled_sample=1000)


@pytest.fixture
async def fresh(database: Database) -> AsyncIterator[FreshDatabase]:
    async with fresh_database(database) as made:
        yield made


async def _flagged(pool: asyncpg.Pool, kind: str = "settlement_not_on_chain") -> tuple[int, int]:
    """A settled payment with an open finding: (payment id, finding id)."""
    payment_id = await settle_new(pool, record())
    assert await audit.flag(pool, payment_id, kind, "seeded")
    [found] = [f for f in await findings.findings(pool) if f.payment_id == payment_id]
    return payment_id, found.id


# ---- the ledger ----


async def test_acknowledge_then_close_keeps_who_and_why(fresh: FreshDatabase) -> None:
    pool = fresh.pool
    _, first = await _flagged(pool)
    _, second = await _flagged(pool)
    assert [f.state for f in await findings.findings(pool, "open")] == ["open", "open"]

    acked = await findings.act(pool, first, "acknowledge", "  looking into it ", "alice")
    assert (acked.state, acked.acknowledged_by, acked.note) == ("acknowledged", "alice", "looking into it")
    assert acked.closed_at is None
    assert [f.id for f in await findings.findings(pool, "open")] == [second]
    assert [f.id for f in await findings.findings(pool, "acknowledged")] == [first]
    # acknowledged is still unresolved: reports and metrics keep counting it
    assert [f.id for f in await audit.open_flags(pool, 10)] == [first, second]

    closed = await findings.act(pool, first, "close", "relayer refunded by hand", "bob")
    assert (closed.state, closed.closed_by, closed.note) == ("closed", "bob", "relayer refunded by hand")
    assert closed.closed_at is not None and closed.acknowledged_by == "alice"
    assert [f.id for f in await audit.open_flags(pool, 10)] == [second]
    trail = await findings.actions(pool, first)
    assert [(a["action"], a["actor"], a["note"]) for a in trail] == [
        ("acknowledge", "alice", "looking into it"),
        ("close", "bob", "relayer refunded by hand"),
    ]

    with pytest.raises(LedgerError, match="closed already"):
        await findings.act(pool, first, "acknowledge", "again", "alice")
    with pytest.raises(findings.FindingNotFound):
        await findings.act(pool, 10**9, "close", "nothing there", "alice")
    for note in ("", "   ", "x" * (findings.NOTE_MAX + 1)):
        with pytest.raises(LedgerError, match="note"):
            await findings.act(pool, second, "close", note, "alice")
    with pytest.raises(LedgerError, match="unknown finding state"):
        await findings.findings(pool, "closed' OR 1=1")
    assert (await findings.finding(pool, second)).state == "open"  # type: ignore[union-attr]

    # the trail is append-only
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="append-only"):
        await pool.execute("UPDATE reconcile_flag_actions SET note = 'rewritten'")
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="append-only"):
        await pool.execute("DELETE FROM reconcile_flag_actions")


async def test_an_operators_close_survives_reconcile_seeing_it_again(fresh: FreshDatabase) -> None:
    pool = fresh.pool
    payment_closed, closed = await _flagged(pool)
    payment_resolved, resolved = await _flagged(pool)
    await findings.act(pool, closed, "close", "known devnet reset", "alice")
    await findings.act(pool, resolved, "acknowledge", "watching", "alice")
    await audit.resolve_flags(pool, payment_resolved, ["settlement_not_on_chain"])  # the chain agreed

    # seen again: the operator's close stands (not newly raised); reconcile's own resolution reopens, as news
    assert not await audit.flag(pool, payment_closed, "settlement_not_on_chain", "seen again")
    assert await audit.flag(pool, payment_resolved, "settlement_not_on_chain", "seen again")
    state = {f.id: f for f in await findings.findings(pool)}
    assert state[closed].state == "closed" and state[closed].note == "known devnet reset"
    assert state[resolved].state == "open" and state[resolved].acknowledged_by is None


# ---- the CLI ----


def _cli(database_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORLDGATE_")}
    env.update(DATABASE_URL=database_url, WORLDGATE_STATE_DIR=str(tmp_path))
    return subprocess.run(
        [sys.executable, "-m", "app", "ledger", "findings", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_cli_lists_acknowledges_and_closes(fresh: FreshDatabase, tmp_path: Path) -> None:
    payment_id, finding_id = await _flagged(fresh.pool)
    listed = _cli(fresh.url, tmp_path, "--state", "open", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    [shown] = json.loads(listed.stdout)["findings"]
    assert (shown["id"], shown["payment_id"], shown["state"]) == (finding_id, payment_id, "open")

    acked = _cli(fresh.url, tmp_path, "ack", str(finding_id), "--note", "on it", "--by", "carol")
    assert acked.returncode == 0 and f"finding {finding_id} acknowledged by carol: on it" in acked.stdout
    table = _cli(fresh.url, tmp_path)
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:3] == ["id", "state", "kind"]
    assert table.stdout.splitlines()[1].split()[:2] == [str(finding_id), "acknowledged"]
    assert "on it" in table.stdout

    closed = _cli(fresh.url, tmp_path, "close", str(finding_id), "--note", "refunded")
    assert closed.returncode == 0 and "closed by cli:" in closed.stdout
    again = _cli(fresh.url, tmp_path, "close", str(finding_id), "--note", "twice")
    assert again.returncode == 1 and "closed already" in again.stderr
    unknown = _cli(fresh.url, tmp_path, "ack", "999999", "--note", "x")
    assert unknown.returncode == 1 and "no finding 999999" in unknown.stderr
    missing_note = _cli(fresh.url, tmp_path, "ack", str(finding_id))
    assert missing_note.returncode == 2 and "--note" in missing_note.stderr
    assert _cli(fresh.url, tmp_path, "--state", "open").stdout == "no findings\n"
    trail = await findings.actions(fresh.pool, finding_id)
    assert [(a["action"], a["actor"]) for a in trail] == [("acknowledge", "carol"), ("close", trail[1]["actor"])]
    assert str(trail[1]["actor"]).startswith("cli:")


# ---- the admin API ----


async def test_admin_api_lists_acknowledges_and_closes(
    fresh: FreshDatabase, settings: Settings, log_lines: Any
) -> None:
    _, first = await _flagged(fresh.pool)
    _, second = await _flagged(fresh.pool, "settlement_mismatch")
    with running_gateway(with_settings(settings, database_url=fresh.url)) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30, headers=bearer(token("dana"))) as client:
            listed = (await client.get("/admin/api/findings", params={"state": "open"})).json()
            assert [f["id"] for f in listed["findings"]] == [first, second] and listed["count"] == 2
            assert (await client.get("/admin/api/findings", params={"state": "bogus"})).status_code == 400
            unauthorized = await client.get("/admin/api/findings", headers={"authorization": "Bearer nope"})
            assert unauthorized.status_code == 401

            acked = await client.post(f"/admin/api/findings/{first}/ack", json={"note": "seen"})
            assert acked.status_code == 200, acked.text
            assert (acked.json()["state"], acked.json()["acknowledged_by"]) == ("acknowledged", "dana")
            closed = await client.post(f"/admin/api/findings/{second}/close", json={"note": "false alarm"})
            assert closed.status_code == 200 and closed.json()["closed_by"] == "dana"
            assert (await client.post(f"/admin/api/findings/{second}/close", json={"note": "x"})).status_code == 409
            assert (await client.post(f"/admin/api/findings/{first}/ack", json={"note": " "})).status_code == 400
            assert (await client.post(f"/admin/api/findings/{first}/ack", json={})).status_code == 400
            assert (await client.post("/admin/api/findings/999999/ack", json={"note": "x"})).status_code == 404
            assert (await client.post(f"/admin/api/findings/{first}/delete", json={"note": "x"})).status_code == 404
            states = {f["id"]: f["state"] for f in (await client.get("/admin/api/findings")).json()["findings"]}
            assert states == {first: "acknowledged", second: "closed"}
    logged = [json.loads(line) for line in log_lines.getvalue().splitlines() if line.startswith("{")]
    actions = [(r.get("msg"), r.get("admin"), r.get("finding")) for r in logged if r.get("finding")]
    assert ("finding acknowledged", "dana", first) in actions and ("finding closed", "dana", second) in actions


# ---- a devnet restarted fresh ----


class FreshChain:
    """A chain that knows only the transactions sent to it since it started, as a restarted devnet."""

    def __init__(self, network: str) -> None:
        self.network = network
        self.known: set[str] = set()

    async def settlement(self, tx_hash: str, *, asset: str, pay_to: str, payer: str, amount_atomic: int) -> Any:
        status = "confirmed" if tx_hash in self.known else "not_found"
        return SettlementFinding(status, self.network, tx_hash, amount_atomic, 5000, "FeePayer", status)

    async def authorization_used(self, payment_key: str) -> bool | None:
        return None

    async def find_settlement(self, payment_key: str, *, payer: str, asset: str) -> str | None:
        return None


async def _tx(pool: asyncpg.Pool, payment_id: int) -> str:
    return str(await pool.fetchval("SELECT tx_hash FROM payments WHERE id = $1", payment_id))


async def test_sales_on_an_earlier_devnet_instance_are_not_findings(fresh: FreshDatabase) -> None:
    pool = fresh.pool
    before_any = await settle_new(pool, record(network=SOLANA))  # older than any recorded instance
    assert await epochs.record(pool, SOLANA, "first")
    assert not await epochs.record(pool, SOLANA, "first")  # the same instance again starts nothing
    old = [await settle_new(pool, record(network=SOLANA)) for _ in range(3)]
    old_evm = await settle_new(pool, record(network=EVM))  # a network with no instances: as before

    assert await epochs.record(pool, SOLANA, "second")  # the devnet restarted fresh
    new = await settle_new(pool, record(network=SOLANA))
    chain = FreshChain(SOLANA)
    chain.known.add(await _tx(pool, new))
    evm_chain = FreshChain(EVM)
    report = await Reconciler(pool, {SOLANA: chain, EVM: evm_chain}, AT_ONCE).run("cli")

    flagged = {f.payment_id for f in await audit.open_flags(pool, 100)}
    assert not flagged & set(old)  # the forgotten sales: a reset, not a loss
    assert report.chain_reset == 3
    # what nothing says was on another instance is still flagged: a payment before any instance was
    # recorded, and the network without instances; the new instance's sale is confirmed, not flagged
    assert flagged == {before_any, old_evm} and report.flagged == 2

    loaded = await epochs.load(pool)
    assert [loaded.from_earlier_instance(SOLANA, p) for p in (before_any, *old, new)] == [
        False,
        True,
        True,
        True,
        False,
    ]
    assert not loaded.from_earlier_instance(EVM, old_evm)
    assert await epochs.record(pool, SOLANA, "first")  # back to an earlier instance: its sales count again
    again = await epochs.load(pool)
    assert [again.from_earlier_instance(SOLANA, p) for p in (*old, new)] == [False, False, False, True]


def test_devnet_json_names_each_instance_and_is_private(tmp_path: Path) -> None:
    state = {"evm": {"network": EVM, "payer_private_key": "0x" + "1" * 64}, "svm": {"network": SOLANA}}
    first = write_devnet_state(tmp_path, state, evm_kept=False)
    path = tmp_path / "devnet.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert devnet_state(tmp_path) == first and first["evm"]["instance"] != first["svm"]["instance"]
    path.chmod(0o644)  # a file left readable by an older version is made private again
    kept = write_devnet_state(tmp_path, state, evm_kept=True)
    assert path.stat().st_mode & 0o777 == 0o600
    assert kept["evm"]["instance"] == first["evm"]["instance"]  # anvil's state was reloaded: the same chain
    assert kept["svm"]["instance"] != first["svm"]["instance"]  # the Solana devnet always starts fresh
    fresh_evm = write_devnet_state(tmp_path, state, evm_kept=False)
    assert fresh_evm["evm"]["instance"] not in (first["evm"]["instance"], kept["evm"]["instance"])
    assert "instance" not in state["evm"]  # the caller's dict is left alone
    assert not list(tmp_path.glob(".devnet.json.*"))  # no temporary file left behind
