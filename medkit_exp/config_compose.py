"""The command line's config, composed and checked once before Hydra runs the task.

Hydra reports its own composition errors (an unknown group option ``scheduler=cosin``, an
override it cannot parse, ``trainer.batch_size=abc``, a new key without ``+``) over several lines
with exit code 1. :func:`check_composed_command_line` composes the command line's config as
Hydra will, and turns those errors into one :class:`ConfigError` naming the key (with the nearest
valid choice), then checks the composed config's keys and values (:func:`check_config`), so that
every configuration mistake stops before the corpus or the model loads.

In a multirun, the master config is checked (Hydra leaves the swept keys at their composed
value), then each value of each command-line sweep; each trial's config is checked again by the
task (the sweeper samples intervals and its own search space).
"""

from __future__ import annotations

import importlib.util
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medkit_exp.config_check import check_command_line, check_config, command_line_args
from medkit_exp.config_keys import ENTRY_GROUPS, check_key, entry_off_error, is_config_group, suggestion
from medkit_exp.config_values import output_folder
from medkit_exp.errors import ConfigError

#: The primary config of each application's schema.
CONFIG_NAMES = {"MedkitExpConfig": "config", "EvaluateConfig": "evaluate", "PredictConfig": "predict"}
_QUOTED = re.compile(r"'([^']*)'")


def check_command_line_or_exit(schema: type, argv: Sequence[str] | None = None) -> None:
    """The command line's keys (:func:`~medkit_exp.config_check.check_command_line`), then its composed config, as Hydra
    will compose it (:func:`check_composed_command_line`: Hydra's
    composition errors, every value): a mistake ends the process with one line on stderr and exit
    code 2 (``HYDRA_FULL_ERROR=1``: the traceback), before Hydra creates the run folder and before
    any work. Call it before the ``@hydra.main`` function. ``--help``, ``--cfg`` and the like are
    left to Hydra."""
    import os

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        check_command_line(schema, argv)
        args = command_line_args(argv)
        if args is not None and not args.cfg:
            check_composed_command_line(schema, args)
    except ConfigError as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"Error: {error}\n(set HYDRA_FULL_ERROR=1 for the full traceback)", file=sys.stderr)
        sys.exit(2)


def check_composed_command_line(schema: type, args: Any) -> None:
    """Compose ``args.overrides`` (Hydra's parsed command line) for ``schema``'s application and
    check the result; raises :class:`ConfigError`. Nothing is run, created or loaded."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from medkit_exp.conf_location import config_dir

    config_name, overrides = CONFIG_NAMES[schema.__name__], list(args.overrides)
    # Hydra warns of a missing search path (reported below, in one line); it warns again when it runs.
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hydra = GlobalHydra.instance().hydra

        def compose(mode: RunMode) -> Any:
            return hydra.compose_config(config_name, overrides, run_mode=mode, with_log_configuration=False,
                                        from_shell=True)

        multirun = bool(args.multirun)
        try:
            # One composition in the common case; a config that asks for a multirun itself
            # (hydra.mode, e.g. hparams_search) is composed again as Hydra will run it.
            cfg = compose(RunMode.MULTIRUN if multirun else RunMode.RUN)
            if not multirun and cfg.hydra.mode == RunMode.MULTIRUN:
                multirun, cfg = True, compose(RunMode.MULTIRUN)
        except Exception as error:  # noqa: BLE001 - every composition error becomes one line
            if multirun or hydra.get_mode(config_name=config_name, overrides=overrides) != RunMode.MULTIRUN:
                raise composition_error(error, schema) from None
            multirun, cfg = True, _or_one_line(lambda: compose(RunMode.MULTIRUN), schema)
        check_hydra_paths(cfg, multirun)
        check_in_run(cfg, schema)
        if multirun:
            check_swept_values(hydra, config_name, overrides, schema, cfg)


def check_in_run(cfg: Any, schema: type) -> None:
    """:func:`check_config` with Hydra's run config set, so ``${hydra:runtime.output_dir}`` resolves."""
    from hydra.core.hydra_config import HydraConfig


    previous = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(cfg)
    try:
        check_config(cfg, schema)
    finally:
        HydraConfig.instance().cfg = previous


