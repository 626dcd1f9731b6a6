"""The house rules that code review alone would let slip: domain boundaries and the committed artifacts."""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOMAINS = ("payments", "adapters", "ledger")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("domain", DOMAINS)
def test_domains_never_import_each_other_or_the_app(domain: str) -> None:
    forbidden = {*DOMAINS, "app", "tests"} - {domain}
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & forbidden)
        for path in (ROOT / domain).rglob("*.py")
        if _imports(path) & forbidden
    }
    assert offenders == {}


def test_payments_does_not_import_starlette() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "payments").rglob("*.py") if "starlette" in _imports(p)]
    assert offenders == []


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_contract_artifacts_are_compiled_from_the_committed_sources() -> None:
    """`make contracts` writes the artifacts; this recompiles with npm solc and compares byte for byte."""
    result = subprocess.run(
        ["node", "payments/devnet/contracts/compile.cjs", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
