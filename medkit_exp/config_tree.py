"""The resolved config as the applications print it: an indented tree, one group per branch,
secrets redacted (``python -m medkit_exp`` at the start of a run, the sweeper once per sweep)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from omegaconf import DictConfig, ListConfig


def config_tree(cfg: DictConfig, leave_out: Iterable[str] = ()) -> str:
    """``Configuration:`` and one branch per top-level key of ``cfg`` but those of ``leave_out``.
    A value that cannot be resolved yet (before a sweep's trials, ``${hydra:runtime.output_dir}``:
    each trial has its own) is shown as written."""
    from medkit_exp.redaction import redact_value
    from medkit_exp.tracking.params import redacted_yaml

    skipped = set(leave_out)
    lines = ["Configuration:"]
    for key in cfg:
        if key in skipped:
            continue
        value = _resolved(cfg, key)
        if isinstance(value, dict):
            lines.append(f"├── {key}")
            lines += [f"│   {line}" for line in redacted_yaml(value).rstrip().splitlines()]
        else:
            lines.append(f"├── {key}: {redact_value(value)}")
    return "\n".join(lines)


def _resolved(node: DictConfig | ListConfig, key: Any) -> Any:
    """``node[key]`` as plain data, resolved where it can be, else as written."""
    try:
        value = node[key]
    except Exception:  # noqa: BLE001 - OmegaConf's interpolation errors have many types
        return str(node._get_node(key)._value())
    if isinstance(value, DictConfig):
        return {str(k): _resolved(value, k) for k in value}
    if isinstance(value, ListConfig):
        return [_resolved(value, index) for index in range(len(value))]
    return value
