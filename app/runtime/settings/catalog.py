"""The catalog's settings (adapters/): each source's refresh interval, and which finer grids the scheduler keeps
warm."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator

from .fields import From, Frozen

GRID_RESOLUTIONS = (2, 5, 10, 20)  # adapters/upstream/open_meteo_grids.py


class CatalogSettings(Frozen):
    # fetch group → refresh interval in seconds (at least 10), over the registry's; e.g. usgs.earthquakes=120
    source_intervals: Annotated[dict[str, float], From("WORLDGATE_SOURCE_INTERVALS", "catalog.source_intervals")] = (
        Field(default_factory=dict)
    )
    # finer grid resolutions (degrees) the scheduler keeps warm; the others are fetched when first bought
    grid_prewarm: Annotated[tuple[int, ...], From("WORLDGATE_GRID_PREWARM", "catalog.grid_prewarm")] = ()

    @field_validator("grid_prewarm", mode="before")
    @classmethod
    def _resolutions(cls, value: Any) -> tuple[int, ...]:
        """A list (TOML) or comma-separated text (env) of 2, 5, 10 or 20."""
        items = value if isinstance(value, list | tuple) else str(value or "").split(",")
        try:
            chosen = tuple(dict.fromkeys(int(str(i).strip()) for i in items if str(i).strip()))
        except ValueError:
            raise ValueError(f"grid resolutions are whole degrees: {', '.join(map(str, GRID_RESOLUTIONS))}") from None
        unknown = [r for r in chosen if r not in GRID_RESOLUTIONS]
        if unknown:
            raise ValueError(f"no {unknown[0]}-degree grid: choose from {', '.join(map(str, GRID_RESOLUTIONS))}")
        return chosen
