"""Revenue reports: settled revenue (read from the journal) and payment outcomes, grouped and rendered.

Amounts stay integers in atomic units end to end; the USDC column is formatted from them with
Decimal, never float. Every revenue asset worldgate sells for is USDC (6 decimals), so atomic
sums across networks are still one unit.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from decimal import Decimal

import asyncpg

from .errors import LedgerError, translated
from .sql import queries

USDC_DECIMALS = 6
_WHEN = "COALESCE(pay.settled_at, pay.created_at) AT TIME ZONE 'UTC'"
GROUPS: dict[str, str] = {
    "hour": f"to_char(date_trunc('hour', {_WHEN}), 'YYYY-MM-DD\"T\"HH24:00\"Z\"')",
    "day": f"to_char(date_trunc('day', {_WHEN}), 'YYYY-MM-DD')",
    "week": f"to_char(date_trunc('week', {_WHEN}), 'IYYY-\"W\"IW')",
    "route": "pay.route",
    "stream": "COALESCE(pay.stream, pay.resource)",  # a composite like /v1/world has no single stream
    "network": "pay.network",
    "asset": "pay.network || '/' || pay.asset",
    "payer": "pay.payer",
}
FORMATS = ("table", "csv", "json")


@dataclass(frozen=True, slots=True)
class ReportRow:
    key: str
    settled: int
    pending: int
    failed: int
    released: int
    in_flight: int
    revenue_atomic: int
    gas_cost_atomic: int


async def report(pool: asyncpg.Pool, group_by: str, since: datetime, until: datetime) -> list[ReportRow]:
    if group_by not in GROUPS:
        raise LedgerError(f"cannot group by {group_by!r}; choose one of {', '.join(GROUPS)}")
    statement = queries["report"].replace("/*group*/", GROUPS[group_by])
    with translated():
        rows = await pool.fetch(statement, since, until)
    return [ReportRow(**dict(row)) for row in rows]


def totals(rows: list[ReportRow]) -> ReportRow:
    sums = {f.name: sum(getattr(r, f.name) for r in rows) for f in fields(ReportRow) if f.name != "key"}
    return ReportRow(key="TOTAL", **sums)


def usdc(atomic: int) -> str:
    return f"{Decimal(atomic).scaleb(-USDC_DECIMALS):.{USDC_DECIMALS}f}"


def render(rows: list[ReportRow], fmt: str, group_by: str) -> str:
    if fmt == "json":
        return json.dumps(
            {
                "group_by": group_by,
                "rows": [{**asdict(r), "revenue_usdc": usdc(r.revenue_atomic)} for r in rows],
                "totals": {**asdict(totals(rows)), "revenue_usdc": usdc(totals(rows).revenue_atomic)},
            },
            indent=2,
        )
    header = [
        group_by,
        "settled",
        "pending",
        "failed",
        "released",
        "in_flight",
        "revenue_usdc",
        "revenue_atomic",
        "gas_native",  # wei on EVM, lamports on Solana: atomic units of the network's native coin
    ]

    def cells(row: ReportRow) -> list[str]:
        return [
            row.key,
            str(row.settled),
            str(row.pending),
            str(row.failed),
            str(row.released),
            str(row.in_flight),
            usdc(row.revenue_atomic),
            str(row.revenue_atomic),
            str(row.gas_cost_atomic),
        ]

    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(cells(r) for r in rows)
        return out.getvalue()
    if fmt != "table":
        raise LedgerError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    table = [header, *(cells(r) for r in rows), cells(totals(rows))]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))
        )

    rule = "  ".join("-" * w for w in widths)
    body = [line(table[0]), rule, *(line(r) for r in table[1:-1]), rule, line(table[-1])]
    return "\n".join(body) + "\n"
