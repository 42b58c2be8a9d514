"""The tracking callback's options read into the form it works with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def tracking_on(config: Mapping[str, Any]) -> bool:
    """A composed config's run is tracked: its tracking group is set and the callbacks' tracking
    entry is on (``tracking=none`` sets ``callbacks.tracking`` to null)."""
    return config.get("tracking") is not None and (config.get("callbacks") or {}).get("tracking") is not None


def checkpoint_kinds(value: bool | str | Sequence[str] | None) -> list[str]:
    """``log_checkpoints`` as a list: True is both, False/None is none, a string is one."""
    if value is None or value is False:
        return []
    if value is True:
        return ["best", "last"]
    kinds = [value] if isinstance(value, str) else list(value)
    unknown = [kind for kind in kinds if kind not in ("best", "last")]
    if unknown:
        from medkit_exp.errors import ConfigError

        raise ConfigError("tracking.log_checkpoints", f"must be 'best', 'last' or both, got {unknown}")
    return kinds
