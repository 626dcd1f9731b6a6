"""A clean clone stays clean and its keys private: what the README's walk-through writes (payer keys,
`.worldgate/`) is ignored by git, nothing tracked is, and the state dir's key files are mode 0600."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from app.edge.admin.auth import SECRET_FILE, ensure_secret
from app.runtime.devnet_file import write_devnet_state, write_private

ROOT = Path(__file__).resolve().parents[1]
IGNORED = [
    "payer.key",  # the README's walk-through, EVM
    "sol.key",  # and Solana
    ".worldgate/devnet.json",
    f".worldgate/{SECRET_FILE}",
    ".worldgate/pg/PG_VERSION",
    ".worldgate/anvil-state.json",
]
KEPT = ["README.md", "app/cli/operator.py", "migrations/0006_findings_and_chain_epochs.sql", "docs/examples/pay.py"]


def _check_ignore(paths: list[str]) -> set[str]:
    done = subprocess.run(
        ["git", "check-ignore", "--no-index", *paths], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode in (0, 1), done.stderr  # 1: none of them is ignored
    return set(done.stdout.split())


@pytest.fixture(scope="module")
def in_git() -> None:
    if subprocess.run(["git", "rev-parse"], cwd=ROOT, capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")


def test_what_the_walk_through_writes_is_ignored(in_git: None) -> None:
    assert _check_ignore(IGNORED) == set(IGNORED)
    assert _check_ignore(KEPT) == set()


def test_nothing_tracked_is_ignored(in_git: None) -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "-ci", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert tracked.returncode == 0 and tracked.stdout == ""


def test_key_files_in_the_state_dir_are_private(tmp_path: Path) -> None:
    secret = ensure_secret(tmp_path)
    assert secret.stat().st_mode & 0o777 == 0o600
    write_devnet_state(
        tmp_path, {"evm": {"network": "eip155:84532", "payer_private_key": "0x" + "2" * 64}}, evm_kept=False
    )
    assert (tmp_path / "devnet.json").stat().st_mode & 0o777 == 0o600
    loose = tmp_path / "loose.txt"
    loose.write_text("old")
    loose.chmod(0o664)
    write_private(loose, "new")
    assert loose.read_text() == "new" and loose.stat().st_mode & 0o777 == 0o600


def test_an_admin_secret_left_readable_is_made_private(tmp_path: Path) -> None:
    from app.cli.command_settings import with_admin_secret
    from app.runtime.settings import Settings

    secret = ensure_secret(tmp_path)
    secret.chmod(0o644)  # as an older version, or a copy, may have left it
    resolved = with_admin_secret(Settings(state_dir=tmp_path))
    assert resolved.admin.secret == secret.read_text().strip()
    assert secret.stat().st_mode & 0o777 == 0o600
