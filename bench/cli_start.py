"""How fast the `worldgate` command starts, against a bare Python start, in one run on this machine.

Each command runs N times as a subprocess (time.perf_counter around subprocess.run); the median is
printed, then ratios like `cli_version_vs_python=1.4`. With --pay-url URL (a gateway whose devnet wrote
devnet.json, e.g. `make serve`), `worldgate pay --header-only --devnet URL` is timed too, against
importing and running the signing alone (`payments.evm.client`), which sets its floor.

    .venv/bin/python bench/cli_start.py [--runs 15] [--pay-url http://127.0.0.1:8402/v1/streams/static.capitals]

`--importtime` prints the slowest imports of a command (python -X importtime), to find what to defer.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
WORLDGATE = [PYTHON, "-m", "app"]


def median_s(command: list[str], runs: int, env: dict[str, str]) -> float:
    subprocess.run(command, cwd=ROOT, env=env, capture_output=True, check=False)  # warm the file cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command[2:])} failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    return statistics.median(times)


def slowest_imports(command: list[str], env: dict[str, str], top: int = 15) -> list[str]:
    done = subprocess.run(
        [PYTHON, "-X", "importtime", *command[1:]], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    rows = []
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line.split("|")
            if cumulative.strip().isdigit():
                rows.append((int(cumulative), name.rstrip()))
    return [f"{us / 1000:8.1f} ms {name}" for us, name in sorted(rows, reverse=True)[:top]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--pay-url", help="a paid URL on a gateway run by `make serve` (its devnet.json is used)")
    parser.add_argument("--importtime", action="store_true", help="also print each command's slowest imports")
    args = parser.parse_args()
    env = dict(os.environ)

    commands = {
        "python": [PYTHON, "-c", "import asyncio"],
        "cli_version": [*WORLDGATE, "--version"],
        "cli_help": [*WORLDGATE, "--help"],
        "cli_pay_help": [*WORLDGATE, "pay", "--help"],
    }
    if args.pay_url:
        commands["signing_alone"] = [PYTHON, "-c", "from payments.evm import client"]
        commands["cli_pay_header_only"] = [*WORLDGATE, "pay", "--header-only", "--devnet", args.pay_url]
    medians = {name: median_s(command, args.runs, env) for name, command in commands.items()}
    for name, seconds in medians.items():
        print(f"{name:<22} {seconds * 1000:8.1f} ms (median of {args.runs})")
    for name in ("cli_version", "cli_help", "cli_pay_help"):
        print(f"{name}_vs_python={medians[name] / medians['python']:.1f}")
    if args.pay_url:
        extra_ms = (medians["cli_pay_header_only"] - medians["signing_alone"]) * 1000
        print(f"cli_pay_header_only_vs_signing={medians['cli_pay_header_only'] / medians['signing_alone']:.1f}")
        print(f"cli_pay_header_only_minus_signing_ms={extra_ms:.0f}")
    if args.importtime:
        for name, command in commands.items():
            print(f"\n{name}: slowest imports (cumulative)")
            print("\n".join(slowest_imports(command, env)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
