"""Reading settings: environment variables over the TOML file, key files, and messages naming the variable.

Both sources walk the fields' `From` marks and yield values under field names, so pydantic-settings merges
them (the environment wins, tables merge key by key) and the models validate one shape, whichever source.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, TomlConfigSettingsSource

from .model import BOUND_SOURCES, From, Settings, SettingsError

# `worldgate serve` hands its workers the validated settings here, as JSON (secrets included: the workers
# need them); nothing prints it, and a worker removes it from its environment once read.
SETTINGS_JSON_VAR = "WORLDGATE_SETTINGS_JSON"

ReadField = tuple[tuple[str, ...], FieldInfo, From]  # (path of field names, the field, where it is read)


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds (`EvmSettings | None` → EvmSettings), or None for a plain value."""
    options = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    for option in options:
        if isinstance(option, type) and issubclass(option, BaseModel):
            return option
    return None


def _fields(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[ReadField]:
    """Every field read from outside, nested ones included, with its path of field names."""
    for name, info in model.model_fields.items():
        inner = _submodel(info.annotation)
        if inner is not None:
            yield from _fields(inner, (*prefix, name))
            continue
        where = next((m for m in info.metadata if isinstance(m, From)), None)
        if where is not None:
            yield (*prefix, name), info, where


def _is_table(info: FieldInfo) -> bool:
    return get_origin(info.annotation) is dict


def _put(values: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for name in path[:-1]:
        values = values.setdefault(name, {})
    values[path[-1]] = value


def _read_key_file(path: str, name: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise SettingsError(f"{name}: cannot read the key file ({exc.strerror})") from None


def _pairs(text: str, name: str) -> dict[str, str]:
    """'basic=$0.001,standard=2000' → {"basic": "$0.001", "standard": "2000"} (prices, sharing states)."""
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise SettingsError(f"{name}: {item!r} is not name=price")
        pairs[key.strip()] = value.strip()
    return pairs


def _wanted(path: tuple[str, ...], where: From, only: Collection[str] | None, keys: bool) -> bool:
    return (only is None or path[0] in only) and (keys or not where.secret)


class EnvSource(PydanticBaseSettingsSource):
    """The variables in `env` that fields name; an empty one is unset (a rate limit's: off)."""

    def __init__(
        self, settings_cls: type[BaseSettings], env: Mapping[str, str], only: Collection[str] | None, keys: bool
    ) -> None:
        super().__init__(settings_cls)
        self.env, self.only, self.keys = env, only, keys

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads nested fields itself

    def _value(self, info: FieldInfo, where: From) -> Any:
        for name in (where.env, *where.also):
            text = self.env.get(name)
            if text is not None and (text != "" or where.keep_empty):
                return _pairs(text, name) if _is_table(info) else text
        key_file = self.env.get(f"{where.env}_FILE") if where.secret else None
        return _read_key_file(key_file, f"{where.env}_FILE") if key_file else None

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for path, info, where in _fields(self.settings_cls):
            if _wanted(path, where, self.only, self.keys):
                value = self._value(info, where)
                if value is not None:
                    _put(values, path, value)
        return values


class TomlSource(TomlConfigSettingsSource):
    """The config file's keys that fields name; a secret only through its key file."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path, only: Collection[str] | None, keys: bool) -> None:
        if not path.is_file():  # the stock source skips a missing file; a named one must exist
            raise SettingsError(f"cannot read config file {path}: no such file")
        self.path, self.only, self.keys = path, only, keys
        super().__init__(settings_cls, toml_file=path)

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        try:
            return super()._read_file(file_path)
        except OSError as exc:
            raise SettingsError(f"cannot read config file {self.path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {self.path} is not valid TOML: {exc}") from None

    def _table(self, dotted: str) -> Mapping[str, Any]:
        table: Any = self.toml_data
        for name in dotted.split("."):
            table = table.get(name, {})
            if not isinstance(table, Mapping):
                raise SettingsError(f"[{dotted}] in the config file must be a table")
        return table

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for path, _info, where in _fields(self.settings_cls):
            if where.toml is None or not _wanted(path, where, self.only, self.keys):
                continue
            section, _, key = where.toml.rpartition(".")
            table = self._table(section)
            if where.secret:
                refused = key.removesuffix("_file")
                if refused in table:
                    raise SettingsError(
                        f"[{section}] {refused} is not read from the config file: use {where.env} or {key}"
                    )
                if table.get(key):
                    _put(values, path, _read_key_file(str(table[key]), f"[{section}] {key}"))
            elif key in table:
                _put(values, path, table[key])
        return values


_KINDS = {
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "int_type": "must be an integer",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be text",
}


def _where(loc: tuple[int | str, ...]) -> tuple[From | None, bool]:
    """The `From` of the field an error's location ends in (dict keys and union tags after it are skipped),
    and whether the value may be shown (not for secrets, nor for what `repr` hides, like database URLs)."""
    model: type[BaseModel] | None = Settings
    found, shown = None, True
    for part in loc:
        info = model.model_fields.get(str(part)) if model is not None else None
        if info is None:
            break
        found = next((m for m in info.metadata if isinstance(m, From)), found)
        shown, model = info.repr and not (found and found.secret), _submodel(info.annotation)
    return found, shown


def settings_error(exc: ValidationError) -> SettingsError:
    """One SettingsError for pydantic's errors, each naming its variable; a secret's value is never shown."""
    lines: dict[str, str] = {}
    for error in exc.errors():
        (where, visible), kind, context = _where(error["loc"]), error["type"], error.get("ctx") or {}
        name = where.env if where else ".".join(map(str, error["loc"])) or "settings"
        if isinstance(context.get("error"), SettingsError):
            text = str(context["error"])
        elif kind == "value_error":
            text = f"{name} {context.get('error')}"
        elif kind in _KINDS:
            shown = f", not {error['input']!r}" if where is not None and visible else ""
            text = f"{name} {_KINDS[kind]}{shown}"
        elif kind in ("greater_than_equal", "greater_than"):
            bound = f"at least {context['ge']:g}" if "ge" in context else f"more than {context['gt']:g}"
            text = f"{name} must be {bound}"
        else:
            text = f"{name}: {error['msg']}"
        lines.setdefault(name, text)  # one line per variable (a union reports each of its types)
    return SettingsError("; ".join(lines.values()))


_REMOTE = "X402_FACILITATOR_URL (remote facilitator)"


def check_settlement(settings: Settings) -> None:
    """A server settling with the local facilitator needs each chain's RPC and key; commands that
    only read the ledger or the chain do not."""
    if settings.facilitator_url is not None:  # a remote facilitator does the chain work
        return
    if settings.evm is not None and not settings.evm.rpc_url:
        raise SettingsError(f"set WORLDGATE_EVM_RPC_URL (local facilitator) or {_REMOTE}")
    if settings.evm is not None and not settings.evm.relayer_key:
        raise SettingsError(
            "the local facilitator needs a relayer key to pay settlement gas: WORLDGATE_EVM_RELAYER_KEY or _FILE"
        )
    if settings.svm is not None and not settings.svm.rpc_url:
        raise SettingsError(f"set WORLDGATE_SVM_RPC_URL (local facilitator) or {_REMOTE}")
    if settings.svm is not None and not settings.svm.fee_payer_key:
        raise SettingsError(
            "the local facilitator needs a fee payer key to co-sign Solana payments:"
            " WORLDGATE_SVM_FEE_PAYER_KEY or _FILE"
        )


def load_settings(
    env: Mapping[str, str] | None = None,
    config_path: str | Path | None = None,
    *,
    only: Collection[str] | None = None,
    keys: bool = True,
) -> Settings:
    """Settings from `env` (default os.environ) over the TOML file at `config_path` or $WORLDGATE_CONFIG.

    With `only` (top-level field names) just those are read and checked and the rest keep their defaults;
    with `keys=False` no key or other secret is read: a command is refused for nothing it does not use.
    The whole set is a server's, keys to settle with included.
    """
    env = os.environ if env is None else env
    path = config_path or env.get("WORLDGATE_CONFIG")
    sources: list[PydanticBaseSettingsSource] = [EnvSource(Settings, env, only, keys)]  # first wins
    if path:
        sources.append(TomlSource(Settings, Path(path), only, keys))
    bound = BOUND_SOURCES.set(tuple(sources))
    try:
        settings = Settings()
    except ValidationError as exc:
        raise settings_error(exc) from None
    finally:
        BOUND_SOURCES.reset(bound)
    if settings.reconcile.grace_s <= 0:  # the model takes 0 for tests; a server must leave requests their time
        raise SettingsError("WORLDGATE_RECONCILE_GRACE_S must be more than 0")
    if only is None and keys:
        check_settlement(settings)
    return settings


def settings_json(settings: Settings) -> str:
    """The whole object, secrets included, for `settings_from_json` in a worker process."""
    return settings.model_dump_json()


def settings_from_json(text: str) -> Settings:
    try:
        return Settings.model_validate_json(text)
    except ValidationError as exc:
        raise settings_error(exc) from None
