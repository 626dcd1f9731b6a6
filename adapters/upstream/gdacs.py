"""GDACS: current disaster alerts (earthquakes, cyclones, floods, volcanoes, droughts, wildfires).

GDACS, the Global Disaster Alert and Coordination System, is a cooperation framework of the United
Nations and the European Commission. Its event API (www.gdacs.org/gdacsapi) answers
GET /gdacsapi/api/events/geteventlist/MAP with a GeoJSON FeatureCollection of current events,
one feature per geometry layer: `properties.eventtype` (EQ, TC, FL, VO, DR, WF), `eventid`,
`name`, `alertlevel` (Green/Orange/Red), `country`, `fromdate` (UTC, no zone),
`severitydata.severitytext` and `url.report`. Most events come as one `Point` centroid; some also
bring lines and polygons (cyclone tracks, affected areas), which are skipped here.
"""

from __future__ import annotations

from ..errors import ParseError
from ..records import Record
from .base import Point, UpstreamRequest, iso, load_json, number

LICENSE = "GDACS terms of use (gdacs.org; no open data licence published, check before resale)"
ATTRIBUTION = "GDACS, a cooperation framework of the United Nations and the European Commission"
SOURCE = "GDACS"

STREAM = "disasters.gdacs"


class GdacsEvents:
    name = "gdacs.events"
    host = "www.gdacs.org"
    point = False
    streams = (STREAM,)

    def request(self, point: Point | None) -> UpstreamRequest:
        return UpstreamRequest(self.host, "/gdacsapi/api/events/geteventlist/MAP")

    def parse(self, body: bytes, point: Point | None) -> dict[str, list[Record]]:
        document = load_json(body)
        if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
            raise ParseError("not a GeoJSON FeatureCollection")
        features = document.get("features") or []
        if not isinstance(features, list):
            raise ParseError("`features` is not an array")
        records = []
        for feature in features:
            try:
                geometry = feature["geometry"] or {}
                if geometry.get("type") != "Point":
                    continue  # a track line or an affected-area polygon: the event's centroid carries it
                properties, coordinates = feature["properties"], geometry["coordinates"]
                severity = properties.get("severitydata") or {}
                urls = properties.get("url") or {}
                records.append(
                    Record(
                        stream=STREAM,
                        observed_at=iso(properties["fromdate"]),
                        lat=number(coordinates[1], "latitude"),
                        lon=number(coordinates[0], "longitude"),
                        fields={
                            "event_type": properties["eventtype"],
                            "event_id": str(properties["eventid"]),
                            "name": properties.get("name"),
                            "alert_level": properties.get("alertlevel"),
                            "country": properties.get("country"),
                            "severity": severity.get("severitytext") if isinstance(severity, dict) else None,
                            "url": urls.get("report") if isinstance(urls, dict) else None,
                        },
                        source=SOURCE,
                    )
                )
            except (KeyError, IndexError, TypeError, AttributeError) as exc:
                raise ParseError(f"a feature lacks {exc}") from None
        return {STREAM: records}
