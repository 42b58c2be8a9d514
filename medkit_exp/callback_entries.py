"""The run's callbacks, as the config names them: checked, then built by one instantiator.

``callbacks`` is a mapping of named entries (``conf/callbacks/default.yaml``), built in order:
the printer, early stopping, tracking (``callbacks.tracking`` is the ``tracking`` group), pruning
(added by ``hparams_search=ner_optuna``). An entry is

- null: turned off;
- ``{_target_: module.Class, **settings}``: ``Class(**settings)``;
- ``{_target_: module.factory, _partial_: true, **settings}``: ``factory(run=RunContext, **settings)``,
  for what needs the run (its data, component, params); it may return a list of callbacks.

>>> instantiate_callbacks({"printer": {"_target_": "medkit_exp.training.printer.DefaultPrinterCallback",
...                                    "progress_bar": False}, "early_stopping": None}, run=None)
[<medkit_exp.training.printer.DefaultPrinterCallback object at ...>]

:func:`check_callback_entries` runs with the config checks, before anything heavy: an entry's
target is imported and its keys are checked against its parameters, so that a mistake is one line
naming the key.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from medkit_exp.config_keys import unknown_key
from medkit_exp.errors import ConfigError, MedkitExpError

#: The parameter a factory entry (``_partial_: true``) is completed with.
RUN_PARAMETER = "run"


def instantiate_callbacks(entries: Mapping[str, Any], run: Any, keys: Mapping[str, str] | None = None) -> list[Any]:
    """The callbacks of ``entries`` (plain mappings: the resolved config), in order; factories
    get ``run=run``. A failing entry is a :class:`ConfigError` naming its config key:
    ``keys[name]`` (:func:`entry_keys`), else ``callbacks.<name>``."""
    callbacks: list[Any] = []
    for name, entry in entries.items():
        if entry is None:
            continue
        built = build_entry((keys or {}).get(name, f"callbacks.{name}"), entry, run)
        callbacks += list(built) if isinstance(built, (list, tuple)) else [built]
    return callbacks


def entry_keys(node: Any, prefix: str = "callbacks") -> dict[str, str]:
    """The config key of each entry of an (unresolved) OmegaConf ``node``: an entry that is another
    key's value (``tracking: ${tracking}``) is that key, which its errors then name."""
    keys = {}
    for name in node.keys():
        value = str(node._get_node(name)._value())
        inner = value[2:-1] if value.startswith("${") and value.endswith("}") else ""
        is_key = bool(inner) and all(part.isidentifier() for part in inner.split("."))
        keys[str(name)] = inner if is_key else f"{prefix}.{name}"
    return keys


