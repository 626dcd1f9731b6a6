"""Revenue reports: settled revenue (read from the journal) and payment outcomes, grouped and rendered,
and a one-screen summary of a period.

Amounts stay integers in atomic units end to end; the USDC column is formatted from them with
Decimal, never float. Every revenue asset worldgate sells for is USDC (6 decimals), so atomic
sums across networks are still one unit. Gas is not: it is in each network's native coin (wei,
lamports), so reports and the summary keep it per network, each with its unit named, and total it
only per network.

The SQL is fixed text from queries.sql; the only substitutions are whitelisted fragments (the
grouping expression and `AND <column> = $n` filter terms), and every value is a bind parameter.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import asyncpg

from .errors import LedgerError, translated
from .sql import queries
from .states import PaymentState

USDC_DECIMALS = 6


class Grouping(StrEnum):
    """What a report's rows are grouped by (`--group-by`, the admin API's `group_by`)."""

    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    ROUTE = "route"
    STREAM = "stream"
    NETWORK = "network"
    ASSET = "asset"
    PAYER = "payer"


_WHEN = "COALESCE(pay.settled_at, pay.created_at) AT TIME ZONE 'UTC'"
GROUPS: dict[Grouping, str] = {  # each grouping's SQL expression, substituted for /*group*/
    Grouping.HOUR: f"to_char(date_trunc('hour', {_WHEN}), 'YYYY-MM-DD\"T\"HH24:00\"Z\"')",
    Grouping.DAY: f"to_char(date_trunc('day', {_WHEN}), 'YYYY-MM-DD')",
    Grouping.WEEK: f"to_char(date_trunc('week', {_WHEN}), 'IYYY-\"W\"IW')",
    Grouping.ROUTE: "pay.route",
    Grouping.STREAM: "COALESCE(pay.stream, pay.resource)",  # a composite like /v1/world has no single stream
    Grouping.NETWORK: "pay.network",
    Grouping.ASSET: "pay.network || '/' || pay.asset",
    Grouping.PAYER: "pay.payer",
}
FORMATS = ("table", "csv", "json")
# Filter name -> the column it matches exactly; `stream` matches what the stream grouping groups by.
FILTERS: dict[str, str] = {
    "network": "pay.network",
    "stream": "COALESCE(pay.stream, pay.resource)",
    "payer": "pay.payer",
    "state": "pay.state",
}


def gas_unit(network: str) -> str:
    """The native atomic unit gas is booked in on `network` (CAIP-2)."""
    return {"eip155": "wei", "solana": "lamports"}.get(network.partition(":")[0], "native atomic units")


@dataclass(frozen=True, slots=True)
class ReportRow:
    key: str
    settled: int
    pending: int
    failed: int
    released: int
    in_flight: int
    revenue_atomic: int
    gas: dict[str, int] = field(default_factory=dict)  # network → gas in its native unit (see gas_unit)


COUNTS = ("settled", "pending", "failed", "released", "in_flight", "revenue_atomic")


def _filtered(name: str, since: datetime, until: datetime, filters: dict[str, str | None]) -> tuple[str, list[Any]]:
    """The named statement with /*filters*/ replaced by whitelisted terms, and its bind values."""
    unknown = set(filters) - set(FILTERS)
    if unknown:
        raise LedgerError(f"cannot filter by {', '.join(sorted(unknown))}; choose from {', '.join(FILTERS)}")
    state = filters.get("state")
    if state is not None and state not in set(PaymentState):
        raise LedgerError(f"unknown payment state {state!r}; choose one of {', '.join(PaymentState)}")
    args: list[Any] = [since, until]
    terms: list[str] = []
    for key, column in FILTERS.items():  # fixed order: the SQL text depends only on which filters are set
        value = filters.get(key)
        if value is not None:
            args.append(value)
            terms.append(f"AND {column} = ${len(args)}")
    return queries[name].replace("/*filters*/", " ".join(terms)), args


async def report(
    pool: asyncpg.Pool,
    group_by: Grouping | str,
    since: datetime,
    until: datetime,
    *,
    network: str | None = None,
    stream: str | None = None,
    payer: str | None = None,
    state: str | None = None,
) -> list[ReportRow]:
    """Payments whose settled_at (else created_at) is in [since, until), grouped; filters match exactly."""
    if group_by not in GROUPS:
        raise LedgerError(f"cannot group by {group_by!r}; choose one of {', '.join(Grouping)}")
    filters = {"network": network, "stream": stream, "payer": payer, "state": state}
    statement, args = _filtered("report", since, until, filters)
    statement = statement.replace("/*group*/", GROUPS[group_by])
    gas_statement = _filtered("report_gas", since, until, filters)[0].replace("/*group*/", GROUPS[group_by])
    with translated():
        async with pool.acquire() as connection, connection.transaction(isolation="repeatable_read", readonly=True):
            rows = await connection.fetch(statement, *args)
            gas_rows = await connection.fetch(gas_statement, *args)
    gas: dict[str, dict[str, int]] = {}
    for row in gas_rows:
        gas.setdefault(row["key"], {})[row["network"]] = int(row["gas_cost_atomic"])
    return [ReportRow(**{c: row[c] for c in ("key", *COUNTS)}, gas=gas.get(row["key"], {})) for row in rows]


def totals(rows: list[ReportRow]) -> ReportRow:
    """Counts and revenue (one unit) summed; gas summed per network only."""
    gas: dict[str, int] = {}
    for row in rows:
        for network, amount in row.gas.items():
            gas[network] = gas.get(network, 0) + amount
    return ReportRow("TOTAL", *(sum(getattr(r, c) for r in rows) for c in COUNTS), gas=gas)  # type: ignore[arg-type]


def _gas_json(gas: dict[str, int]) -> dict[str, dict[str, Any]]:
    return {n: {"amount_atomic": amount, "unit": gas_unit(n)} for n, amount in sorted(gas.items())}


def _row_json(row: ReportRow) -> dict[str, Any]:
    return {
        "key": row.key,
        **{c: getattr(row, c) for c in COUNTS},
        "revenue_usdc": usdc(row.revenue_atomic),
        "gas": _gas_json(row.gas),
    }


def gas_column(network: str) -> str:
    """A report column of one network's gas, its unit named: `gas_wei:eip155:84532`."""
    return f"gas_{gas_unit(network).replace(' ', '_')}:{network}"


