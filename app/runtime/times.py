"""Times operators type: a date (2026-11-22, midnight UTC) or an ISO time (UTC if it names no zone)."""

from __future__ import annotations

from datetime import UTC, date, datetime


def parse_when(text: str | None, default: datetime) -> datetime:
    """Raises ValueError with a message fit to show."""
    if not text:
        return default
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is neither a date (2026-11-22) nor an ISO time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
