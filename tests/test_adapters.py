"""Every upstream adapter against its recorded payload: the request it makes, the records it reads.

Fixtures are loaded the way the replay server serves them: through adapters/fixtures/manifest.json,
by the adapter's own host and request path. Bodies built here (broken JSON, wrong shapes, an
empty result, a polygon) are derived from those fixtures, never from invented readings. NOAA SWPC's adapters
have their own file (test_adapters_swpc.py), and so do GDACS and EONET (test_adapters_events.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from adapters import STREAMS
from adapters.errors import ParseError
from adapters.records import Record
from adapters.replay import nearest, recordings, variant
from adapters.sources import all_adapters
from adapters.upstream import (
    air_quality,
    carbon,
    eonet,
    flood,
    gdacs,
    iss,
    marine,
    ndbc,
    nhc,
    noaa_swpc,
    nws,
    open_meteo,
    usgs_water,
)
from adapters.upstream.air_quality import OpenMeteoAirQuality
from adapters.upstream.base import Point, UpstreamRequest
from adapters.upstream.iss import IssPosition
from adapters.upstream.open_meteo import OpenMeteoCurrent, OpenMeteoGrid
from adapters.upstream.open_meteo_grids import bands_for
from adapters.upstream.usgs import UsgsEarthquakes

FIXTURES = Path(__file__).resolve().parents[1] / "adapters" / "fixtures"
MANIFEST: dict[str, dict[str, dict[str, Any]]] = json.loads((FIXTURES / "manifest.json").read_text())
MOSCOW, DELHI = Point(55.7512, 37.6184), Point(28.6139, 77.209)  # the first recording of each point path
FIRST_POINTS = {  # the other point paths' first recordings (tests/test_catalog*.py read them through too)
    "air-quality-api.open-meteo.com": DELHI,
    "marine-api.open-meteo.com": Point(45.5417, -3.0417),
    "flood-api.open-meteo.com": Point(50.925, 6.975),
}

# every adapter the registry names, and a band of each finer grid (a fetch group of its own) holding recorded cells
GRID_BANDS = tuple(bands_for(r, (40.0, 41.0))[-1] for r in (2, 5, 10, 20))
ADAPTERS = (*all_adapters().values(), *GRID_BANDS)
BY_NAME = {adapter.name: adapter for adapter in ADAPTERS}
TEXT_TYPES = ("application/json", "application/geo+json", "text/plain")


def _point_for(adapter: Any) -> Point | None:
    return FIRST_POINTS.get(adapter.host, MOSCOW) if adapter.point else None


def _recording(request: UpstreamRequest) -> dict[str, Any]:
    entry = variant(MANIFEST[request.host][request.path], urlencode(request.params))
    assert entry is not None
    if "within_km" not in entry:
        return entry
    asked = dict(request.params)
    found = nearest(entry, float(asked["latitude"]), float(asked["longitude"]), slack_km=8)
    assert found is not None
    return found


def fixture(adapter: Any) -> bytes:
    """The recorded body the replay server would answer this adapter's request with."""
    return (FIXTURES / _recording(adapter.request(_point_for(adapter)))["file"]).read_bytes()


def fixture_json(adapter: Any) -> Any:
    return json.loads(fixture(adapter))


def parse(adapter: Any, body: bytes | None = None) -> dict[str, list[Record]]:
    out = adapter.parse(fixture(adapter) if body is None else body, _point_for(adapter))
    assert tuple(out) == adapter.streams
    for stream, records in out.items():
        assert all(isinstance(record, Record) and record.stream == stream for record in records)
    return out


def encode(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


# --- every adapter --------------------------------------------------------------------------------


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.name)
def test_the_request_stays_on_the_adapters_host_and_has_a_recording(adapter: Any) -> None:
    request = adapter.request(_point_for(adapter))
    assert isinstance(request, UpstreamRequest)
    assert request.host == adapter.host
    assert request.path.startswith("/")
    assert request.path in MANIFEST[adapter.host]
    entry = _recording(request)
    assert (FIXTURES / entry["file"]).is_file()
    assert entry["content_type"] in TEXT_TYPES
    assert len(entry["source"]) > 40  # provenance, not a placeholder


