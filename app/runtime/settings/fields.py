"""The parts every settings model is built of: the `From` mark (where a field is read) and the frozen base."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict


@dataclass(frozen=True)
class From:
    """Where a field is read: the variable `env` (or an older name in `also`) over `toml`, "section.key".

    A `secret` comes from the variable, the file named by `<env>_FILE`, or the file named by its TOML
    key (which ends in `_file`); never from the TOML file itself, which tends to get committed.
    `keep_empty`: an empty variable is a value (a rate limit's "off") instead of unset.
    """

    env: str
    toml: str | None = None
    secret: bool = False
    keep_empty: bool = False
    also: tuple[str, ...] = ()


class Frozen(BaseModel):
    # inputs stay out of pydantic's messages: a key may be one of them
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)
