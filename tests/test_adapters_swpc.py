"""NOAA SWPC's adapters (Kp, solar wind) against their recorded payloads and bodies derived from them: the
request, the readings kept, their order, the active spacecraft, nulls and malformed rows. The helpers are
tests/test_adapters.py's (every adapter's common checks live there)."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.errors import ParseError
from adapters.records import Record
from adapters.upstream import noaa_swpc
from adapters.upstream.base import UpstreamRequest
from adapters.upstream.noaa_swpc import NoaaKp, NoaaSolarWind, storm_level

from .test_adapters import encode, fixture, fixture_json, parse

# --- NOAA SWPC Kp -----------------------------------------------------------------------------------


def test_kp_request_and_the_most_recent_24_readings() -> None:
    adapter = NoaaKp()
    assert adapter.request(None) == UpstreamRequest("services.swpc.noaa.gov", "/json/planetary_k_index_1m.json")
    records = parse(adapter)["space.kp"]
    assert len(fixture_json(adapter)) == 30
    assert len(records) == 24
    assert [r.observed_at for r in records] == sorted(r.observed_at for r in records)
    assert records[0].observed_at == "2026-07-09T09:37:00Z"
    assert records[-1].observed_at == "2026-07-09T10:00:00Z"
    assert records[-1].fields == {"kp": 1.67, "kp_index": 2, "storm_level": None}
    assert next(r for r in records if r.observed_at == "2026-07-09T09:44:00Z").fields["kp"] == 2.0
    assert all(r.lat is None and r.lon is None for r in records)


def test_kp_newest_last_even_when_the_body_is_not_ordered() -> None:
    rows = fixture_json(NoaaKp())
    records = parse(NoaaKp(), encode(list(reversed(rows))))["space.kp"]
    assert records[-1].observed_at == "2026-07-09T10:00:00Z"
    assert records[0].observed_at == "2026-07-09T09:37:00Z"


def test_kp_storm_levels_follow_the_noaa_g_scale() -> None:
    # SWPC's 3-day forecast prints 4.67 (5-) as "(G1)", 5.67 as "(G2)", 8.33 as "(G4)"
    assert [storm_level(kp) for kp in (0.0, 4.0, 4.33)] == [None, None, None]
    assert storm_level(4.67) == "G1"
    assert storm_level(5.0) == "G1"
    assert storm_level(5.67) == "G2"
    assert storm_level(6.67) == "G3"
    assert storm_level(7.67) == "G4"
    assert storm_level(8.33) == "G4"
    assert storm_level(9.0) == "G5"
    rows = fixture_json(NoaaKp())
    rows[-1].update(kp_index=5, estimated_kp=4.67, kp="5M")
    newest = parse(NoaaKp(), encode(rows))["space.kp"][-1]
    assert newest.fields == {"kp": 4.67, "kp_index": 5, "storm_level": "G1"}


def test_kp_empty_array() -> None:
    assert parse(NoaaKp(), b"[]") == {"space.kp": []}


# --- NOAA SWPC solar wind ---------------------------------------------------------------------------


# The recorded rtsw_wind_1m.json: 41 records, 2026-09-06 17:43 to 17:59 UTC, newest first; SOLAR1 active
# (one a minute), ACE and IMAP inactive.
def _plasma(density: float | None, speed: float | None, temperature: float | None, spacecraft: str) -> dict[str, Any]:
    return {"density_cm3": density, "speed_km_s": speed, "temperature_k": temperature, "spacecraft": spacecraft}


WIND_FIRST = _plasma(6.13, 350.4, 91314.0, "SOLAR1")
WIND_LAST = _plasma(5.66, 346.2, 88931.0, "SOLAR1")


def _wind_rows() -> list[dict[str, Any]]:
    return fixture_json(NoaaSolarWind())


def _wind(rows: Any) -> list[Record]:
    return parse(NoaaSolarWind(), encode(rows))["space.solar_wind"]


def _row(rows: list[dict[str, Any]], time_tag: str, source: str) -> dict[str, Any]:
    return next(row for row in rows if row["time_tag"] == time_tag and row["source"] == source)


def test_solar_wind_request_and_the_active_spacecrafts_readings() -> None:
    adapter = NoaaSolarWind()
    assert adapter.request(None) == UpstreamRequest("services.swpc.noaa.gov", "/json/rtsw/rtsw_wind_1m.json")
    rows = _wind_rows()
    assert len(rows) == 41
    assert {(row["source"], row["active"]) for row in rows} == {("SOLAR1", True), ("ACE", False), ("IMAP", False)}
    records = parse(adapter)["space.solar_wind"]
    assert len(records) == 17  # SOLAR1 only, one a minute
    assert [r.observed_at for r in records] == [f"2026-09-06T17:{minute}:00Z" for minute in range(43, 60)]
    assert records[0].fields == WIND_FIRST
    assert records[-1].fields == WIND_LAST
    assert next(r for r in records if r.observed_at == "2026-09-06T17:55:00Z").fields == _plasma(
        5.0, 345.9, 92106.0, "SOLAR1"
    )
    assert all(isinstance(value, float) for r in records for key, value in r.fields.items() if key != "spacecraft")
    assert all(r.lat is None and r.lon is None and r.source == "NOAA SWPC" for r in records)


def test_solar_wind_oldest_first_whatever_the_order_of_the_body() -> None:
    assert _wind(list(reversed(_wind_rows()))) == parse(NoaaSolarWind())["space.solar_wind"]


def test_solar_wind_follows_the_active_flag_not_a_spacecraft_name() -> None:
    rows = _wind_rows()
    for row in rows:
        row["active"] = row["source"] == "ACE"
    records = _wind(rows)
    assert len(records) == 15
    assert {r.fields["spacecraft"] for r in records} == {"ACE"}
    assert records[0].observed_at == "2026-09-06T17:43:00Z"
    assert records[0].fields == _plasma(3.57, 356.24, 52299.0, "ACE")
    assert records[-1].fields == _plasma(3.71, 357.23, 59925.0, "ACE")


@pytest.mark.parametrize("unflag", ["false", "absent"])
def test_solar_wind_keeps_every_spacecraft_when_none_is_active(unflag: str) -> None:
    rows = _wind_rows()
    for row in rows:
        if unflag == "false":
            row["active"] = False
        else:
            del row["active"]
    records = _wind(rows)
    assert len(records) == 41
    assert sum(r.fields["spacecraft"] == "SOLAR1" for r in records) == 17
    assert sum(r.fields["spacecraft"] == "ACE" for r in records) == 15
    assert sum(r.fields["spacecraft"] == "IMAP" for r in records) == 9
    assert [r.observed_at for r in records] == sorted(r.observed_at for r in records)
    # a shared minute is ordered by spacecraft name; IMAP is tagged six seconds past the minute
    assert [(r.observed_at, r.fields["spacecraft"]) for r in records[:3]] == [
        ("2026-09-06T17:43:00Z", "ACE"),
        ("2026-09-06T17:43:00Z", "SOLAR1"),
        ("2026-09-06T17:43:06Z", "IMAP"),
    ]
    assert records[2].fields == _plasma(7.59, 345.42, 72520.0, "IMAP")
    assert records[-1].fields == WIND_LAST


def test_solar_wind_null_values_are_missing_and_all_null_rows_are_skipped() -> None:
    rows = _wind_rows()
    _row(rows, "2026-09-06T17:59:00", "SOLAR1")["proton_temperature"] = None
    _row(rows, "2026-09-06T17:57:00", "SOLAR1").update(proton_speed=None, proton_density=None)
    _row(rows, "2026-09-06T17:58:00", "SOLAR1").update(proton_speed=None, proton_temperature=None, proton_density=None)
    _row(rows, "2026-09-06T17:56:00", "SOLAR1").update(  # no data, so not even its time is read
        time_tag=None, proton_speed=None, proton_temperature=None, proton_density=None
    )
    records = _wind(rows)
    assert len(records) == 15
    times = [r.observed_at for r in records]
    assert "2026-09-06T17:58:00Z" not in times and "2026-09-06T17:56:00Z" not in times
    assert records[-1].fields == {**WIND_LAST, "temperature_k": None}
    assert records[-2].observed_at == "2026-09-06T17:57:00Z"
    assert records[-2].fields == _plasma(None, None, 92239.0, "SOLAR1")


def test_solar_wind_a_null_active_spacecraft_does_not_hand_over_to_another() -> None:
    rows = _wind_rows()
    for row in rows:
        if row["active"]:
            row.update(proton_speed=None, proton_temperature=None, proton_density=None)
    assert _wind(rows) == []


def test_solar_wind_non_finite_values_are_missing() -> None:
    body = fixture(NoaaSolarWind()).replace(b'"proton_speed": 346.2,', b'"proton_speed": NaN,')
    body = body.replace(b'"proton_density": 5.66,', b'"proton_density": Infinity,')
    newest = parse(NoaaSolarWind(), body)["space.solar_wind"][-1]
    assert newest.fields == {**WIND_LAST, "speed_km_s": None, "density_cm3": None}


def test_solar_wind_keeps_the_most_recent(monkeypatch: pytest.MonkeyPatch) -> None:
    assert noaa_swpc.SOLAR_WIND_KEEP == 60
    monkeypatch.setattr(noaa_swpc, "SOLAR_WIND_KEEP", 5)
    records = parse(NoaaSolarWind())["space.solar_wind"]
    assert [r.observed_at for r in records] == [f"2026-09-06T17:{minute}:00Z" for minute in range(55, 60)]
    assert records[-1].fields == WIND_LAST


def test_solar_wind_empty_array() -> None:
    assert parse(NoaaSolarWind(), b"[]") == {"space.solar_wind": []}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"proton_speed": "346.2"}, "proton_speed"),
        ({"proton_density": "fast"}, "proton_density"),
        ({"proton_temperature": True}, "proton_temperature"),
        ({"proton_speed": [346.2]}, "proton_speed"),
        ({"active": "true"}, "active"),
        ({"active": 1}, "active"),
        ({"source": 7}, "source"),
        ({"time_tag": None}, "timestamp"),
        ({"time_tag": "yesterday"}, "timestamp"),
        ({"time_tag": 1788717540000}, "timestamp"),
        ({"time_tag": "0001-01-01T00:00:00+01:00"}, "outside the calendar"),
    ],
)
def test_solar_wind_refuses_a_malformed_record(change: dict[str, Any], message: str) -> None:
    rows = _wind_rows()
    _row(rows, "2026-09-06T17:59:00", "SOLAR1").update(change)
    with pytest.raises(ParseError, match=message):
        _wind(rows)


def test_solar_wind_refuses_a_malformed_inactive_record_too() -> None:
    rows = _wind_rows()
    _row(rows, "2026-09-06T17:59:00", "ACE")["proton_speed"] = "357.23"
    with pytest.raises(ParseError, match="proton_speed"):
        _wind(rows)


@pytest.mark.parametrize("row", [None, 5, "record", ["2026-09-06T17:59:00", True, "SOLAR1", 346.2]])
def test_solar_wind_refuses_a_record_that_is_not_an_object(row: Any) -> None:
    with pytest.raises(ParseError, match="not an object"):
        _wind([*_wind_rows(), row])


def test_solar_wind_refuses_the_retired_plasma_1_day_shape() -> None:
    retired = [["time_tag", "density", "speed", "temperature"], ["2026-09-06 17:59:00.000", "5.66", "346.2", "88931"]]
    with pytest.raises(ParseError):
        _wind(retired)
