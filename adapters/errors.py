"""What can go wrong upstream, as one small tree the cache tier acts on."""

from __future__ import annotations


class UpstreamError(Exception):
    """An upstream call gave no usable data. `kind` says how, for negative caching and the circuit."""

    def __init__(self, source: str, kind: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source
        self.kind = kind  # "status" | "timeout" | "unreachable" | "malformed" | "too_large"
        self.message = message


class ParseError(ValueError):
    """An upstream body that does not have the documented shape."""
