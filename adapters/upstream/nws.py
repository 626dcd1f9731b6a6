"""NOAA National Weather Service: active watches, warnings and advisories in the United States (public domain).

Documented at www.weather.gov/documentation/services-web-api (the `/alerts/active` endpoint, CAP 1.2 alerts as
GeoJSON): GET api.weather.gov/alerts/active?status=actual answers a FeatureCollection whose features carry
`properties` (`id`, `areaDesc`, `sent`, `effective`, `onset`, `expires`, `ends`, `status`, `messageType`,
`category`, `severity`, `certainty`, `urgency`, `event`, `senderName`, `headline`, `description`, ...) and a
`geometry` that is a Polygon for storm-based warnings and null for alerts issued by zone (their area is in
`areaDesc` and `affectedZones`). The service asks every client for a User-Agent naming it (the fetcher sends one).

A polygon alert is located at the mean of its outer ring's vertices; a zone alert has no position (lat/lon null),
so a bbox or radius filter leaves it out.
"""

from __future__ import annotations

from typing import Any

from ..errors import ParseError
from ..records import Record
from .base import Point, UpstreamRequest, iso, load_json, number

LICENSE = "Public domain (US Government work)"
ATTRIBUTION = "NOAA National Weather Service"
SOURCE = "NOAA NWS"
HOST = "api.weather.gov"
STREAM = "alerts.nws"


def _centre(geometry: Any) -> tuple[float | None, float | None]:
    if geometry is None:
        return None, None
    if not isinstance(geometry, dict) or geometry.get("type") != "Polygon":
        raise ParseError(f"an alert's geometry is {str(geometry)[:60]!r}, not a Polygon or null")
    try:
        ring = geometry["coordinates"][0]
        points = [(number(p[1], "latitude"), number(p[0], "longitude")) for p in ring]
    except (KeyError, IndexError, TypeError):
        raise ParseError("an alert's polygon has no outer ring of [lon, lat] points") from None
    if not points:
        raise ParseError("an alert's polygon is empty")
    if len(points) > 1 and points[0] == points[-1]:
        points = points[:-1]  # a closed ring repeats its first vertex
    return round(sum(p[0] for p in points) / len(points), 4), round(sum(p[1] for p in points) / len(points), 4)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class NwsAlerts:
    name = "nws.alerts"
    host = HOST
    point = False
    streams = (STREAM,)

    def request(self, point: Point | None) -> UpstreamRequest:
        return UpstreamRequest(self.host, "/alerts/active", (("status", "actual"),))

    def parse(self, body: bytes, point: Point | None) -> dict[str, list[Record]]:
        document = load_json(body)
        if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
            raise ParseError("not a GeoJSON FeatureCollection of alerts")
        features = document.get("features")
        if not isinstance(features, list):
            raise ParseError("features is not a list")
        records = []
        for feature in features:
            properties = feature.get("properties") if isinstance(feature, dict) else None
            if not isinstance(properties, dict):
                raise ParseError("an alert has no properties")
            lat, lon = _centre(feature.get("geometry"))
            fields = {
                "id": _text(properties.get("id")),
                "event": _text(properties.get("event")),
                "severity": _text(properties.get("severity")),
                "urgency": _text(properties.get("urgency")),
                "certainty": _text(properties.get("certainty")),
                "message_type": _text(properties.get("messageType")),
                "headline": _text(properties.get("headline")),
                "area": _text(properties.get("areaDesc")),
                "sender": _text(properties.get("senderName")),
                "effective": _text(properties.get("effective")),
                "expires": _text(properties.get("expires")),
            }
            records.append(Record(STREAM, iso(properties.get("sent")), lat, lon, fields, SOURCE))
        return {STREAM: records}
