"""Every ledger statement lives in a .sql file here as a named, commented block; this loads them by name.

queries.sql holds the payment path's and the books' statements; operator.sql the operator's
controls and searches. Names are unique across the files. They are package data, read through
`importlib.resources`, so an installed wheel carries them.
"""

from __future__ import annotations

import re
from importlib import resources
from importlib.resources.abc import Traversable

_BLOCK = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def _load(path: Traversable) -> dict[str, str]:
    text = path.read_text(encoding="utf-8")
    names = list(_BLOCK.finditer(text))
    queries: dict[str, str] = {}
    for match, following in zip(names, [*names[1:], None], strict=True):
        body = text[match.end() : following.start() if following else len(text)]
        statement = "\n".join(line for line in body.splitlines() if not line.lstrip().startswith("--")).strip()
        assert match.group(1) not in queries, f"query {match.group(1)} is defined twice"
        queries[match.group(1)] = statement.rstrip(";")
    return queries


def _load_all(directory: Traversable) -> dict[str, str]:
    merged: dict[str, str] = {}
    for path in sorted((p for p in directory.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name):
        loaded = _load(path)
        clash = merged.keys() & loaded.keys()
        assert not clash, f"queries defined twice: {sorted(clash)}"
        merged.update(loaded)
    return merged


queries: dict[str, str] = _load_all(resources.files("ledger"))
