"""NOAA SWPC: GOES X-ray flux and integral proton flux, the last six hours (US public domain).

Documented at services.swpc.noaa.gov/json/goes/ (the primary GOES satellite's 1-minute products):
- /json/goes/primary/xrays-6-hour.json: an array of objects, oldest first, two per minute, one per band:
  `{"time_tag": "2026-11-22T16:25:00Z", "satellite": 18, "flux": 1.05e-06 (W/m²), "observed_flux",
  "electron_correction", "electron_contaminaton", "energy": "0.1-0.8nm" | "0.05-0.4nm"}`.
- /json/goes/primary/integral-protons-6-hour.json: the same layout, one object per minute and energy threshold:
  `{"time_tag", "satellite", "flux" (particles cm⁻² s⁻¹ sr⁻¹, pfu), "energy": ">=10 MeV"}` (>=1 ... >=500 MeV).

Each record is one minute: the bands (thresholds) side by side, with NOAA's scale for it: the flare class of the
long band (A, B, C, M, X: 1e-8, 1e-7 ... 1e-4 W/m²) and the radiation storm level of >=10 MeV (S1 at 10 pfu ...
S5 at 100000 pfu).
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import ParseError
from ..records import Record
from .base import Point, UpstreamRequest, iso, load_json

HOST = "services.swpc.noaa.gov"
SOURCE = "NOAA SWPC (GOES)"
XRAY, PROTON = "solar.xray_flux", "solar.proton_flux"
KEEP = 60  # the newest hour of minutes

XRAY_BANDS = {"0.1-0.8nm": "long_wm2", "0.05-0.4nm": "short_wm2"}
PROTON_BANDS = {">=10 MeV": "flux_10mev_pfu", ">=50 MeV": "flux_50mev_pfu", ">=100 MeV": "flux_100mev_pfu"}


def flare_class(flux_wm2: float) -> str:
    """GOES 0.1-0.8 nm flux as NOAA's flare class: C3.2 is 3.2e-6 W/m²."""
    for letter, floor in (("X", 1e-4), ("M", 1e-5), ("C", 1e-6), ("B", 1e-7)):
        if flux_wm2 >= floor:
            return f"{letter}{flux_wm2 / floor:.1f}"
    return f"A{flux_wm2 / 1e-8:.1f}"


def radiation_storm(flux_pfu: float) -> str | None:
    """NOAA's solar radiation storm scale on the >=10 MeV flux: S1 at 10 pfu, each level ten times more."""
    level = math.floor(math.log10(flux_pfu)) if flux_pfu > 0 else 0
    return f"S{min(level, 5)}" if level >= 1 else None


def _minutes(body: bytes, bands: dict[str, str], what: str) -> list[tuple[str, int | None, dict[str, float]]]:
    """(time, satellite, band field → value) per minute, oldest first, from one of the 6-hour products."""
    document = load_json(body)
    if not isinstance(document, list):
        raise ParseError(f"not an array of {what} readings")
    minutes: dict[str, tuple[int | None, dict[str, float]]] = {}
    for row in document:
        if not isinstance(row, dict):
            raise ParseError(f"a {what} reading is not an object")
        field, flux = bands.get(row.get("energy")), row.get("flux")
        if field is None or flux is None:
            continue  # a band not sold, or a minute without a value
        if isinstance(flux, bool) or not isinstance(flux, int | float) or not math.isfinite(flux):
            raise ParseError(f"a {what} flux is {flux!r}, not a number")
        satellite: Any = row.get("satellite")
        minute = minutes.setdefault(iso(row.get("time_tag")), (satellite if isinstance(satellite, int) else None, {}))
        minute[1][field] = float(flux)
    return [(at, sat, values) for at, (sat, values) in sorted(minutes.items())]


class _GoesProduct:
    host = HOST
    point = False
    name: str
    streams: tuple[str, ...]
    path: str
    bands: dict[str, str]

    def scale(self, values: dict[str, float]) -> dict[str, Any]:
        """NOAA's scale for one minute's values."""
        raise NotImplementedError

    def request(self, point: Point | None) -> UpstreamRequest:
        return UpstreamRequest(self.host, self.path)

    def parse(self, body: bytes, point: Point | None) -> dict[str, list[Record]]:
        stream = self.streams[0]
        records = [
            Record(stream, at, None, None, {**values, **self.scale(values), "satellite": satellite}, SOURCE)
            for at, satellite, values in _minutes(body, self.bands, stream)[-KEEP:]
        ]
        return {stream: records}


class GoesXrays(_GoesProduct):
    name = "noaa-swpc.xrays"
    streams = (XRAY,)
    path = "/json/goes/primary/xrays-6-hour.json"
    bands = XRAY_BANDS

    def scale(self, values: dict[str, float]) -> dict[str, Any]:
        long = values.get("long_wm2")
        return {"flare_class": flare_class(long) if long is not None and long > 0 else None}


class GoesProtons(_GoesProduct):
    name = "noaa-swpc.protons"
    streams = (PROTON,)
    path = "/json/goes/primary/integral-protons-6-hour.json"
    bands = PROTON_BANDS

    def scale(self, values: dict[str, float]) -> dict[str, Any]:
        ten = values.get("flux_10mev_pfu")
        return {"radiation_storm": radiation_storm(ten) if ten is not None else None}
