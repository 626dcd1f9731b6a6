"""The catalog's parts without a network: the new adapters' readings of their documented formats, the finer
grids' lattice, bands and prices, the registry's sharing start and interval overrides, the scheduler's tiers.

Bodies are read from adapters/fixtures (written from each upstream's documented format) the way the replay
server serves them; tests/test_adapters.py runs every adapter through the generic checks (bad bodies, shapes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapters import STREAMS, Registry, Sharing, StreamType
from adapters.errors import ParseError
from adapters.filters import Filters, apply, distance_km
from adapters.records import Record
from adapters.registry import DECLARED, SHIPPED_SHARING
from adapters.scheduler import tier_of
from adapters.sources import all_adapters
from adapters.upstream.carbon import CarbonIntensityRegional
from adapters.upstream.ndbc import NdbcLatestObs
from adapters.upstream.nhc import NhcActiveStorms
from adapters.upstream.noaa_goes import GoesProtons, GoesXrays, flare_class, radiation_storm
from adapters.upstream.nws import NwsAlerts
from adapters.upstream.open_meteo_grids import LOCATIONS_PER_CALL, bands, bands_for, cell_count, centres
from adapters.upstream.usgs_water import UsgsWater
from app.usecases.grid_pricing import cells_in_area, grid_units

FIXTURES = Path(__file__).resolve().parents[1] / "adapters" / "fixtures"
NEW_HOSTS = {
    "marine-api.open-meteo.com",
    "flood-api.open-meteo.com",
    "www.ndbc.noaa.gov",
    "api.weather.gov",
    "www.nhc.noaa.gov",
    "waterservices.usgs.gov",
    "api.carbonintensity.org.uk",
}


def body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


# ---- the registry: how many, from where, shared how ----


def test_the_catalog_is_three_times_what_it_was() -> None:
    registry = Registry()
    hosts = {s.upstream for s in registry.all()} - {"bundled"}
    assert len(registry.all()) >= 40 and len(hosts) >= 14 and hosts >= NEW_HOSTS
    for stream in registry.all():
        assert stream.license and stream.attribution, stream.id
        assert stream.adapter is None or stream.adapter in all_adapters(), stream.id
    split = [s for s in registry.all() if registry.parent(s) is not None]
    assert len(split) >= 25 and registry.parent(next(s for s in STREAMS if s.id == "quakes.usgs")) is None


def test_a_new_source_starts_unshared_and_only_the_shipped_config_shares_it() -> None:
    """Every stream added by this change is declared not_shared; the shipped sharing is what makes it public,
    and a registry built without it (a new source nobody reviewed) sells none of them."""
    first = {s.id for s in DECLARED[:13]}
    added = [s for s in DECLARED if s.id not in first]
    assert added and all(s.sharing is Sharing.NOT_SHARED for s in added)
    assert set(SHIPPED_SHARING) == {s.id for s in added} and set(SHIPPED_SHARING.values()) == {Sharing.OK}
    unreviewed = Registry(DECLARED)
    assert {s.id for s in unreviewed.all()} == first and len(unreviewed.every()) == len(DECLARED)
    assert {s.id for s in Registry().all()} == {s.id for s in DECLARED}
    # the operator's settings still win over the shipped configuration
    hidden = Registry(sharing={"buoys.wind": Sharing.NOT_SHARED})
    assert hidden.get("buoys.wind") is None and hidden.get("buoys.waves") is not None


def test_source_intervals_override_a_fetch_group_and_keep_its_budget() -> None:
    registry = Registry(intervals={"usgs.earthquakes": 120, "ndbc.latest-obs": 1800})
    quakes = registry.get("quakes.usgs")
    assert quakes is not None and quakes.interval_s == 120 and quakes.budget_s == 3600
    assert {s.interval_s for s in registry.all() if s.adapter == "ndbc.latest-obs"} == {1800}
    assert {s.budget_s for s in registry.all() if s.adapter == "ndbc.latest-obs"} == {7200}
    with pytest.raises(ValueError, match=r"do not exist: no\.such"):
        Registry(intervals={"no.such": 60})
    with pytest.raises(ValueError, match="at least 10"):
        Registry(intervals={"usgs.earthquakes": 1})


def test_every_stream_is_in_one_of_the_designs_tiers() -> None:
    tiers = {s.id: tier_of(s) for s in STREAMS}
    assert tiers["iss.position"] == "1 min" and tiers["weather.grid.wind"] == "1 h" and tiers["alerts.nws"] == "1 h"
    assert tiers["events.eonet"] == "6 h" and tiers["flood.river_discharge"] == "6 h"
    assert tiers["static.capitals"] == "static"
    assert set(tiers.values()) == {"1 min", "1 h", "6 h", "static"}
    assert all((tiers[s.id] == "static") == (s.type is StreamType.STATIC) for s in STREAMS)


# ---- finer grids ----


def test_the_grids_are_fetched_in_as_few_calls_as_open_meteo_allows() -> None:
    for resolution, cells, calls in ((20, 162, 1), (10, 648, 1), (5, 2592, 3), (2, 16200, 17)):
        made = bands(resolution)
        assert cell_count(resolution) == cells and len(made) == calls == -(-cells // LOCATIONS_PER_CALL)
        asked = [cell for band in made for cell in band.cells]
        assert len(asked) == len(set(asked)) == cells and all(len(b.cells) <= LOCATIONS_PER_CALL for b in made)
        params = dict(made[0].request(None).params)
        assert len(params["latitude"].split(",")) == len(made[0].cells) and params["cell_selection"] == "nearest"
        assert len(made[0].request(None).params[0][1]) < 8000  # each call's URL stays well under Open-Meteo's 64k
    lats, lons = centres(5)
    assert (lats[0], lats[-1], lons[0], lons[-1]) == (-87.5, 87.5, -177.5, 177.5)
    assert [b.index for b in bands_for(2, (40.0, 41.0))] == [11]  # an area reads only the bands it touches


def test_a_band_keeps_only_answers_at_the_cells_it_asked_for() -> None:
    (band,) = bands(20)
    out = band.parse(body("api.open-meteo.com/grid_cells_sample.json"), None)
    temperature = out["weather.grid.temperature@20deg"]
    assert {(r.lat, r.lon) for r in temperature} == {(40.0, -10.0), (0.0, 10.0), (-20.0, -30.0), (40.0, -70.0)}
    assert all(r.stream == "weather.grid.temperature" for r in temperature)  # a record names its stream
    wind = {(r.lat, r.lon): r.fields for r in out["weather.grid.wind@20deg"]}
    assert wind[(40.0, -10.0)] == {"wind_speed_kmh": 21.6, "wind_direction_deg": 246.0}
    # an answer off by a model cell is still its cell; one between two centres (or across the map) is not kept
    location: dict[str, Any] = json.loads(body("api.open-meteo.com/grid_cells_sample.json"))[0]
    near, between = {**location, "latitude": 40.125, "longitude": -9.875}, {**location, "latitude": 50.0}
    kept = band.parse(json.dumps([near, between, {**location, "longitude": 170.2}]).encode(), None)
    assert [(r.lat, r.lon) for r in kept["weather.grid.temperature@20deg"]] == [(40.0, -10.0), (40.0, 170.0)]
    with pytest.raises(ParseError):
        band.parse(json.dumps({"latitude": 40.0}).encode(), None)


def test_a_grid_read_is_priced_by_the_cells_its_answer_can_hold() -> None:
    assert grid_units(2, Filters(limit=1000)) == (1000, 10)
    assert grid_units(2, Filters()) == (100, 1)  # the default limit: the stream's price
    assert grid_units(20, Filters(limit=1000)) == (162, 2)
    assert cells_in_area(2, Filters(bbox=(-10, 35, 30, 60))) == 13 * 20
    assert cells_in_area(10, Filters(bbox=(170, -10, -170, 10))) == 2 * 2  # across the antimeridian
    # a radius counts the cells the read's own filter keeps
    lats, lons = centres(5)
    lattice = [Record("s", "2026-01-01T00:00:00Z", lat, lon, {}, "t") for lat in lats for lon in lons]
    for centre, radius in (((40.0, 0.0), 1000.0), ((-60.0, 179.0), 2500.0), ((89.0, 0.0), 600.0)):
        area = Filters(limit=1000, center=centre, radius_km=radius)
        kept = apply(lattice, area)
        assert cells_in_area(5, area) == len(kept), (centre, radius)
        assert all(distance_km(*centre, r.lat, r.lon) <= radius for r in kept)  # type: ignore[arg-type]


# ---- the new adapters, on their documented formats ----


def test_ndbc_reads_every_column_by_its_header_name() -> None:
    out = NdbcLatestObs().parse(body("www.ndbc.noaa.gov/latest_obs.txt"), None)
    (wind,) = [r for r in out["buoys.wind"] if r.fields["station"] == "46026"]
    assert (wind.lat, wind.lon, wind.observed_at) == (37.754, -122.839, "2026-11-22T15:40:00Z")
    assert wind.fields == {"station": "46026", "wind_direction_deg": 320.0, "wind_speed_ms": 9.0, "wind_gust_ms": 11.0}
    pressure = {r.fields["station"]: r.fields for r in out["buoys.pressure"]}
    assert pressure["44013"] == {"station": "44013", "pressure_hpa": 1008.9, "pressure_tendency_hpa": 2.1}
    # the coastal station reports no waves and no water temperature: no record there, not a record of nulls
    assert "PSBM1" not in {r.fields["station"] for r in out["buoys.waves"] + out["buoys.water_temperature"]}
    moved = body("www.ndbc.noaa.gov/latest_obs.txt").decode().replace("WVHT", "WVHX", 1)
    assert "buoys.waves" in NdbcLatestObs().parse(moved.encode(), None)  # an unknown column is ignored
    wrong_unit = body("www.ndbc.noaa.gov/latest_obs.txt").decode().replace("  m/s", " knot", 1)
    with pytest.raises(ParseError, match="WSPD"):
        NdbcLatestObs().parse(wrong_unit.encode(), None)


def test_nws_alerts_polygon_centre_and_zone_alerts_without_a_position() -> None:
    storm, gale = NwsAlerts().parse(body("api.weather.gov/alerts_active.json"), None)["alerts.nws"]
    assert storm.fields["event"] == "Severe Thunderstorm Warning" and storm.fields["severity"] == "Severe"
    assert storm.observed_at == "2026-11-22T15:42:00Z"  # sent at 09:42 CST
    assert (storm.lat, storm.lon) == (32.5175, -93.59)  # the mean of the ring's four corners
    assert (gale.lat, gale.lon) == (None, None) and "Lake Michigan" in (gale.fields["area"] or "")


def test_nhc_storms_knots_millibars_and_motion() -> None:
    dolly, lowell = NhcActiveStorms().parse(body("www.nhc.noaa.gov/CurrentStorms.json"), None)["storms.tropical"]
    assert dolly.fields["intensity_kt"] == 90.0 and dolly.fields["pressure_mb"] == 968.0
    assert (dolly.lat, dolly.lon, dolly.observed_at) == (27.4, -68.9, "2026-09-14T15:00:00Z")
    assert lowell.fields["classification"] == "TS" and lowell.fields["movement_speed_mph"] == 9.0
    assert NhcActiveStorms().parse(b'{"activeStorms": []}', None) == {"storms.tropical": []}  # out of season


def test_usgs_water_newest_reading_of_each_series_skipping_no_data() -> None:
    out = UsgsWater().parse(body("waterservices.usgs.gov/iv_latest_two_sites.json"), None)
    discharge = {r.fields["site"]: r for r in out["water.discharge"]}
    potomac, baton_rouge = discharge["01646500"], discharge["07374000"]
    assert potomac.fields["discharge_cfs"] == 4490.0 and potomac.fields["discharge_m3s"] == 127.143
    assert potomac.observed_at == "2026-11-22T16:15:00Z" and potomac.fields["provisional"] is True
    assert baton_rouge.fields["discharge_cfs"] == 331000.0  # the newest reading was the noDataValue
    (stage,) = [r for r in out["water.gage_height"] if r.fields["site"] == "07374000"]
    assert stage.fields["gage_height_ft"] == 14.86 and stage.fields["gage_height_m"] == 4.529


def test_carbon_intensity_by_region_with_approximate_centres() -> None:
    out = CarbonIntensityRegional().parse(body("api.carbonintensity.org.uk/regional.json"), None)
    intensity = {r.fields["region"]: r for r in out["energy.carbon_intensity"]}
    assert intensity["London"].fields["intensity_gco2_kwh"] == 168.0 and intensity["London"].lat == 51.5
    assert (intensity["GB"].lat, intensity["GB"].lon) == (None, None)  # a national aggregate has no place
    mix = {r.fields["region"]: r.fields for r in out["energy.generation_mix"]}
    assert mix["North Scotland"]["wind_pct"] == 87.9 and sum(
        v for k, v in mix["GB"].items() if k.endswith("_pct")
    ) == pytest.approx(100)


def test_goes_bands_side_by_side_with_noaas_scales() -> None:
    (*_, newest) = GoesXrays().parse(body("services.swpc.noaa.gov/xrays-6-hour.json"), None)["solar.xray_flux"]
    assert newest.fields == {
        "long_wm2": 2.488e-06,
        "short_wm2": 3.21e-07,
        "flare_class": "C2.5",
        "satellite": 18,
    }
    (*_, protons) = GoesProtons().parse(body("services.swpc.noaa.gov/integral-protons-6-hour.json"), None)[
        "solar.proton_flux"
    ]
    assert protons.fields["flux_10mev_pfu"] == 0.3236 and protons.fields["radiation_storm"] is None
    assert [flare_class(f) for f in (3.2e-9, 4.7e-7, 1.2e-5, 2e-4)] == ["A0.3", "B4.7", "M1.2", "X2.0"]
    assert [radiation_storm(f) for f in (9.9, 10, 150, 2e5)] == [None, "S1", "S2", "S5"]
