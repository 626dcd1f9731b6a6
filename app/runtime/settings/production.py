"""Running in production: the access log, the drain on SIGTERM, and OpenTelemetry traces."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator

from .fields import From, Frozen

ACCESS_LOG_OFF = ("off", "none", "false", "0")
ACCESS_LOG_ON = ("on", "true", "1")


class ProductionSettings(Frozen):
    # one JSON line per request on stderr: off | on | sample:N (one request in N, and every paid one and every 5xx)
    access_log: Annotated[str, From("WORLDGATE_ACCESS_LOG", "server.access_log")] = "on"
    # on SIGTERM, how long in-flight requests get to finish before what has not begun settling is cancelled
    shutdown_grace_s: Annotated[
        float, From("WORLDGATE_SHUTDOWN_GRACE_S", "server.shutdown_grace_s"), Field(ge=0, le=3600)
    ] = 30.0
    # OTLP/HTTP collector (the OpenTelemetry variable, read as the SDK reads it); unset: no tracing at all
    otlp_endpoint: Annotated[str | None, From("OTEL_EXPORTER_OTLP_ENDPOINT", "tracing.otlp_endpoint")] = None

    @field_validator("access_log", mode="before")
    @classmethod
    def _access_log(cls, value: Any) -> str:
        text = str(value).strip().lower()
        if text in ACCESS_LOG_OFF:
            return "off"
        if text in ACCESS_LOG_ON:
            return "on"
        kind, _, every = text.partition(":")
        if kind == "sample" and every.isascii() and every.isdigit() and int(every) >= 1:
            return f"sample:{int(every)}"
        raise ValueError(f"{value!r} is not off, on or sample:N (N a whole number, 1 or more)")

    @field_validator("otlp_endpoint", mode="before")
    @classmethod
    def _endpoint(cls, value: Any) -> str | None:
        text = str(value or "").strip()
        if not text:
            return None
        if not text.startswith(("http://", "https://")):
            raise ValueError(f"{text!r} is not an http(s) URL like http://collector:4318")
        return text

    @property
    def access_log_every(self) -> int:
        """Log one request in this many (1: every one); 0: the access log is off."""
        if self.access_log == "off":
            return 0
        return 1 if self.access_log == "on" else int(self.access_log.partition(":")[2])
