"""Declare what you import, import what you declare.

Every `import` in the product's packages (AST, so conditional and function-level imports count too) is
mapped to the distribution that provides it (`importlib.metadata.packages_distributions()`); that set
must be exactly `[project].dependencies` plus the `dev` extra (embedded Postgres/Redis, imported lazily
and only by app/runtime/embedded.py). tests/ and bench/ may import only what is declared, and the test
extra declares nothing they do not use. uv.lock must match pyproject.toml.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("app", "payments", "adapters", "ledger")
FIRST_PARTY = {*PRODUCT, "migrations", "tests", "bench"}
EMBEDDED = "app/runtime/embedded.py"  # the one module that may import the `dev` extra

# Declared for the product but never imported by name. Each entry says why it is still needed.
# (uvicorn[standard]'s httptools, uvloop, websockets and watchfiles need no entry: they are an extra of a
# declared distribution, not declarations of their own; `serve` uses them through uvicorn.)
PRODUCT_DECLARED_NOT_IMPORTED: dict[str, str] = {}

# Declared in the test extra but never imported by tests/ or bench/: tools run as programs or plugins.
TEST_TOOLS: dict[str, str] = {
    "pytest-asyncio": "a pytest plugin (asyncio_mode = auto), loaded by pytest, never imported",
    "ruff": "`make lint` runs it as a program",
    "uv": "tests/test_artifact.py runs it as a program (build, export, venv)",
}

# Run by the official Python clients' own venv (.venv-x402-svm, the Makefile's PY_CLIENTS_REQUIREMENTS:
# x402[svm] and mcp 1.x, which cannot share .venv), not by this one: their imports are that venv's business.
SIDE_VENV_DIR = "tests/clients"


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return _normalized(match.group(1))


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _declared(group: str | None = None) -> set[str]:
    project = _project()
    requirements = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return {_requirement_name(r) for r in requirements}


def _import_nodes(path: Path) -> list[tuple[str, ast.stmt, bool]]:
    """(top-level module, node, at module level) for every absolute import in `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name.split(".")[0], node, id(node) in top_level) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], node, id(node) in top_level))
    return found


def _python_files(*folders: str, skip: str | None = None) -> list[Path]:
    files = [p for folder in folders for p in sorted((ROOT / folder).rglob("*.py"))]
    return [p for p in files if skip is None or not p.relative_to(ROOT).as_posix().startswith(skip + "/")]


def _third_party(files: list[Path], declared: set[str]) -> dict[str, set[str]]:
    """distribution → the files importing it; a module no installed distribution provides maps to `?module`."""
    providers = importlib.metadata.packages_distributions()
    used: dict[str, set[str]] = defaultdict(set)
    for path in files:
        for module, _node, _top in _import_nodes(path):
            if module in sys.stdlib_module_names or module in FIRST_PARTY:
                continue
            candidates = {_normalized(d) for d in providers.get(module, [])}
            chosen = (candidates & declared) or candidates or {f"?{module}"}
            for distribution in chosen:
                used[distribution].add(path.relative_to(ROOT).as_posix())
    return dict(used)


def test_product_imports_exactly_what_it_declares() -> None:
    declared = _declared() | _declared("dev")
    imported = _third_party(_python_files(*PRODUCT), declared)
    undeclared = {d: sorted(files) for d, files in imported.items() if d not in declared}
    unused = declared - imported.keys() - PRODUCT_DECLARED_NOT_IMPORTED.keys()
    assert undeclared == {}, "imported by the product but not in [project].dependencies"
    assert unused == set(), "declared but imported nowhere in app/, payments/, adapters/, ledger/"
    assert not PRODUCT_DECLARED_NOT_IMPORTED.keys() & imported.keys(), "an allowlist entry is imported after all"


def test_the_dev_extra_is_imported_lazily_and_only_for_the_embedded_services() -> None:
    """A production install (no `dev` extra) imports every module; only starting an embedded service needs it."""
    dev = _declared("dev")
    assert dev, "the dev extra is empty"
    assert not dev & _declared(), "the dev extra's packages are also production dependencies"
    providers = importlib.metadata.packages_distributions()
    seen = set()
    for path in _python_files(*PRODUCT):
        for module, node, top in _import_nodes(path):
            distributions = {_normalized(d) for d in providers.get(module, [])} & dev
            if not distributions:
                continue
            seen |= distributions
            where = f"{path.relative_to(ROOT).as_posix()}:{node.lineno}"
            assert path.relative_to(ROOT).as_posix() == EMBEDDED, f"{where} imports the dev extra's {module}"
            assert not top, f"{where} imports {module} at module level: import it where the service starts"
    assert seen == dev


def test_every_product_module_imports_without_the_dev_extra() -> None:
    """What a wheel installed without `[dev]` can do: import each module with the dev packages hidden."""
    dev_modules = {
        module
        for module, distributions in importlib.metadata.packages_distributions().items()
        if {_normalized(d) for d in distributions} & _declared("dev")
    }
    modules = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in _python_files(*PRODUCT)
        if path.name != "__main__.py"
    )
    script = (
        "import importlib, sys\n"
        f"for name in {sorted(dev_modules)!r}:\n"
        "    sys.modules[name] = None  # `import name` now raises ImportError, as without the extra\n"
        f"for module in {modules!r}:\n"
        "    importlib.import_module(module)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_tests_and_bench_import_only_what_is_declared() -> None:
    declared_for_product = _declared() | _declared("dev")
    test_extra = _declared("test")
    declared = declared_for_product | test_extra
    imported = _third_party(_python_files("tests", "bench", skip=SIDE_VENV_DIR), declared)
    undeclared = {d: sorted(files) for d, files in imported.items() if d not in declared}
    unused = test_extra - imported.keys() - TEST_TOOLS.keys()
    assert undeclared == {}, "imported by tests/ or bench/ but declared nowhere (add it to the test extra)"
    assert unused == set(), "in the test extra but imported by no test (remove it, or list it in TEST_TOOLS)"


def test_uv_lock_matches_pyproject() -> None:
    """uv.lock (what the container installs) is current: after editing dependencies, run `uv lock`."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        pytest.fail("uv is not installed: `make install` puts it in .venv (it is in the test extra)")
    result = subprocess.run(
        [uv, "lock", "--check", "--offline"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"uv.lock is stale, run `uv lock`:\n{result.stderr[-2000:]}"
