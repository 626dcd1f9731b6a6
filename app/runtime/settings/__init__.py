"""Settings: one frozen, serialisable object, read from environment variables over an optional TOML file.

Every variable is listed in the README. Secrets (relayer keys, facilitator auth, database passwords)
never appear in `repr`, the banner or errors, and keys come only from the environment or key files,
never from the TOML file. `worldgate serve` validates the object once and hands every worker the same
one (`settings_json` → `settings_from_json`).
"""

from .live import LiveSettings
from .load import SETTINGS_JSON_VAR, check_settlement, load_settings, settings_error, settings_from_json, settings_json
from .model import (
    ADMIN_ALGORITHMS,
    DEFAULT_PRICE_TIERS,
    RATE_LIMIT_OFF,
    SHARING_STATES,
    AdminSettings,
    BatchSettings,
    EvmSettings,
    From,
    LimitSettings,
    ProductionSettings,
    ReconcileSettings,
    Settings,
    SettingsError,
    SvmSettings,
    redact_url,
    replace,
)

__all__ = [
    "ADMIN_ALGORITHMS",
    "DEFAULT_PRICE_TIERS",
    "RATE_LIMIT_OFF",
    "SETTINGS_JSON_VAR",
    "SHARING_STATES",
    "AdminSettings",
    "BatchSettings",
    "EvmSettings",
    "From",
    "LimitSettings",
    "LiveSettings",
    "ProductionSettings",
    "ReconcileSettings",
    "Settings",
    "SettingsError",
    "SvmSettings",
    "check_settlement",
    "load_settings",
    "redact_url",
    "replace",
    "settings_error",
    "settings_from_json",
    "settings_json",
]
