"""USGS earthquakes: the real-time GeoJSON summary feed of the past day (public domain).

Documented at earthquake.usgs.gov/earthquakes/feed/v1.0/geojson.php: a FeatureCollection whose
features carry `properties.mag/place/time(ms)/...` and `geometry.coordinates = [lon, lat, depth_km]`.
"""

from __future__ import annotations

from ..errors import ParseError
from ..records import Record
from .base import Point, UpstreamRequest, iso_from_ms, load_json, number, optional_number

STREAM = "quakes.usgs"


class UsgsEarthquakes:
    name = "usgs.earthquakes"
    host = "earthquake.usgs.gov"
    point = False
    streams = (STREAM,)

    def request(self, point: Point | None) -> UpstreamRequest:
        return UpstreamRequest(self.host, "/earthquakes/feed/v1.0/summary/all_day.geojson")

    def parse(self, body: bytes, point: Point | None) -> dict[str, list[Record]]:
        document = load_json(body)
        if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
            raise ParseError("not a GeoJSON FeatureCollection")
        records = []
        features = document.get("features") or []
        if not isinstance(features, list):
            raise ParseError("features is not a list")
        for feature in features:
            try:
                properties, coordinates = feature["properties"], feature["geometry"]["coordinates"]
                lon, lat = number(coordinates[0], "longitude"), number(coordinates[1], "latitude")
                depth = optional_number(coordinates[2]) if len(coordinates) > 2 else None
                records.append(
                    Record(
                        stream=STREAM,
                        observed_at=iso_from_ms(properties["time"]),
                        lat=lat,
                        lon=lon,
                        fields={
                            "id": str(feature.get("id") or properties.get("code")),
                            "magnitude": optional_number(properties.get("mag")),
                            "magnitude_type": properties.get("magType"),
                            "place": properties.get("place"),
                            "depth_km": depth,
                            "tsunami": bool(properties.get("tsunami")),
                            "alert": properties.get("alert"),
                            "url": properties.get("url"),
                        },
                        source="USGS Earthquake Hazards Program",
                    )
                )
            except (KeyError, IndexError, TypeError, ValueError, OverflowError) as exc:
                raise ParseError(f"a feature lacks {exc}") from None
        return {STREAM: records}