def test_every_manifest_entry_is_a_file_under_its_host() -> None:
    for host, paths in MANIFEST.items():
        for path, entry in paths.items():
            assert path.startswith("/")
            for recording in recordings(entry):
                assert recording["file"].startswith(f"{host}/")
                body = (FIXTURES / recording["file"]).read_bytes()
                if recording["content_type"] != "text/plain":
                    json.loads(body)
                assert len(recording["source"]) > 40


@pytest.mark.parametrize("adapter", [a for a in ADAPTERS if a.point], ids=lambda a: a.name)
def test_a_point_recording_is_for_the_point_it_is_filed_at(adapter: Any) -> None:
    """Each recording of a point path sits at the point its upstream answered for, and the path's bound is
    the stream's: so what replay serves for a point is the record the data tier would accept there."""
    entry = MANIFEST[adapter.host][adapter.request(MOSCOW).path]
    stream = next(s for s in STREAMS if s.id == adapter.streams[0])  # the first (parent) stream of the fetch
    assert all(s.point_within_km == stream.point_within_km for s in STREAMS if s.adapter == adapter.name)
    assert entry["within_km"] == stream.point_within_km
    for recording in recordings(entry):
        lat, lon = recording["point"]
        records = adapter.parse((FIXTURES / recording["file"]).read_bytes(), Point(lat, lon))[stream.id]
        assert records and all((record.lat, record.lon) == (lat, lon) for record in records)  # a day series: several
        assert nearest(entry, lat + 0.05, lon + 0.05) is recording
    assert nearest(entry, -89.0, 0.0, slack_km=8) is None  # nothing recorded near the pole


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.name)
def test_every_fixture_parses_into_every_stream(adapter: Any) -> None:
    """Every stream a fetch feeds has records in its recording (a point path: in one of its recordings, since a
    child stream's fields may be missing from a given place's answer)."""
    request = adapter.request(_point_for(adapter))
    entry = variant(MANIFEST[request.host][request.path], urlencode(request.params))
    assert entry is not None
    fed: set[str] = set()
    for recording in recordings(entry) if adapter.point else [_recording(request)]:
        at = Point(*recording["point"]) if adapter.point else None
        out = adapter.parse((FIXTURES / recording["file"]).read_bytes(), at)
        assert tuple(out) == adapter.streams
        fed |= {stream for stream, records in out.items() if records}
        for records in out.values():
            for record in records:
                assert record.observed_at.endswith("Z") and "T" in record.observed_at
                assert record.source
    assert fed == set(adapter.streams)


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.name)
@pytest.mark.parametrize(
    "body", [b"", b"<html><body><h1>502 Bad Gateway</h1></body></html>", b"\xff\xfe\x00", b'{"type": "Featu']
)
def test_a_body_that_is_not_json_is_a_parse_error(adapter: Any, body: bytes) -> None:
    with pytest.raises(ParseError):
        adapter.parse(body, _point_for(adapter))


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.name)
def test_a_truncated_recording_is_a_parse_error(adapter: Any) -> None:
    body = fixture(adapter)
    with pytest.raises(ParseError):
        adapter.parse(body[: len(body) // 2], _point_for(adapter))


WRONG_SHAPES: dict[str, list[Any]] = {
    "usgs.earthquakes": [[], {"type": "Feature"}, {"type": "FeatureCollection", "features": [{"id": "x"}]}],
    "open-meteo.current": [[], {"latitude": 1.0, "longitude": 2.0}, {"current": {"time": "2026-01-01T00:00"}}],
    "open-meteo.grid": [{}, [1, 2], [{"latitude": 1.0, "longitude": 2.0}]],
    "open-meteo.air-quality": [[], {"latitude": 1.0, "longitude": 2.0}, {"error": True, "reason": "x"}],
    "iss.position": [[], {"name": "iss", "units": "kilometers"}, {"message": "not found"}],
    "noaa-swpc.kp": [{}, [["time_tag", "Kp"]], [{"kp_index": 2}]],
    "noaa-swpc.solar-wind": [{}, [["time_tag", "density", "speed", "temperature"]], [[1, 2]], [None], ["SOLAR1"]],
    "gdacs.events": [[], {"type": "Feature"}, {"type": "FeatureCollection", "features": [{"properties": {}}]}],
    "nasa-eonet.events": [[], {"title": "EONET Events"}, {"events": {}}, {"events": [{"id": "EONET_1"}]}],
    "open-meteo.marine": [[], {"latitude": 1.0, "longitude": 2.0}, {"current": {"time": "2026-01-01T00:00"}}],
    "open-meteo.flood": [[], {"latitude": 1.0, "longitude": 2.0}, {"latitude": 1, "longitude": 2, "daily": []}],
    "nws.alerts": [[], {"type": "Feature"}, {"type": "FeatureCollection", "features": [{"geometry": None}]}],
    "nhc.storms": [[], {"activeStorms": {}}, {"activeStorms": [{"name": "X"}]}],
    "noaa-swpc.xrays": [{}, [None], [{"energy": "0.1-0.8nm", "flux": "1e-6", "time_tag": "2026-01-01T00:00:00Z"}]],
    "noaa-swpc.protons": [{}, [5], [{"energy": ">=10 MeV", "flux": 1.0, "time_tag": None}]],
    "ndbc.latest-obs": [[], {"STN": "41001"}, "#STN LAT LON"],
    "usgs.water": [[], {"value": {}}, {"value": {"timeSeries": [{"sourceInfo": {}}]}}],
    "carbon-intensity.regional": [[], {"data": []}, {"data": [{"from": "2026-01-01T00:00Z", "regions": [{}]}]}],
    **{band.name: [{}, [1, 2], [{"latitude": 1.0, "longitude": 2.0}]] for band in GRID_BANDS},
}


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.name)
def test_json_of_the_wrong_shape_is_a_parse_error(adapter: Any) -> None:
    for document in WRONG_SHAPES[adapter.name]:
        with pytest.raises(ParseError):
            adapter.parse(encode(document), _point_for(adapter))


ODD_BODIES = [
    b'{"type":"FeatureCollection","features":5}',
    b'{"type":"FeatureCollection","features":[{"properties":{"time":1e300},"geometry":{"coordinates":[1,2]}}]}',
    b'[{"time_tag":"0001-01-01T00:00:00+01:00","kp_index":2,"proton_speed":1.0}]',
    b"null",
    b"0",
    b'"text"',
    b"[]",
    b"{}",
    b"[null]",
    b"[[]]",
    b"[{}]",
    b"[[null, null, null, null]]",
    b'[["time_tag","density","speed","temperature"],[null,null,null,null]]',
    b'[["time_tag","density","speed","temperature"],["2026-03-26 16:45:00.000",true,"x",null]]',
    b'{"type":"FeatureCollection","features":[null]}',
    b'{"type":"FeatureCollection","features":[{}]}',
    b'{"type":"FeatureCollection","features":[{"geometry":{"type":"Point","coordinates":[]},"properties":{}}]}',
    b'{"type":"FeatureCollection","features":[{"geometry":{"type":"Point","coordinates":[1,2]},"properties":null}]}',
    b'{"events":[null]}',
    b'{"events":[{"geometry":[{"type":"Point"}]}]}',
    b'{"events":[{"id":"E","geometry":[{"type":"Point","date":"2026-01-01T00:00:00Z","coordinates":5}]}]}',
    b'{"current":null,"latitude":1,"longitude":2}',
    b'{"current":{"time":7},"latitude":1,"longitude":2}',
    b'{"current":{"time":"2026-01-01T00:00"},"current_units":[1],"latitude":1,"longitude":2}',
    b'{"current":{"time":"0001-01-01T00:00"},"latitude":1,"longitude":2,"utc_offset_seconds":3600}',
    b'[{"current":{"time":"2026-01-01T00:00"},"latitude":"1","longitude":2}]',
    b'{"units":"kilometers","timestamp":1e300,"latitude":1,"longitude":2}',
    b'{"units":"kilometers","timestamp":"1669950671","latitude":1,"longitude":2}',
    b'[{"time_tag":"2026-07-09T10:00:00","kp_index":Infinity,"estimated_kp":NaN}]',
    b'[{"time_tag":null,"kp_index":2}]',
]


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.name)
def test_odd_json_never_escapes_as_anything_but_a_parse_error(adapter: Any) -> None:
    for body in ODD_BODIES:
        try:
            out = adapter.parse(body, _point_for(adapter))
        except ParseError:
            continue
        assert tuple(out) == adapter.streams, body