def check_swept_values(hydra: Any, config_name: str, overrides: list[str], schema: type, master: Any) -> None:
    """Each value of a command-line sweep (``optimizer.lr=1e-4,nan``, ``scheduler=linear,cosin``,
    ``range(...)``) before the first job: a bad one would fail its jobs only. A key's value is set
    in a copy of the ``master`` config (a range at its bounds); a group's
    option is composed. Sampled intervals are the sweeper's (it checks its own search space)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import RangeSweep
    from hydra.errors import OverrideParseException
    from hydra.types import RunMode
    from omegaconf import open_dict


    parsed = OverridesParser.create().parse_overrides(overrides)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    for override in (o for o in parsed if o.is_sweep_override()):
        try:
            values = list(override.sweep_string_iterator())
        except Exception:  # noqa: BLE001 - an interval: sampled by the sweeper
            continue
        if isinstance(override.value(), RangeSweep):
            values = values[:1] + values[-1:]  # the bounds: a range of numbers is in range when they are
        key = str(override.key_or_group)
        for value in values:
            line = f"{override.get_key_element()}={value}"
            try:
                if is_config_group(key) or "/" in key:
                    cfg = hydra.compose_config(config_name, [*fixed, line], run_mode=RunMode.RUN,
                                               with_log_configuration=False, from_shell=True)
                    with open_dict(cfg):
                        cfg.hydra.runtime.output_dir = master.hydra.runtime.output_dir
                else:
                    cfg = _with_value(master, key, line)
            except OverrideParseException:
                continue  # a value our re-quoting cannot carry: its job composes it as given
            except Exception as error:  # noqa: BLE001 - every composition error becomes one line
                raise composition_error(error, schema) from None
            check_in_run(cfg, schema)


def _with_value(master: Any, key: str, line: str) -> Any:
    """A copy of ``master`` with ``key`` set as Hydra sets it from ``line`` (its parser gives the
    value; OmegaConf checks the type)."""
    import copy

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import ValidationError

    (override,) = OverridesParser.create().parse_overrides([line])
    cfg = copy.deepcopy(master)
    try:
        with open_dict(cfg):
            OmegaConf.update(cfg, key, override.value(), merge=False)
    except ValidationError as error:
        raise type_error(error) from None
    return cfg


def _or_one_line(compose: Any, schema: type) -> Any:
    try:
        return compose()
    except Exception as error:  # noqa: BLE001 - every composition error becomes one line
        raise composition_error(error, schema) from None


def check_hydra_paths(cfg: Any, multirun: bool) -> None:
    """``hydra.searchpath`` folders exist; the run folder can be created (it becomes
    ``hydra.runtime.output_dir``, which ``paths.output_dir`` takes by default)."""
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException


    for entry in cfg.hydra.searchpath:
        scheme, _, location = str(entry).rpartition("://")
        if scheme == "pkg":
            if not _package_exists(location.replace("/", ".")):
                raise ConfigError("hydra.searchpath", f"{entry}: no such package")
        elif not Path(location).is_dir():
            raise ConfigError("hydra.searchpath", f"{entry}: folder not found")
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        folder = str(OmegaConf.select(cfg, key))
    except OmegaConfBaseException:  # it names what is known only when the job runs: Hydra's to report
        return
    output_folder(key, folder)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(Path(folder).absolute())


def _package_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


# ----------------------------------------------------------------------------- Hydra's errors
def composition_error(error: Exception, schema: type) -> ConfigError:
    """One line naming the key for one of Hydra's composition errors."""
    from hydra.errors import MissingConfigException, OverrideParseException

    if isinstance(error, ConfigError):
        return error
    if isinstance(error, MissingConfigException):
        return _missing_option(error)
    if isinstance(error, OverrideParseException):
        key = error.override.split("=", 1)[0].lstrip("+~") or error.override
        return ConfigError(key, f"cannot parse {error.override!r}: {_first_line(error.message)} "
                                "(see https://hydra.cc/docs/advanced/override_grammar/basic)")
    cause = error.__cause__
    if getattr(cause, "full_key", None):  # a value of the wrong type, from OmegaConf
        return type_error(cause)
    return _composition_message(str(error), schema)


def type_error(error: Any) -> ConfigError:
    """OmegaConf's error for a value of the wrong type (``trainer.batch_size=abc``), in one line;
    a key of a callbacks entry that is off names the options that turn it on."""
    key = str(error.full_key)
    if key.startswith(ENTRY_GROUPS) and "not in struct" in str(error):
        return entry_off_error(key)
    return ConfigError(key, _first_line(str(error)))


def _missing_option(error: Any) -> ConfigError:

    missing = str(error.missing_cfg_file or "")
    group, _, option = missing.rpartition("/")
    if not group or error.options is None:
        return ConfigError(missing or "defaults", _first_line(str(error)))
    key = group.replace("/", ".") if group.startswith("hydra/") else group
    return ConfigError(key, f"no option {option!r} in conf/{group}; {suggestion(option, error.options)}")


def _composition_message(message: str, schema: type) -> ConfigError:
    """Hydra's ConfigCompositionException messages, one by one (the key is the first quoted text)."""
    quoted = _QUOTED.findall(message)
    key = quoted[0] if quoted else "overrides"
    if message.startswith("Could not override"):
    
        override = message.rsplit("use ", 1)[-1].strip() if "use +" in message else f"+{key}=VALUE"
        if is_config_group(key):
            return ConfigError(key, f"is a config group not in the defaults: add it with a +: {override}")
        return ConfigError(key, f"not in the config; {_nearest_key(key, schema)} (a new key: {override})")
    if message.startswith("Could not append to config"):
        return ConfigError(key, f"is already in the config: set it without + ({key}=VALUE), or ++{key}=VALUE")
    if message.startswith("Multiple values for"):
        key = message.split()[3].rstrip(".")
        return ConfigError(key, f"is already chosen in the defaults: choose with {key}=OPTION, without +")
    if message.startswith("Ambiguous value for argument"):
        key = key.split("=", 1)[0]
        return ConfigError(key, "several values: sweep them with --multirun, a list is [a,b], a text 'a,b'")
    repeated = re.match(r"(\S+) appears more than once", message)
    if repeated:
        key = repeated.group(1).replace("/", ".")
        return ConfigError(key, f"is already chosen in the defaults: choose with {key}=OPTION, without +")
    if message.startswith("Could not delete"):
        return ConfigError(quoted[-1] if quoted else key, "cannot delete a key that is not in the config")
    return ConfigError(key, _first_line(message))


def _nearest_key(key: str, schema: type) -> str:

    if "." not in key and not is_config_group(key):
        from medkit_exp.conf_location import config_dir

        groups = [p.name for p in Path(config_dir()).iterdir() if p.is_dir()]
        return suggestion(key, groups).replace("valid:", "config groups:")
    try:
        check_key(key, schema)
    except ConfigError as error:
        return error.message.split("; ", 1)[-1]
    return "set it with + to add it"


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), text)

