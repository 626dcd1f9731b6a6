"""Carbon Intensity API: the carbon intensity and generation mix of Great Britain's electricity, by region (CC BY 4.0).

Documented at carbon-intensity.github.io/api-definitions (GET /regional): `{"data": [{"from", "to", "regions":
[...]}]}`, the current half hour (`from`/`to` as "2026-11-22T16:00Z"), one object per region: `regionid`
(1-14 the distribution network regions, 15 England, 16 Scotland, 17 Wales, 18 GB), `shortname`, `dnoregion`,
`intensity` (`forecast` in gCO2/kWh and `index`: very low ... very high) and `generationmix` (`fuel`, `perc`).

One fetch, two streams (field splitting). The API gives no coordinates: a region's record carries an
approximate centroid (REGION_CENTRES, compiled for worldgate, about 0.1 degree), the national aggregates none.
"""

from __future__ import annotations

from typing import Any

from ..errors import ParseError
from ..records import Record
from .base import Point, UpstreamRequest, iso, load_json, optional_number

LICENSE = "CC-BY-4.0"
ATTRIBUTION = "Carbon Intensity API (carbonintensity.org.uk), National Energy System Operator, CC BY 4.0"
SOURCE = "Carbon Intensity API"
HOST = "api.carbonintensity.org.uk"
INTENSITY, MIX = "energy.carbon_intensity", "energy.generation_mix"

REGION_CENTRES: dict[int, tuple[float, float]] = {
    1: (57.5, -4.5),  # North Scotland
    2: (55.6, -3.8),  # South Scotland
    3: (53.9, -2.7),  # North West England
    4: (54.9, -1.7),  # North East England
    5: (53.9, -1.2),  # Yorkshire
    6: (53.1, -3.3),  # North Wales and Merseyside
    7: (51.7, -3.5),  # South Wales
    8: (52.5, -2.2),  # West Midlands
    9: (52.9, -1.0),  # East Midlands
    10: (52.4, 0.7),  # East England
    11: (50.7, -3.7),  # South West England
    12: (51.1, -1.3),  # South England
    13: (51.5, -0.1),  # London
    14: (51.2, 0.7),  # South East England
}


class CarbonIntensityRegional:
    name = "carbon-intensity.regional"
    host = HOST
    point = False
    streams = (INTENSITY, MIX)

    def request(self, point: Point | None) -> UpstreamRequest:
        return UpstreamRequest(self.host, "/regional")

    def parse(self, body: bytes, point: Point | None) -> dict[str, list[Record]]:
        document = load_json(body)
        data = document.get("data") if isinstance(document, dict) else None
        if not isinstance(data, list) or not data or not isinstance(data[0], dict):
            raise ParseError("not an object with a data list of half hours")
        period = data[0]
        regions = period.get("regions")
        if not isinstance(regions, list):
            raise ParseError("the half hour has no regions list")
        observed_at = iso(period.get("from"))
        out: dict[str, list[Record]] = {INTENSITY: [], MIX: []}
        for region in regions:
            region_id, name, intensity, mix = self._region(region)
            lat, lon = REGION_CENTRES.get(region_id, (None, None))
            where = {"region_id": region_id, "region": name}
            forecast = optional_number(intensity.get("forecast"))
            if forecast is not None:
                fields = {**where, "intensity_gco2_kwh": forecast, "index": intensity.get("index")}
                out[INTENSITY].append(Record(INTENSITY, observed_at, lat, lon, fields, SOURCE))
            shares = {f"{item['fuel']}_pct": optional_number(item.get("perc")) for item in mix}
            if shares:
                out[MIX].append(Record(MIX, observed_at, lat, lon, {**where, **shares}, SOURCE))
        return out

    @staticmethod
    def _region(region: Any) -> tuple[int, str | None, dict[str, Any], list[dict[str, Any]]]:
        if not isinstance(region, dict):
            raise ParseError("a region is not an object")
        region_id, intensity, mix = region.get("regionid"), region.get("intensity") or {}, region.get("generationmix")
        if isinstance(region_id, bool) or not isinstance(region_id, int) or not isinstance(intensity, dict):
            raise ParseError(f"region {region_id!r} has no integer regionid or no intensity object")
        items = mix if isinstance(mix, list) else []
        if not all(isinstance(item, dict) and isinstance(item.get("fuel"), str) for item in items):
            raise ParseError(f"region {region_id}'s generation mix is not a list of fuels")
        name = region.get("shortname")
        return region_id, name if isinstance(name, str) else None, intensity, items