def test_every_new_module_states_its_license_and_attribution() -> None:
    for module in (open_meteo, air_quality, iss, noaa_swpc, gdacs, eonet, marine, flood, nws, nhc, ndbc, usgs_water):
        assert isinstance(module.LICENSE, str) and module.LICENSE
        assert isinstance(module.ATTRIBUTION, str) and module.ATTRIBUTION
    assert open_meteo.LICENSE == "CC-BY-4.0" and open_meteo.ATTRIBUTION == "Weather data by Open-Meteo.com"
    assert "United Nations" in gdacs.ATTRIBUTION and "European Commission" in gdacs.ATTRIBUTION
    assert carbon.LICENSE == "CC-BY-4.0" and "National Energy System Operator" in carbon.ATTRIBUTION


# --- USGS earthquakes (the model adapter) -------------------------------------------------------


def test_usgs_request_and_first_quake() -> None:
    adapter = UsgsEarthquakes()
    assert adapter.request(None) == UpstreamRequest(
        "earthquake.usgs.gov", "/earthquakes/feed/v1.0/summary/all_day.geojson"
    )
    (quake,) = parse(adapter)["quakes.usgs"]
    assert quake.observed_at == "2023-08-05T01:29:30Z"
    assert (quake.lat, quake.lon) == (33.9893333, -117.2156667)
    assert quake.fields["id"] == "ci40529976"
    assert quake.fields["magnitude"] == 0.9
    assert quake.fields["place"] == "7 km N of Moreno Valley, CA"
    assert quake.fields["depth_km"] == 12.77


