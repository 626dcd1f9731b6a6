"""The International Space Station's position from wheretheiss.at (free keyless API; no data licence published).

Documented at wheretheiss.at/w/developer: GET /v1/satellites/25544 answers one object,
`{"name": "iss", "id": 25544, "latitude", "longitude", "altitude", "velocity", "visibility",
"footprint", "timestamp" (epoch seconds), "daynum", "solar_lat", "solar_lon", "units"}`, with
altitude and footprint in km and velocity in km/h while `units` is "kilometers" (the default).
"""

from __future__ import annotations

from ..errors import ParseError
from ..records import Record
from .base import Point, UpstreamRequest, iso_from_s, load_json, number, optional_number

LICENSE = "wheretheiss.at public API terms (no data licence published)"
ATTRIBUTION = "ISS position from wheretheiss.at"
SOURCE = "wheretheiss.at"

STREAM = "iss.position"
NORAD_ID = 25544


class IssPosition:
    name = "iss.position"
    host = "api.wheretheiss.at"
    point = False
    streams = (STREAM,)

    def request(self, point: Point | None) -> UpstreamRequest:
        return UpstreamRequest(self.host, f"/v1/satellites/{NORAD_ID}")

    def parse(self, body: bytes, point: Point | None) -> dict[str, list[Record]]:
        document = load_json(body)
        if not isinstance(document, dict):
            raise ParseError("not a wheretheiss.at satellite object")
        if document.get("units") != "kilometers":
            raise ParseError(f"units are {document.get('units')!r}, not 'kilometers'")
        try:
            timestamp, lat, lon = document["timestamp"], document["latitude"], document["longitude"]
        except KeyError as exc:
            raise ParseError(f"the position lacks {exc}") from None
        seconds = number(timestamp, "timestamp")
        try:
            observed_at = iso_from_s(seconds)
        except (OverflowError, OSError, ValueError):
            raise ParseError(f"timestamp {timestamp!r} is out of range") from None
        record = Record(
            stream=STREAM,
            observed_at=observed_at,
            lat=number(lat, "latitude"),
            lon=number(lon, "longitude"),
            fields={
                "altitude_km": optional_number(document.get("altitude")),
                "velocity_kmh": optional_number(document.get("velocity")),
                "visibility": document.get("visibility"),
                "footprint_km": optional_number(document.get("footprint")),
            },
            source=SOURCE,
        )
        return {STREAM: [record]}
