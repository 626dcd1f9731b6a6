"""The house rules that code review alone would let slip: domain boundaries, the app's layers, no import
cycle, module sizes, and the committed artifacts."""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOMAINS = ("payments", "adapters", "ledger")
PRODUCT = ("app", *DOMAINS)
LINES_MAX = 500
APP_ENTRIES_MAX = 8  # modules and subpackages directly in app/
APP_LAYERS = ("cli", "edge", "mcp", "runtime", "usecases")


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


# ---- the product's module import graph ----


def _product_files() -> list[Path]:
    return sorted(path for package in PRODUCT for path in (ROOT / package).rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """The product modules an import statement loads: `from x import y` loads x.y when y is a submodule, else x;
    `import a.b.c` loads a.b.c (or, short of a module of that name, its closest package)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:  # relative: resolved against this module's package
            package = module.split(".") if is_package else module.split(".")[:-1]
            base = ".".join(package[: len(package) - node.level + 1])
            source = f"{base}.{node.module}" if node.module else base
        else:
            source = node.module or ""
        names = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source for alias in node.names]
    found = set()
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)
    return found


def _import_graph() -> dict[str, set[str]]:
    """Product module → the product modules it imports anywhere in its file (module level, in functions, under
    TYPE_CHECKING): an import inside a function still ties the two modules together."""
    files = {_module_name(path): path for path in _product_files()}
    modules = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        graph[module] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                graph[module] |= _targets(node, module, path.name == "__init__.py", modules)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"f"}, "f": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_relative_imports_resolve_to_their_modules() -> None:
    graph = _import_graph()
    assert {"ledger.claims", "ledger.reports", "ledger.states"} <= graph["ledger"]  # from . import …, from .x import
    assert "ledger.states" in graph["ledger.claims"]  # from .states import PaymentState
    assert "app.usecases.binding" in graph["app.edge.gate"]  # from app.usecases import binding


def test_no_import_cycle_among_product_modules() -> None:
    assert _cycles(_import_graph()) == []


# ---- the app's layers ----


def _layer(module: str) -> str:
    """app.<layer>.… → the layer; the app package itself, app.wiring and app.__main__ are their own."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "app"


# What each layer may import of the app (besides itself, the domains and third parties). `app` is the root
# package (its version); the wiring and the CLI's entry point may import everything.
LAYER_MAY_IMPORT: dict[str, frozenset[str]] = {
    "runtime": frozenset({"runtime"}),
    "usecases": frozenset({"usecases", "runtime", "app"}),
    "edge": frozenset({"edge", "usecases", "runtime", "app"}),
    "mcp": frozenset({"mcp", "usecases", "runtime", "app"}),
    # the operator's CLI mints admin tokens and starts uvicorn with the edge's capped protocol
    "cli": frozenset({"cli", "wiring", "edge", "usecases", "runtime", "app"}),
}


@pytest.mark.parametrize("layer", sorted(LAYER_MAY_IMPORT))
def test_each_app_layer_imports_only_the_layers_below_it(layer: str) -> None:
    """runtime imports none of the app; use cases only runtime; edge (HTTP) and mcp are independent of each
    other; the CLI sits on top and reaches the app through wiring, the edge, use cases and runtime."""
    allowed = LAYER_MAY_IMPORT[layer]
    offenders = sorted(
        (module, target)
        for module, targets in _import_graph().items()
        if module.startswith(f"app.{layer}.") or module == f"app.{layer}"
        for target in targets
        if target.split(".")[0] == "app" and _layer(target) not in allowed
    )
    assert offenders == []


def test_use_cases_import_no_transport() -> None:
    """The use cases know neither HTTP's framework nor MCP's: no Starlette, no uvicorn, no MCP SDK."""
    transports = {"starlette", "uvicorn", "mcp", "mcp_types"}
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & transports)
        for path in (ROOT / "app" / "usecases").rglob("*.py")
        if _imports(path) & transports
    }
    assert offenders == {}


def test_the_app_has_few_top_level_modules() -> None:
    entries = [
        p.name
        for p in (ROOT / "app").iterdir()
        if (p.is_file() and p.suffix == ".py") or (p.is_dir() and (p / "__init__.py").exists())
    ]
    assert len(entries) <= APP_ENTRIES_MAX, sorted(entries)
    assert {p for p in entries if not p.endswith(".py")} <= set(APP_LAYERS), sorted(entries)


def test_no_product_module_is_over_the_line_limit() -> None:
    oversized = {
        str(path.relative_to(ROOT)): lines
        for path in _product_files()
        if (lines := len(path.read_text().splitlines())) > LINES_MAX
    }
    assert oversized == {}
