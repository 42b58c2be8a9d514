"""Config keys checked against the schemas before any work starts.

Hydra's structured schema (:mod:`medkit_exp.schema`) rejects an unknown key given without ``+``
with a multi-line message (exit code 1), and accepts any key given with ``+``: ``+trainer.batch_sise=8``
used to load the corpus and the model, then die in ``TrainerConfig(**settings)``. Here both fail
with one line naming the key and the nearest valid ones, through :class:`ConfigError` (exit code 2):

- :func:`check_command_line`: the command line's overrides, before Hydra composes (an unknown
  key without ``+`` would otherwise stop Hydra's composition with its own message; the
  applications call it through :func:`medkit_exp.config_compose.check_command_line_or_exit`);
- :func:`check_config`: the composed config, at the start of the task (keys added with ``+``,
  the component's keys against its class's signature, keys derived from another key, a tagger
  that cannot learn the data as configured: :func:`check_representation`).

The applications call both (``python -m medkit_exp``; evaluate and predict share the groups)::

    check_command_line_or_exit(EvaluateConfig)   # before the @hydra.main function runs
    check_config(cfg, EvaluateConfig)            # first thing in the task (a ConfigError)

Which keys exist and the messages naming a wrong one are :mod:`medkit_exp.config_keys`'s.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import sys
from collections.abc import Sequence
from typing import Any

from medkit_exp.config_keys import (
    DERIVED_KEYS,
    OPTIMIZER_COMMON_KEYS,
    OPTIMIZER_KEYS,
    SCHEDULER_KEYS,
    check_key,
    derived_key_error,
    is_config_group,
    schema_fields,
    suggestion,
    unknown_key,
)
from medkit_exp.config_values import check_devices, check_values
from medkit_exp.errors import ConfigError

logger = logging.getLogger(__name__)

_HYDRA_FLAGS_WITH_OTHER_CONFIGS = ("config_name", "config_path", "config_dir", "experimental_rerun")
_HYDRA_FLAGS_WITHOUT_RUN = ("help", "hydra_help", "shell_completion", "info")


# ----------------------------------------------------------------------------- command line
def command_line_args(argv: Sequence[str]) -> Any | None:
    """Hydra's parsed command line; None when it runs no task of this config (``--help``, another
    ``--config-name``...) or argparse refuses it (Hydra reports that itself, in one line)."""
    from hydra._internal.utils import get_args_parser

    try:
        args = get_args_parser().parse_intermixed_args(list(argv))
    except (SystemExit, TypeError):  # argparse's own error, which Hydra reports again
        return None
    if any(getattr(args, flag, None) for flag in (*_HYDRA_FLAGS_WITH_OTHER_CONFIGS, *_HYDRA_FLAGS_WITHOUT_RUN)):
        return None
    return args


def command_line_overrides(argv: Sequence[str]) -> list[Any] | None:
    """Hydra's overrides of a command line; None when it runs no task of this config or when an
    override cannot be parsed (the composition names it: :mod:`medkit_exp.config_compose`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = command_line_args(argv)
    if args is None:
        return None
    try:
        return OverridesParser.create().parse_overrides(args.overrides)
    except Exception:  # noqa: BLE001 - reported by the composition, naming the override
        return None


def check_command_line(schema: type, argv: Sequence[str] | None = None) -> None:
    """Every key a command-line override sets or adds exists in ``schema`` (groups, ``hydra.*``,
    deletions and sweeps are Hydra's and the sweeper's to check). Raises :class:`ConfigError`."""
    overrides = command_line_overrides(sys.argv[1:] if argv is None else argv)
    for override in overrides or ():
        key = str(override.key_or_group)
        if (override.is_delete() or override.is_sweep_override() or override.package is not None
                or key.split(".")[0].split("/")[0] == "hydra" or "/" in key or is_config_group(key)):
            continue
        check_key(key, schema, added=override.is_add() or override.is_force_add())


# ----------------------------------------------------------------------------- composed config
def check_config(cfg: Any, schema: type) -> None:
    """The composed config holds only keys ``schema`` (and the component's class) accepts, derived
    keys keep their source's value, the optimizer and scheduler use what they are given, and
    every value is one the schema allows (:func:`medkit_exp.config_values.check_values`)."""
    _check_node(cfg, schema, "")
    for key, source in DERIVED_KEYS.items():
        group, name = key.split(".")
        if group in cfg and not _is_interpolation_of(cfg[group], name, source):
            raise derived_key_error(key)
    if "optimizer" in cfg:
        check_used_keys("optimizer", cfg.optimizer, schema_fields(schema)["optimizer"], OPTIMIZER_KEYS,
                        OPTIMIZER_COMMON_KEYS)
    if "scheduler" in cfg:
        check_scheduler(cfg.scheduler, schema_fields(schema)["scheduler"])

    check_values(cfg, schema)
    if "component" in cfg:  # last: importing the component's class imports torch (a bad value reports faster)
        component_class = check_component_keys(cfg.component)
        if _trains(schema):  # evaluate and predict load a checkpoint: the component group builds nothing
            check_representation(cfg, component_class)
    if "callbacks" in cfg:  # their classes import the training package (torch)
        check_callbacks(cfg.callbacks)

    check_devices(cfg)


def _trains(schema: type) -> bool:
    """Whether the application of ``schema`` builds and trains the configured component."""
    from medkit_exp.schema import EvaluateConfig, PredictConfig

    return not issubclass(schema, (EvaluateConfig, PredictConfig))


def _check_node(node: Any, schema: type, prefix: str) -> None:
    from omegaconf import DictConfig

    fields = schema_fields(schema)
    for key in node.keys():
        if not prefix and key == "hydra":
            continue
        if key not in fields:
            raise unknown_key(prefix, str(key), fields)
        child = node._get_node(key)
        if dataclasses.is_dataclass(fields[key]) and isinstance(child, DictConfig):
            _check_node(child, fields[key], f"{prefix}{key}.")


def _is_interpolation_of(node: Any, name: str, source: str) -> bool:
    child = node._get_node(name) if name in node else None
    return child is None or str(child._value()).replace(" ", "") == "${" + source + "}"


def check_component_keys(component: Any) -> type:
    """The component's class (imported, nothing built); every key is a parameter of it."""
    from hydra.utils import get_class

    target = component.get("_target_") if component is not None else None
    if not target:
        raise ConfigError("component._target_", "name the component class to build")
    try:
        cls = get_class(str(target))
    except Exception as error:  # hydra wraps import errors in its own types
        raise ConfigError("component._target_", f"cannot import {target!r}: {error}") from error
    parameters = inspect.signature(cls).parameters
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return cls
    for key in component.keys():
        if not str(key).startswith("_") and key not in parameters:
            raise unknown_key("component.", str(key), parameters, what=f"not a parameter of {target}")
    return cls


def check_representation(cfg: Any, component_class: Any) -> None:
    """The tagger a training builds can learn the data as configured: a flat tagger (one tag per word) cannot learn
    the nested entities ``data.nested=keep`` keeps, and the nested tagger's layers are scored by
    its own metrics, not by seqeval's flat tag sequences; the nested tagger's own options hold
    (:func:`~medkit_exp.ner.nested_tagger.check_nested_options`). A ConfigError naming the key to change."""
    from medkit_exp.ner.nested_tagger import DEFAULT_DEPTH, NestedEntityTagger, check_nested_options
    from medkit_exp.ner.tagger import HFEntityMatcherTrainable

    if not isinstance(component_class, type) or not issubclass(component_class, HFEntityMatcherTrainable):
        return  # another component: its data and metrics are its own
    nested = issubclass(component_class, NestedEntityTagger)
    data, metrics = cfg.get("data"), cfg.get("metrics")
    if not nested and data is not None and data.get("nested") == "keep":
        raise ConfigError(
            "data.nested", "'keep' keeps nested and overlapping entities, which the flat tagger (one tag per word) "
            "cannot learn: use component=hf_nested_tagger, or data.nested=keep_longest",
        )
    if nested:  # its own options, before the data is read (the class checks them again)
        component = cfg.component
        check_nested_options(component.get("nesting_depth", DEFAULT_DEPTH), component.get("tag_subtokens", False),
                             "component.", component.get("layer_order", "inner_first"))
    if nested and metrics is not None and metrics.get("name") == "seqeval":
        raise ConfigError(
            "metrics.name", "'seqeval' scores flat tag sequences, not the nested tagger's layers: use metrics=entity"
        )


def check_callbacks(callbacks: Any) -> None:
    """Each entry of ``callbacks`` names a class or factory that takes its keys (and a class is
    built once): :func:`medkit_exp.callback_entries.check_callback_entries`."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from medkit_exp.callback_entries import check_callback_entries, entry_keys

    try:
        entries = OmegaConf.to_container(callbacks, resolve=True)
    except OmegaConfBaseException:  # a value known only when the job runs: checked then
        return
    check_callback_entries(entries, entry_keys(callbacks))


def check_scheduler(scheduler: Any, schema: type) -> None:
    """A known schedule; a key the schedule does not use keeps its default (it would be ignored)."""
    check_used_keys("scheduler", scheduler, schema, SCHEDULER_KEYS)


def check_used_keys(group: str, node: Any, schema: type, used_by: dict[str, tuple[str, ...]],
                    common: tuple[str, ...] = ()) -> None:
    """``node.name`` is one of ``used_by``; a key that choice does not use (nor ``common``) keeps
    its default: a value given to it would be ignored while the record shows it."""
    name = node.get("name")
    if name not in used_by:
        raise ConfigError(f"{group}.name", f"unknown {group} {name!r}; {suggestion(str(name), used_by)}")
    defaults = schema()
    for key in node.keys():
        if key == "name" or key in common or key in used_by[name]:
            continue
        if node[key] != getattr(defaults, key):
            used = ", ".join((*common, *used_by[name])) or "none"
            raise ConfigError(f"{group}.{key}", f"not used by {group} {name!r} (it uses: {used}); got {node[key]!r}")


def unused_keys(config: dict[str, Any]) -> list[str]:
    """The keys of a resolved config's ``scheduler`` and ``optimizer`` groups that their choice
    does not use (left out of the record: they keep their defaults, see :func:`check_used_keys`)."""
    unused = []
    for group, used_by, common in (("scheduler", SCHEDULER_KEYS, ()), ("optimizer", OPTIMIZER_KEYS, OPTIMIZER_COMMON_KEYS)):
        node = config.get(group) or {}
        used = (*common, *used_by.get(node.get("name"), ()))
        unused += [f"{group}.{key}" for key in node if key != "name" and key not in used]
    return unused
