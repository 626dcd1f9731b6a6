"""NOAA National Hurricane Center: active tropical cyclones in the Atlantic and eastern and central Pacific
(US public domain).

Documented at www.nhc.noaa.gov/productexamples/NHC_JSON_Sample.json (the format of /CurrentStorms.json):
`{"activeStorms": [...]}`, one object per storm: `id` ("al052026"), `binNumber`, `name`, `classification`
(TD, TS, HU, STD, STS, PTC, PC), `intensity` (maximum sustained wind, knots) and `pressure` (minimum central
pressure, mb), both as strings of digits, `latitudeNumeric`/`longitudeNumeric` (degrees, west negative),
`movementDir` (degrees) and `movementSpeed` (mph), `lastUpdate` (ISO 8601 UTC), and links to the advisory
products (`publicAdvisory.url`, ...). Out of season the list is empty.
"""

from __future__ import annotations

from typing import Any

from ..errors import ParseError
from ..records import Record
from .base import Point, UpstreamRequest, iso, load_json, number, optional_number

LICENSE = "Public domain (US Government work)"
ATTRIBUTION = "NOAA National Hurricane Center"
SOURCE = "NOAA NHC"
HOST = "www.nhc.noaa.gov"
STREAM = "storms.tropical"


def _count(value: Any, what: str) -> float | None:
    """A value NHC writes as a string of digits (or, in some products, a number); "" or null: not given."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ParseError(f"{what} is {value!r}, not a number") from None
    return number(value, what)


class NhcActiveStorms:
    name = "nhc.storms"
    host = HOST
    point = False
    streams = (STREAM,)

    def request(self, point: Point | None) -> UpstreamRequest:
        return UpstreamRequest(self.host, "/CurrentStorms.json")

    def parse(self, body: bytes, point: Point | None) -> dict[str, list[Record]]:
        document = load_json(body)
        storms = document.get("activeStorms") if isinstance(document, dict) else None
        if not isinstance(storms, list):
            raise ParseError("not an object with an activeStorms list")
        records = []
        for storm in storms:
            if not isinstance(storm, dict):
                raise ParseError("an active storm is not an object")
            advisory = storm.get("publicAdvisory")
            fields = {
                "id": storm.get("id"),
                "name": storm.get("name"),
                "classification": storm.get("classification"),
                "intensity_kt": _count(storm.get("intensity"), "intensity"),
                "pressure_mb": _count(storm.get("pressure"), "pressure"),
                "movement_dir_deg": optional_number(storm.get("movementDir")),
                "movement_speed_mph": optional_number(storm.get("movementSpeed")),
                "advisory_url": advisory.get("url") if isinstance(advisory, dict) else None,
            }
            lat = number(storm.get("latitudeNumeric"), "latitudeNumeric")
            lon = number(storm.get("longitudeNumeric"), "longitudeNumeric")
            records.append(Record(STREAM, iso(storm.get("lastUpdate")), lat, lon, fields, SOURCE))
        return {STREAM: records}