def usdc(atomic: int) -> str:
    return f"{Decimal(atomic).scaleb(-USDC_DECIMALS):.{USDC_DECIMALS}f}"


def render(rows: list[ReportRow], fmt: str, group_by: str) -> str:
    if fmt == "json":
        return json.dumps(
            {"group_by": group_by, "rows": [_row_json(r) for r in rows], "totals": _row_json(totals(rows))},
            indent=2,
        )
    networks = sorted({n for r in rows for n in r.gas})
    header = [
        group_by,
        "settled",
        "pending",
        "failed",
        "released",
        "in_flight",
        "revenue_usdc",
        "revenue_atomic",
        *(gas_column(n) for n in networks),  # one column per network: never wei plus lamports
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
            *(str(row.gas.get(n, 0)) for n in networks),
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


# ---------------------------------------------------------------------------------------------
# summary: one period, every outcome, in one snapshot
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Summary:
    """Payments whose settled_at (else created_at) is in [since, until), with the same filters as `report`.

    Counts are payments; `*_atomic` amounts are USDC atomic units, except `gas_by_network` (each
    network's native atomic units: wei, lamports). `revenue_atomic` is the journal's revenue for these
    payments, net of reversals, over the `booked` sales that carry it (settled payments, and batch vouchers
    from their acceptance on, before their money moves); `settled_atomic` is what settled payments moved;
    `refunded_atomic` is what reversal entries took back from revenue.
    `pending` is charged but the money has not moved yet: an exact payment settling, or a batch voucher
    accepted or claimed on chain and not yet swept to payTo. `exposure` is data served whose money has not
    moved (served, settling, and batch vouchers not yet swept).
    `open_flags` counts unresolved reconciliation findings about these payments, by kind.
    """

    since: datetime
    until: datetime
    filters: dict[str, str]
    settled: int
    settled_atomic: int  # what the settled payments moved
    booked: int  # sales with a revenue entry: settled, and batch vouchers accepted or claimed
    revenue_atomic: int
    pending: int
    pending_atomic: int
    failed: int
    failed_atomic: int
    released: int
    released_atomic: int
    in_flight: int
    in_flight_atomic: int
    refunded: int
    refunded_atomic: int
    exposure: int
    exposure_atomic: int
    gas_by_network: dict[str, int]
    open_flags: dict[str, int]


# (row label, count field, amount field), in the order rendered
SUMMARY_OUTCOMES = (
    ("revenue", "booked", "revenue_atomic"),
    ("settled", "settled", "settled_atomic"),
    ("pending", "pending", "pending_atomic"),
    ("failed", "failed", "failed_atomic"),
    ("released", "released", "released_atomic"),
    ("in_flight", "in_flight", "in_flight_atomic"),
    ("refunded", "refunded", "refunded_atomic"),
    ("exposure", "exposure", "exposure_atomic"),
)


async def summary(
    pool: asyncpg.Pool,
    since: datetime,
    until: datetime,
    *,
    network: str | None = None,
    stream: str | None = None,
    payer: str | None = None,
    state: str | None = None,
) -> Summary:
    filters = {"network": network, "stream": stream, "payer": payer, "state": state}
    outcomes_sql, args = _filtered("summary_outcomes", since, until, filters)
    gas_sql, _ = _filtered("summary_gas", since, until, filters)
    flags_sql, _ = _filtered("summary_open_flags", since, until, filters)
    with translated():
        async with pool.acquire() as connection, connection.transaction(isolation="repeatable_read", readonly=True):
            outcomes = await connection.fetchrow(outcomes_sql, *args)
            gas = await connection.fetch(gas_sql, *args)
            flags = await connection.fetch(flags_sql, *args)
    assert outcomes is not None
    return Summary(
        since=since,
        until=until,
        filters={k: v for k, v in filters.items() if v is not None},
        **dict(outcomes),
        gas_by_network={row["network"]: row["gas_cost_atomic"] for row in gas},
        open_flags={row["kind"]: row["open"] for row in flags},
    )


def summary_rows(s: Summary) -> list[dict[str, str]]:
    """The summary as long rows (section, key, count, amount_atomic, amount_usdc), as csv and table show it."""
    rows = [
        {
            "section": "payments",
            "key": label,
            "count": str(getattr(s, count)),
            "amount_atomic": str(getattr(s, amount)),
            "amount_usdc": usdc(getattr(s, amount)),
        }
        for label, count, amount in SUMMARY_OUTCOMES
    ]
    rows += [  # the section names the unit: gas_wei, gas_lamports
        {
            "section": f"gas_{gas_unit(network)}",
            "key": network,
            "count": "",
            "amount_atomic": str(gas),
            "amount_usdc": "",
        }
        for network, gas in sorted(s.gas_by_network.items())
    ]
    rows += [
        {"section": "open_flags", "key": kind, "count": str(n), "amount_atomic": "", "amount_usdc": ""}
        for kind, n in sorted(s.open_flags.items())
    ]
    return rows


SUMMARY_COLUMNS = ("section", "key", "count", "amount_atomic", "amount_usdc")


def render_summary(s: Summary, fmt: str) -> str:
    if fmt == "json":
        document: dict[str, Any] = {
            "since": s.since.isoformat(),
            "until": s.until.isoformat(),
            "filters": s.filters,
            "payments": {
                label: {
                    "count": getattr(s, count),
                    "amount_atomic": getattr(s, amount),
                    "amount_usdc": usdc(getattr(s, amount)),
                }
                for label, count, amount in SUMMARY_OUTCOMES
            },
            "gas": _gas_json(s.gas_by_network),
            "open_flags": dict(sorted(s.open_flags.items())),
        }
        return json.dumps(document, indent=2)
    rows = summary_rows(s)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()
    if fmt != "table":
        raise LedgerError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    table = [list(SUMMARY_COLUMNS), *([row[c] for c in SUMMARY_COLUMNS] for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(SUMMARY_COLUMNS))]

    def line(values: list[str]) -> str:
        cells = zip(values, widths, strict=True)
        return "  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(cells))

    window = f"{s.since.isoformat()} .. {s.until.isoformat()}"
    scope = " ".join(f"{k}={v}" for k, v in s.filters.items())
    head = f"summary {window}" + (f" ({scope})" if scope else "")
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([head, line(table[0]), rule, *(line(r).rstrip() for r in table[1:])]) + "\n"
