"""The public paths the use cases price and the transports serve, named once for both transports and the
discovery documents (which link to every one of them)."""

from __future__ import annotations

STREAM_ROUTE = "GET /v1/streams/{id}"
STREAM_PREFIX = "/v1/streams/"
WORLD_ROUTE = "GET /v1/world"
WORLD_PATH = "/v1/world"
MCP_PATH = "/mcp"  # the MCP endpoint (streamable HTTP): the same data as tools
WELL_KNOWN_PATH = "/.well-known/x402"  # every paid resource with its offers (discovery)
OPENAPI_PATH = "/openapi.json"
LLMS_PATH = "/llms.txt"
