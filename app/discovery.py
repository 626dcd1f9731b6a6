"""Discovery for agents and tools: /.well-known/x402, /openapi.json and /llms.txt (being built, issue 6)."""

from __future__ import annotations

from collections.abc import Callable

from starlette.routing import BaseRoute

from adapters import Registry

from .gate import Services
from .settings import Settings


def routes(services: Services, registry: Callable[[], Registry], settings: Settings) -> list[BaseRoute]:
    """The discovery routes; they read the live registry and prices, so sharing changes show at once."""
    return []
