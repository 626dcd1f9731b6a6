"""The disaster and natural-event adapters (GDACS, NASA EONET) against their recorded payloads and bodies derived
from them. The helpers are tests/test_adapters.py's (every adapter's common checks live there)."""

from __future__ import annotations

from adapters.upstream.base import UpstreamRequest
from adapters.upstream.eonet import EonetEvents
from adapters.upstream.gdacs import GdacsEvents

from .test_adapters import encode, fixture_json, parse

# --- GDACS ------------------------------------------------------------------------------------------


def test_gdacs_request_and_events() -> None:
    adapter = GdacsEvents()
    assert adapter.request(None) == UpstreamRequest("www.gdacs.org", "/gdacsapi/api/events/geteventlist/MAP")
    records = parse(adapter)["disasters.gdacs"]
    assert [r.fields["event_type"] for r in records] == ["EQ", "TC", "EQ", "FL", "WF"]
    first = records[0]
    assert first.observed_at == "2026-10-03T18:12:46Z"
    assert (first.lat, first.lon) == (20.6061, 93.3991)
    assert first.fields == {
        "event_type": "EQ",
        "event_id": "1569302",
        "name": "Earthquake in Myanmar",
        "alert_level": "Green",
        "country": "Myanmar",
        "severity": "Magnitude 4.9M, Depth:35km",
        "url": "https://www.gdacs.org/report.aspx?eventid=1569302&episodeid=1737501&eventtype=EQ",
    }
    cyclone = records[1]
    assert cyclone.fields["name"] == "Tropical Cyclone RACHEL-26"
    assert cyclone.fields["severity"] == "Hurricane/Typhoon > 74 mph (maximum wind speed of 194 km/h)"
    assert (cyclone.lat, cyclone.lon) == (19.6, -112.1)


def test_gdacs_skips_polygons() -> None:
    document = fixture_json(GdacsEvents())
    west, south, east, north = document["features"][3]["bbox"]
    document["features"][3]["geometry"] = {
        "type": "Polygon",
        "coordinates": [[[west, south], [east, south], [east, north], [west, north], [west, south]]],
    }
    document["features"][4]["geometry"] = {"type": "LineString", "coordinates": [[west, south], [east, north]]}
    records = parse(GdacsEvents(), encode(document))["disasters.gdacs"]
    assert [r.fields["event_type"] for r in records] == ["EQ", "TC", "EQ"]


def test_gdacs_empty_feature_collection() -> None:
    assert parse(GdacsEvents(), encode({"type": "FeatureCollection", "features": []})) == {"disasters.gdacs": []}


# --- NASA EONET ---------------------------------------------------------------------------------------


def test_eonet_request_and_events() -> None:
    adapter = EonetEvents()
    assert adapter.request(None) == UpstreamRequest(
        "eonet.gsfc.nasa.gov", "/api/v3/events", (("status", "open"), ("limit", "200"))
    )
    records = parse(adapter)["events.eonet"]
    assert [r.fields["id"] for r in records] == ["EONET_15859", "EONET_15857", "EONET_15851"]
    typhoon = records[0]  # 11 track points: the newest one counts
    assert typhoon.observed_at == "2025-11-08T12:00:00Z"
    assert (typhoon.lat, typhoon.lon) == (13.3, 128.1)
    assert typhoon.fields == {
        "id": "EONET_15859",
        "title": "Typhoon Fung-wong",
        "category": "severeStorms",
        "category_title": "Severe Storms",
        "magnitude": 95.0,
        "magnitude_unit": "kts",
        "source_url": "https://www.metoc.navy.mil/jtwc/products/wp3225.tcw",
    }
    iceberg = records[2]
    assert iceberg.fields["magnitude"] == 26.89 and iceberg.fields["magnitude_unit"] == "NM^2"
    assert (iceberg.lat, iceberg.lon) == (-52.21, -38.96)


def test_eonet_newest_point_wins_whatever_the_order() -> None:
    document = fixture_json(EonetEvents())
    document["events"][0]["geometry"].reverse()
    assert parse(EonetEvents(), encode(document))["events.eonet"][0].observed_at == "2025-11-08T12:00:00Z"


def test_eonet_skips_events_without_a_point_and_falls_back_to_the_event_link() -> None:
    document = fixture_json(EonetEvents())
    iceberg = document["events"][2]["geometry"][0]
    lon, lat = iceberg["coordinates"]
    iceberg.update(type="Polygon", coordinates=[[[lon, lat], [lon + 1, lat], [lon, lat + 1], [lon, lat]]])
    document["events"][1]["sources"] = []
    document["events"][1]["geometry"][0]["magnitudeValue"] = None
    records = parse(EonetEvents(), encode(document))["events.eonet"]
    assert [r.fields["id"] for r in records] == ["EONET_15859", "EONET_15857"]
    assert records[1].fields["source_url"] == "https://eonet.gsfc.nasa.gov/api/v3/events/EONET_15857"
    assert records[1].fields["magnitude"] is None


def test_eonet_no_events() -> None:
    document = fixture_json(EonetEvents())
    document["events"] = []
    assert parse(EonetEvents(), encode(document)) == {"events.eonet": []}
