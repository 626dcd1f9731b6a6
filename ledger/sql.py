"""Every ledger statement lives in queries.sql as a named, commented block; this loads them by name."""

from __future__ import annotations

import re
from pathlib import Path

_BLOCK = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def _load(path: Path) -> dict[str, str]:
    text = path.read_text()
    names = list(_BLOCK.finditer(text))
    queries: dict[str, str] = {}
    for match, following in zip(names, [*names[1:], None], strict=True):
        body = text[match.end() : following.start() if following else len(text)]
        statement = "\n".join(line for line in body.splitlines() if not line.lstrip().startswith("--")).strip()
        assert match.group(1) not in queries, f"query {match.group(1)} is defined twice"
        queries[match.group(1)] = statement.rstrip(";")
    return queries


queries: dict[str, str] = _load(Path(__file__).with_name("queries.sql"))
