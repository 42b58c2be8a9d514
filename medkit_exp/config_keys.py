"""The config keys the schemas accept, and the one-line errors that name a wrong one.

The bottom of the config checks (:mod:`medkit_exp.config_values` checks values with these,
:mod:`medkit_exp.config_check` whole configs, :mod:`medkit_exp.config_compose` the command
line): which keys exist (:func:`check_key` walks the schema dataclasses), which are derived from
another key, which each optimizer and schedule uses, and the nearest valid keys of a wrong one.

>>> from medkit_exp.schema import MedkitExpConfig
>>> check_key("trainer.batch_sise", MedkitExpConfig)
Traceback (most recent call last):
...
medkit_exp.errors.ConfigError: config key 'trainer.batch_sise': unknown config key; did you mean trainer.batch_size or trainer.eval_batch_size?
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from medkit_exp.conf_location import config_dir
from medkit_exp.errors import ConfigError

#: Keys whose value is another key's (one key per value): the trainer's optimisation settings are
#: the optimizer group's, interpolated in ``conf/trainer/*.yaml``.
DERIVED_KEYS = {
    "trainer.learning_rate": "optimizer.lr",
    "trainer.weight_decay": "optimizer.weight_decay",
    "trainer.max_grad_norm": "optimizer.max_grad_norm",
}
#: The keys of the ``optimizer`` group each optimizer uses besides lr, weight_decay and
#: max_grad_norm (the others must keep their defaults); the app builds it (``use_optimizer``).
OPTIMIZER_KEYS = {"adamw": (), "sgd": ("momentum",)}
OPTIMIZERS = tuple(OPTIMIZER_KEYS)
OPTIMIZER_COMMON_KEYS = ("lr", "weight_decay", "max_grad_norm")
#: The keys of the ``scheduler`` group each schedule uses (the others must keep their defaults).
SCHEDULER_KEYS = {
    "none": (),
    "linear": ("warmup_ratio", "warmup_steps", "min_lr_ratio"),
    "cosine": ("warmup_ratio", "warmup_steps", "min_lr_ratio"),
    "constant": ("warmup_ratio", "warmup_steps", "min_lr_ratio"),
    "plateau": ("mode", "factor", "patience"),
}


#: Keys that moved, and where (a one-line answer to a command line written for the old layout).
MOVED_KEYS = {
    **{f"tracking.{key}": f"tracking.model_hooks.0.{key}" for key in (
        "register_model_name", "model_alias", "validate_model", "dev_report", "prediction_sample_size")},
    "tracking.enabled": "tracking=none (the tracking group set to null)",
    "callbacks.progress_bar": "callbacks.printer.progress_bar",
    "callbacks.early_stopping.enabled": "callbacks=early_stopping (the entry; null: off)",
}
#: Open groups of named entries (each a ``_target_``, or null): their keys are the entries' classes'.
ENTRY_GROUPS = ("callbacks.",)


# ----------------------------------------------------------------------------- messages
def unknown_key(prefix: str, key: str, valid: Iterable[str], what: str = "unknown config key") -> ConfigError:
    """``ConfigError`` naming ``prefix + key`` and the nearest of ``valid`` (else all of them)."""
    valid = sorted(str(name) for name in valid)
    near = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    if near:
        hint = f"did you mean {' or '.join(prefix + name for name in near)}?"
    else:
        hint = f"valid keys: {', '.join(prefix + name for name in valid)}"
    return ConfigError(f"{prefix}{key}", f"{what}; {hint}")


def suggestion(value: str, valid: Iterable[str]) -> str:
    """"did you mean X?" for the nearest of ``valid``, else the list of them."""
    valid = sorted(str(name) for name in valid)
    near = difflib.get_close_matches(value, valid, n=3, cutoff=0.6)
    return f"did you mean {' or '.join(near)}?" if near else f"valid: {', '.join(valid)}"


# ----------------------------------------------------------------------------- schemas
@lru_cache(maxsize=None)
def schema_fields(schema: type) -> dict[str, Any]:
    """A dataclass's fields and their (resolved) types; an optional group (``tracking``, null
    when off) as its dataclass, whose keys are checked the same."""
    hints = typing.get_type_hints(schema)
    return {spec.name: optional_dataclass(hints[spec.name]) for spec in dataclasses.fields(schema)}


def optional_dataclass(kind: Any) -> Any:
    """``X`` for ``X | None`` when ``X`` is a dataclass, else ``kind``."""
    args = [arg for arg in typing.get_args(kind) if arg is not type(None)]
    if len(args) == 1 and dataclasses.is_dataclass(args[0]) and type(None) in typing.get_args(kind):
        return args[0]
    return kind


def check_key(key: str, schema: type, added: bool = False) -> None:
    """A dotted key (of a command-line override) exists in ``schema``; the component's keys are
    checked here when set without ``+`` (they must be in its config file), else by
    :func:`check_config` against the class."""
    if key in DERIVED_KEYS:
        raise derived_key_error(key)
    if key in MOVED_KEYS:
        raise ConfigError(key, f"moved: use {MOVED_KEYS[key]}")
    parts, cls, prefix = key.split("."), schema, ""
    for position, part in enumerate(parts):
        fields = schema_fields(cls)
        if part not in fields:
            raise unknown_key(prefix, part, fields)
        kind, prefix = fields[part], f"{prefix}{part}."
        if prefix == "component." and len(parts) > position + 1 and not added:
            _check_component_file_key(parts[position + 1])
            return
        if prefix in ENTRY_GROUPS and len(parts) > position + 2 and not added:
            _check_entry_file_key(prefix, parts[position + 1], parts[position + 2])
            return
        if not dataclasses.is_dataclass(kind):
            return  # a value, or an open mapping: Hydra checks the rest
        cls = kind


def _check_component_file_key(key: str) -> None:
    """Without ``+``, Hydra sets only the keys a ``conf/component`` file has."""
    known = component_file_keys()
    if key not in known and not key.startswith("_"):
        raise unknown_key("component.", key, [k for k in known if not k.startswith("_")],
                          what="not in conf/component (a parameter of the class not set there: +component.KEY=VALUE)")


@lru_cache(maxsize=1)
def component_file_keys() -> frozenset[str]:
    """The keys of every ``conf/component/*.yaml`` file."""
    from omegaconf import OmegaConf

    keys: set[str] = set()
    for path in sorted(Path(config_dir(), "component").glob("*.yaml")):
        keys.update(str(k) for k in OmegaConf.load(path).keys() if k != "defaults")
    return frozenset(keys)


def _check_entry_file_key(prefix: str, entry: str, key: str) -> None:
    """Without ``+``, Hydra sets only the keys of an entry a ``conf/`` file has."""
    entries = entry_file_keys(prefix.rstrip("."))
    if entry not in entries:
        raise unknown_key(prefix, entry, entries,
                          what=f"no such entry in conf/ (a new one: +{prefix}{entry}._target_=CLASS)")
    if key not in entries[entry] and not key.startswith("_"):
        raise unknown_key(f"{prefix}{entry}.", key, [k for k in entries[entry] if not k.startswith("_")],
                          what=f"not in conf/ (a parameter of its class not set there: +{prefix}{entry}.KEY=VALUE)")


def entry_file_keys(group: str) -> dict[str, frozenset[str]]:
    """The keys of each entry of an open group of named entries (``callbacks``) in ``conf/``: the
    group's own files, and the files that add entries to it (``hparams_search``...)."""
    keys: dict[str, set[str]] = {}
    for _, entry, settings in _entries_in_files(group):
        keys.setdefault(entry, set()).update(settings)
    return {entry: frozenset(found) for entry, found in keys.items()}


def entry_off_error(key: str) -> ConfigError:
    """A key of an entry that is null in the composed config: which options turn it on."""
    group, entry = key.split(".")[:2]
    options = sorted({option for option, name, settings in _entries_in_files(group) if name == entry and settings})
    turn_on = f"choose {' or '.join(options)} first, or" if options else ""
    return ConfigError(key, f"{group}.{entry} is off (null) in this config: {turn_on} add it whole "
                            f"with +{group}.{entry}._target_=CLASS")


@lru_cache(maxsize=None)
def _entries_in_files(group: str) -> tuple[tuple[str, str, frozenset[str]], ...]:
    """(``group=option`` of the file, entry, its keys) for each entry set in a ``conf/`` file."""
    from omegaconf import DictConfig, OmegaConf

    found = []
    root = Path(config_dir())
    for path in sorted(root.rglob("*.yaml")):
        node = OmegaConf.load(path)
        node = node if path.parent.name == group else node.get(group) if isinstance(node, DictConfig) else None
        option = f"{path.parent.relative_to(root).as_posix()}={path.stem}"
        for entry in (node.keys() if isinstance(node, DictConfig) else ()):
            settings = node._get_node(entry)  # unresolved: callbacks.tracking is ${tracking}
            if entry != "defaults":
                names = frozenset(str(k) for k in (settings.keys() if isinstance(settings, DictConfig) else ()))
                found.append((option, str(entry), names))
    return tuple(found)


def derived_key_error(key: str) -> ConfigError:
    source = DERIVED_KEYS[key]
    return ConfigError(key, f"takes its value from {source} (one key per value): set {source} instead")

def is_config_group(key: str) -> bool:
    return "." not in key and Path(config_dir(), key).is_dir()