def test_usgs_empty_feature_collection() -> None:
    assert parse(UsgsEarthquakes(), encode({"type": "FeatureCollection", "features": []})) == {"quakes.usgs": []}


# --- Open-Meteo current weather -------------------------------------------------------------------


def test_open_meteo_current_request() -> None:
    request = OpenMeteoCurrent().request(Point(55.7512, 37.6184))
    assert request.host == "api.open-meteo.com"
    assert request.path == "/v1/forecast"
    assert request.params == (
        ("latitude", "55.8"),
        ("longitude", "37.6"),
        (
            "current",
            "temperature_2m,relative_humidity_2m,apparent_temperature,precipitation,weather_code,"
            "cloud_cover,wind_speed_10m,wind_direction_10m,wind_gusts_10m",
        ),
        ("timezone", "GMT"),
    )
    assert OpenMeteoCurrent().request(Point(-33.86882, 151.20929)).params[:2] == (
        ("latitude", "-33.9"),
        ("longitude", "151.2"),
    )
    with pytest.raises(ValueError):
        OpenMeteoCurrent().request(None)


def test_open_meteo_current_reads_the_recorded_moscow_answer() -> None:
    (record,) = parse(OpenMeteoCurrent())["weather.current"]
    # current.time 2025-12-25T06:45 is Moscow time (utc_offset_seconds 10800): 03:45 UTC
    assert record.observed_at == "2025-12-25T03:45:00Z"
    assert (record.lat, record.lon) == (55.75, 37.625)
    assert record.fields == {
        "temperature_c": -4.1,
        "relative_humidity_pct": 93.0,
        "apparent_temperature_c": None,  # not in that body
        "precipitation_mm": 0.0,
        "weather_code": None,
        "cloud_cover_pct": None,
        "wind_speed_kmh": 7.6,
        "wind_direction_deg": 275.0,
        "wind_gusts_kmh": 20.5,
    }


