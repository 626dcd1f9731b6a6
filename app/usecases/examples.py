"""Example answers of the paid routes, as the 402's `bazaar` extension and /openapi.json show them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters import Stream
from app.usecases.params import LAT, LON
from app.usecases.queries import WORLD_RADIUS_KM_DEFAULT

# A few real-looking fields per stream for the example answers (the full set is in each adapter).
_SAMPLE_RECORDS: Mapping[str, tuple[str, dict[str, Any]]] = {
    "weather.current": ("Open-Meteo", {"temperature_c": 11.2, "wind_speed_kmh": 9.7, "cloud_cover_pct": 75}),
    "weather.grid.temperature": ("Open-Meteo", {"temperature_c": 14.6}),
    "weather.grid.wind": ("Open-Meteo", {"wind_speed_kmh": 18.4, "wind_direction_deg": 240}),
    "weather.grid.precipitation": ("Open-Meteo", {"precipitation_mm": 0.4}),
    "air.quality": ("Open-Meteo Air Quality", {"us_aqi": 42, "european_aqi": 31, "pm2_5_ugm3": 9.1}),
    "quakes.usgs": ("USGS Earthquake Hazards Program", {"magnitude": 4.6, "depth_km": 10.0, "place": "Sicily, Italy"}),
    "iss.position": ("wheretheiss.at", {"altitude_km": 419.8, "velocity_kmh": 27580.4, "visibility": "daylight"}),
    "space.kp": ("NOAA SWPC", {"kp": 2.33, "kp_index": 2, "storm_level": None}),
    "space.solar_wind": ("NOAA SWPC", {"speed_km_s": 412.3, "density_cm3": 5.1, "temperature_k": 88931}),
    "disasters.gdacs": ("GDACS", {"event_type": "EQ", "name": "Earthquake in Italy", "alert_level": "Green"}),
    "events.eonet": ("NASA EONET", {"title": "Wildfire near Etna, Italy", "category": "wildfires"}),
    "static.capitals": ("worldgate:capitals.json", {"country": "France", "iso2": "FR", "capital": "Paris"}),
    "static.volcanoes": ("worldgate:volcanoes.json", {"name": "Etna", "country": "Italy", "elevation_m": 3357}),
}
_EXAMPLE_TIME = "2026-11-22T16:25:00Z"
_EXAMPLE_FETCHED = {"fetched_at": "2026-11-22T16:29:33Z", "age_seconds": 12.0, "stale": False, "freshness": "fresh"}


def _example_record(stream_id: str, source: str | None = None, *, located: bool = True) -> dict[str, Any]:
    sample_source, fields = _SAMPLE_RECORDS.get(stream_id, (source or "", {}))
    return {
        "stream": stream_id,
        "observed_at": _EXAMPLE_TIME,
        "lat": LAT.example if located else None,
        "lon": LON.example if located else None,
        "fields": fields,
        "source": sample_source,
    }


def stream_example(stream: Stream) -> dict[str, Any]:
    """A 200 of GET /v1/streams/{id}, one record long (the shape app/usecases/reads.py answers)."""
    return {
        "stream": stream.id,
        "name": stream.name,
        "type": stream.type.value,
        **_EXAMPLE_FETCHED,
        "count": 1,
        "records": [_example_record(stream.id, stream.upstream)],
        "license": stream.license,
        "attribution": stream.attribution,
    }


def world_example() -> dict[str, Any]:
    """A 200 of GET /v1/world, cut short to what tells its parts apart: a point's record, the nearest records,
    the ISS's distance, the latest Kp, a part that could not be read and why (real parts also carry their
    fetched_at, age_seconds, stale and cache; the header has no room for them)."""

    def part(stream_id: str, **rest: Any) -> dict[str, Any]:
        return {"stream": stream_id, "available": True, **rest}

    return {
        "lat": LAT.example,
        "lon": LON.example,
        "radius_km": WORLD_RADIUS_KM_DEFAULT,
        "weather": part("weather.current", freshness="fresh", record=_example_record("weather.current")),
        "air_quality": {"stream": "air.quality", "available": False, "reason": "upstream unavailable"},
        "earthquakes": part("quakes.usgs", count=0, records=[]),
        "disasters": part("disasters.gdacs", count=0, records=[]),
        "natural_events": part("events.eonet", count=0, records=[]),
        "iss": part("iss.position", distance_km=6120.4),
        "space_weather": part("space.kp", record=_example_record("space.kp", located=False)),
    }