def build_entry(key: str, entry: Mapping[str, Any], run: Any) -> Any:
    """One entry, built by ``hydra.utils.instantiate`` (nested entries too: a ``_partial_`` one
    is a ``functools.partial``, such as ``tracking.model_hooks``); a factory entry is then
    called with ``run=``. The target's own errors are named after ``key``."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    entry_target(key, entry)  # a missing or unknown target: named here, not in Hydra's words
    settings = {str(k): v for k, v in entry.items() if not str(k).startswith("_")}
    try:
        try:
            built = instantiate(dict(entry), _convert_="all")
        except InstantiationException as error:  # Hydra wraps the constructor's errors in its own
            raise (error.__cause__ or error) from None
        return built(**{RUN_PARAMETER: run}) if entry.get("_partial_", False) else built
    except MedkitExpError as error:
        raise _named(key, settings, error) from None
    except (TypeError, ValueError, InstantiationException) as error:
        raise ConfigError(key, f"cannot build {entry['_target_']}: {type(error).__name__}: {error}") from error


def _named(key: str, settings: Mapping[str, Any], error: MedkitExpError) -> MedkitExpError:
    """A constructor's ConfigError names its parameter (``mode``, ``early_stopping.mode``), or a
    path under one (``model_hooks.0.dev_report``): named here under the entry's key, the whole
    path kept; other errors are kept as they are."""
    if not isinstance(error, ConfigError):
        return error
    if error.key.startswith(f"{key}.") or error.key.split(".")[0] in ("tracking", "callbacks"):
        return error
    if error.key.split(".")[0] in settings:
        return ConfigError(f"{key}.{error.key}", error.message, lead=error.lead)
    name = error.key.rsplit(".", 1)[-1]
    return ConfigError(f"{key}.{name}" if name in settings else key, error.message, lead=error.lead)


def entry_target(key: str, entry: Any) -> Callable[..., Any]:
    """The class or factory an entry's ``_target_`` names, imported."""
    from hydra.utils import get_object

    if isinstance(entry, Mapping) and "_target_" in entry and not entry["_target_"]:
        raise ConfigError(f"{key}._target_", f"names no class or factory: {entry['_target_']!r}")
    if not isinstance(entry, Mapping) or not entry.get("_target_"):
        got = f"keys {', '.join(map(str, entry))}" if isinstance(entry, Mapping) else repr(entry)
        raise ConfigError(key, f"an entry names its class or factory with _target_ (null turns it off); got {got}")
    target = entry["_target_"]
    try:
        found = get_object(str(target))
    except Exception as error:  # noqa: BLE001 - Hydra wraps import errors in its own types
        reason = str(error.__cause__ or error).splitlines()[0]
        raise ConfigError(f"{key}._target_", f"cannot import {target!r}: {reason}") from None
    if not callable(found):
        raise ConfigError(f"{key}._target_", f"{target!r} is not a class or a function")
    return found


def check_callback_entries(entries: Mapping[str, Any], keys: Mapping[str, str] | None = None) -> None:
    """Every entry's target imports and takes the entry's keys. Nothing is built here (a
    constructor may act: the printer sets up logging); the packaged entries' values have rules
    (:data:`medkit_exp.config_values.ENTRY_RULES`), another class checks its own when built."""
    for name, entry in entries.items():
        if entry is None:
            continue
        check_entry((keys or {}).get(name, f"callbacks.{name}"), entry)


def check_entry(key: str, entry: Mapping[str, Any], nested: bool = False) -> None:
    """An entry and the entries among its settings (a mapping with ``_target_``, alone or in a
    list: ``tracking.model_hooks.0``); a nested partial is completed by its consumer."""
    target = entry_target(key, entry)
    check_parameters(key, target, entry, bool(entry.get("_partial_", False)), nested)
    for setting, value in entry.items():
        items = enumerate(value) if isinstance(value, list) else [(None, value)]
        for index, item in items:
            if isinstance(item, Mapping) and "_target_" in item:
                check_entry(f"{key}.{setting}" + ("" if index is None else f".{index}"), item, nested=True)


def check_parameters(key: str, target: Callable[..., Any], entry: Mapping[str, Any], partial: bool,
                     nested: bool = False) -> None:
    """Each key of ``entry`` is a parameter of ``target`` (a factory's ``run`` is the run's), and
    every required one is given (but those a nested partial's consumer gives)."""
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):  # a builtin without a signature: its call checks
        return
    if partial and not nested and RUN_PARAMETER not in parameters:
        raise ConfigError(f"{key}._partial_", f"{entry['_target_']} takes no {RUN_PARAMETER!r}: "
                                              "a factory entry is completed with the run")
    if partial and RUN_PARAMETER in entry:
        raise ConfigError(f"{key}.{RUN_PARAMETER}", "is the run's, given when the entry is built")
    settings = {str(k): v for k, v in entry.items() if not str(k).startswith("_")}
    if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        names = [n for n in parameters if n != RUN_PARAMETER or not partial]
        for setting in settings:
            if setting not in names:
                raise unknown_key(f"{key}.", setting, names, what=f"not a parameter of {entry['_target_']}")
    bind = inspect.signature(target).bind_partial if nested and partial else inspect.signature(target).bind
    try:
        bind(**({RUN_PARAMETER: None} if partial and RUN_PARAMETER in parameters else {}), **settings)
    except TypeError as error:  # a required parameter left out
        raise ConfigError(key, f"{entry['_target_']}: {error}") from None