def test_open_meteo_current_in_gmt_and_with_a_weather_code() -> None:
    document = fixture_json(OpenMeteoCurrent())
    document.update(utc_offset_seconds=0, timezone="GMT", timezone_abbreviation="GMT")
    document["current_units"]["weather_code"] = "wmo code"
    document["current"]["weather_code"] = 3
    (record,) = parse(OpenMeteoCurrent(), encode(document))["weather.current"]
    assert record.observed_at == "2025-12-25T06:45:00Z"
    assert record.fields["weather_code"] == 3 and isinstance(record.fields["weather_code"], int)


@pytest.mark.parametrize(
    ("variable", "unit"), [("temperature_2m", "°F"), ("wind_speed_10m", "mph"), ("precipitation", "inch")]
)
def test_open_meteo_current_refuses_other_units(variable: str, unit: str) -> None:
    document = fixture_json(OpenMeteoCurrent())
    document["current_units"][variable] = unit
    with pytest.raises(ParseError, match=variable):
        parse(OpenMeteoCurrent(), encode(document))


def test_open_meteo_current_with_no_variables_is_a_record_of_nones() -> None:
    document = fixture_json(OpenMeteoCurrent())
    document["current"] = {"time": document["current"]["time"], "interval": 900}
    (record,) = parse(OpenMeteoCurrent(), encode(document))["weather.current"]
    assert set(record.fields.values()) == {None}


def test_open_meteo_current_refuses_an_array() -> None:
    with pytest.raises(ParseError):
        parse(OpenMeteoCurrent(), encode([fixture_json(OpenMeteoCurrent())]))


# --- Open-Meteo global grid (one fetch, three streams) --------------------------------------------


def test_open_meteo_grid_request_covers_the_60_cell_grid() -> None:
    adapter = OpenMeteoGrid()
    request = adapter.request(None)
    assert (request.host, request.path) == ("api.open-meteo.com", "/v1/gfs")
    params = dict(request.params)
    assert [name for name, _ in request.params] == ["latitude", "longitude", "current", "timezone"]
    lats, lons = params["latitude"].split(","), params["longitude"].split(",")
    assert len(lats) == len(lons) == 60
    pairs = {(float(lat), float(lon)) for lat, lon in zip(lats, lons, strict=True)}
    assert pairs == {(lat, lon) for lat in (-60, -30, 0, 30, 60) for lon in range(-180, 180, 30)}
    assert (lats[0], lons[0]) == ("-60", "-180") and (lats[-1], lons[-1]) == ("60", "150")
    assert params["current"] == "temperature_2m,precipitation,wind_speed_10m,wind_direction_10m"
    assert params["timezone"] == "GMT"


