"""NASA EONET v3: open natural events (storms, wildfires, volcanoes, sea ice...) (US public domain).

Documented at eonet.gsfc.nasa.gov/docs/v3: GET /api/v3/events?status=open&limit=N answers
`{"title", "description", "link", "events": [...]}`; each event has `id` ("EONET_15859"), `title`,
`link`, `categories` ([{id, title}]), `sources` ([{id, url}]) and `geometry`, a list of dated
positions `{"magnitudeValue", "magnitudeUnit", "date" (ISO 8601 UTC), "type": "Point" or
"Polygon", "coordinates"}`, one per observation (a storm's track, a fire's updates).
"""

from __future__ import annotations

from typing import Any

from ..errors import ParseError
from ..records import Record
from .base import Point, UpstreamRequest, iso, load_json, number, optional_number

LICENSE = "US-Government-Public-Domain"
ATTRIBUTION = "NASA Earth Observatory Natural Event Tracker (EONET)"
SOURCE = "NASA EONET"

STREAM = "events.eonet"
LIMIT = 200


def _latest_point(geometries: Any) -> dict[str, Any] | None:
    """The event's most recent Point observation, or None if it has none (polygons only)."""
    if not isinstance(geometries, list):
        raise ParseError("an event's `geometry` is not an array")
    points = [g for g in geometries if isinstance(g, dict) and g.get("type") == "Point"]
    if not points:
        return None
    return max(points, key=lambda g: iso(g.get("date")))


def _first(items: Any, key: str) -> Any:
    if isinstance(items, list) and items and isinstance(items[0], dict):
        return items[0].get(key)
    return None


class EonetEvents:
    name = "nasa-eonet.events"
    host = "eonet.gsfc.nasa.gov"
    point = False
    streams = (STREAM,)

    def request(self, point: Point | None) -> UpstreamRequest:
        return UpstreamRequest(self.host, "/api/v3/events", (("status", "open"), ("limit", str(LIMIT))))

    def parse(self, body: bytes, point: Point | None) -> dict[str, list[Record]]:
        document = load_json(body)
        if not isinstance(document, dict) or not isinstance(document.get("events"), list):
            raise ParseError("not an EONET events document")
        records = []
        for event in document["events"]:
            try:
                latest = _latest_point(event["geometry"])
                if latest is None:
                    continue
                coordinates = latest["coordinates"]
                records.append(
                    Record(
                        stream=STREAM,
                        observed_at=iso(latest["date"]),
                        lat=number(coordinates[1], "latitude"),
                        lon=number(coordinates[0], "longitude"),
                        fields={
                            "id": event["id"],
                            "title": event.get("title"),
                            "category": _first(event.get("categories"), "id"),
                            "category_title": _first(event.get("categories"), "title"),
                            "magnitude": optional_number(latest.get("magnitudeValue")),
                            "magnitude_unit": latest.get("magnitudeUnit"),
                            "source_url": _first(event.get("sources"), "url") or event.get("link"),
                        },
                        source=SOURCE,
                    )
                )
            except (KeyError, IndexError, TypeError, AttributeError) as exc:
                raise ParseError(f"an event lacks {exc}") from None
        return {STREAM: records}