def test_open_meteo_grid_splits_one_answer_into_three_streams() -> None:
    out = parse(OpenMeteoGrid())
    assert [len(out[stream]) for stream in OpenMeteoGrid.streams] == [4, 4, 4]

    def at(stream: str, lat: float, lon: float) -> Record:
        (record,) = [r for r in out[stream] if (r.lat, r.lon) == (lat, lon)]
        return record

    temperature = at("weather.grid.temperature", 23.75, 61.5)
    wind = at("weather.grid.wind", 23.75, 61.5)
    precipitation = at("weather.grid.precipitation", 23.75, 61.5)
    assert temperature.observed_at == wind.observed_at == precipitation.observed_at == "2024-05-21T00:30:00Z"
    assert temperature.fields == {"temperature_c": 30.1}
    assert wind.fields == {"wind_speed_kmh": 23.4, "wind_direction_deg": 225.0}
    assert precipitation.fields == {"precipitation_mm": 0.0}
    # each location's local time is brought to UTC
    assert at("weather.grid.temperature", 55.75, 37.625).observed_at == "2025-12-25T03:45:00Z"
    assert at("weather.grid.wind", 30.263618, 120.14051).fields == {"wind_speed_kmh": 8.2, "wind_direction_deg": 68.0}
    assert at("weather.grid.temperature", 36.825104, -119.68613).fields == {"temperature_c": 7.7}


def test_open_meteo_grid_empty_array_gives_three_empty_streams() -> None:
    assert parse(OpenMeteoGrid(), b"[]") == {stream: [] for stream in OpenMeteoGrid.streams}


def test_open_meteo_grid_refuses_other_units() -> None:
    document = fixture_json(OpenMeteoGrid())
    document[2]["current_units"]["wind_speed_10m"] = "kn"
    with pytest.raises(ParseError, match="wind_speed_10m"):
        parse(OpenMeteoGrid(), encode(document))


# --- Open-Meteo air quality -----------------------------------------------------------------------


def test_air_quality_request() -> None:
    request = OpenMeteoAirQuality().request(Point(28.6139, 77.209))
    assert (request.host, request.path) == ("air-quality-api.open-meteo.com", "/v1/air-quality")
    assert request.params == (
        ("latitude", "28.6"),
        ("longitude", "77.2"),
        ("current", "us_aqi,european_aqi,pm10,pm2_5,carbon_monoxide,nitrogen_dioxide,ozone,sulphur_dioxide"),
        ("timezone", "GMT"),
    )


def test_air_quality_reads_the_recorded_delhi_answer() -> None:
    (record,) = parse(OpenMeteoAirQuality())["air.quality"]
    assert record.observed_at == "2025-10-06T12:00:00Z"
    assert (record.lat, record.lon) == (28.599998, 77.20001)
    assert record.fields == {
        "us_aqi": 160.0,
        "european_aqi": None,
        "pm10_ugm3": None,
        "pm2_5_ugm3": 46.6,
        "carbon_monoxide_ugm3": 570.0,
        "nitrogen_dioxide_ugm3": None,
        "ozone_ugm3": 134.0,
        "sulphur_dioxide_ugm3": None,
    }


def test_air_quality_units() -> None:
    document = fixture_json(OpenMeteoAirQuality())
    document["current_units"]["pm2_5"] = "µg/m³"  # MICRO SIGN instead of GREEK MU: the same unit
    assert parse(OpenMeteoAirQuality(), encode(document))["air.quality"][0].fields["pm2_5_ugm3"] == 46.6
    document["current_units"]["carbon_monoxide"] = "ppm"
    with pytest.raises(ParseError, match="carbon_monoxide"):
        parse(OpenMeteoAirQuality(), encode(document))


# --- ISS ------------------------------------------------------------------------------------------


def test_iss_request_and_position() -> None:
    adapter = IssPosition()
    assert adapter.request(None) == UpstreamRequest("api.wheretheiss.at", "/v1/satellites/25544")
    (record,) = parse(adapter)["iss.position"]
    assert record.observed_at == "2022-12-02T03:11:11Z"  # timestamp 1669950671
    assert (record.lat, record.lon) == (-21.758070915369, 87.544399772505)
    assert record.fields == {
        "altitude_km": 425.70944267385,
        "velocity_kmh": 27557.165728471,
        "visibility": "daylight",
        "footprint_km": 4536.3972250428,
    }


def test_iss_refuses_miles() -> None:
    document = fixture_json(IssPosition())
    document["units"] = "miles"
    with pytest.raises(ParseError, match="kilometers"):
        parse(IssPosition(), encode(document))
