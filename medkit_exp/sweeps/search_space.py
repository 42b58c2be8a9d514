"""The search space: Hydra's override grammar turned into Optuna distributions.

The grammar is the one of Hydra's Optuna sweeper, so its ``params`` blocks work unchanged:

============================================  ==================================================
``choice(a, b, c)`` or ``a,b,c``              categorical (a config group: one of its options)
``interval(1e-5, 1e-3)``                      float, uniform on [low, high]
``tag(log, interval(1e-5, 1e-3))``            float, log scale
``int(interval(8, 64))``, ``tag(int, ...)``   integer on [low, high] (``tag(log, int(...))``: log)
``range(8, 64, step=8)``                      integer (or float) with a step; **high included**
                                              (Optuna's meaning, as Hydra's Optuna sweeper)
a plain value                                 fixed for every trial
============================================  ==================================================

>>> space = parse_search_space({"optimizer.lr": "tag(log, interval(1e-5, 1e-3))", "scheduler": "choice(linear, cosine)"})
>>> space.distributions["optimizer.lr"]
FloatDistribution(high=0.001, log=True, low=1e-05, step=None)
>>> space.overrides({"optimizer.lr": 3e-4, "scheduler": "cosine"})
['optimizer.lr=0.0003', 'scheduler=cosine']
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from medkit_exp.errors import ConfigError

PARAMS_KEY = "hydra.sweeper.params"
_PLAIN_STRING = re.compile(r"^[A-Za-z_][\w./-]*$")


@dataclass
class SearchSpace:
    """Distributions to sample (by override key) and overrides fixed for every trial."""

    distributions: dict[str, Any] = field(default_factory=dict)
    fixed: dict[str, str] = field(default_factory=dict)  # key -> override line
    origins: dict[str, str] = field(default_factory=dict)  # key -> where it was set (for messages)

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """The override lines of one trial: the fixed ones, then its sampled values."""
        return [*self.fixed.values(), *(format_override(key, params[key]) for key in self.distributions)]

    def describe(self) -> dict[str, str]:
        """``{key: readable distribution}``, e.g. for MLflow params."""
        return {key: describe_distribution(dist) for key, dist in self.distributions.items()}


def parse_search_space(params: Mapping[str, Any] | None, arguments: Sequence[str] = ()) -> SearchSpace:
    """The search space of ``hydra.sweeper.params`` and the command line.

    Command-line overrides come after the config's params: a sweep there (``a=interval(0, 1)``,
    ``a=1,2``) adds or replaces a parameter, a plain value fixes it for every trial.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    lines = [(f"{key}={value}", f"{PARAMS_KEY}.{key}") for key, value in (params or {}).items()]
    lines += [(argument, f"command-line override {argument!r}") for argument in arguments]
    space = SearchSpace()
    for line, origin in lines:
        try:
            override = parser.parse_override(line)
        except Exception as error:  # noqa: BLE001 - Hydra's grammar errors have several types
            raise ConfigError(_config_key(origin), f"cannot parse {line!r}: {_first_line(error)}") from error
        key = override.get_key_element()
        space.distributions.pop(key, None)
        space.fixed.pop(key, None)
        space.origins[key] = origin
        if override.is_sweep_override():
            space.distributions[key] = to_distribution(override, origin)
        else:
            space.fixed[key] = line if origin.startswith("command-line") else _fixed_line(key, override)
    return space


def to_distribution(override: Any, origin: str = "") -> Any:
    """The Optuna distribution of a parsed sweep override (choice, range, interval, tags)."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from optuna.distributions import CategoricalDistribution

    value, key = override.value(), _config_key(origin) or override.get_key_element()
    tags = set(getattr(value, "tags", set()) or set())
    unknown_tags = tags - {"log", "int"}
    if unknown_tags:
        raise ConfigError(key, f"unknown tag(s) {sorted(unknown_tags)}; use tag(log, ...) or tag(int, ...)")
    if isinstance(value, ChoiceSweep):
        choices = [_choice_value(item, key) for item in value.list]
        if len(set(map(repr, choices))) != len(choices):
            raise ConfigError(key, f"choice() lists a value twice: {choices}")
        return CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        return _range_distribution(value.start, value.stop, value.step, "log" in tags, key)
    if isinstance(value, IntervalSweep):
        as_int = "int" in tags or (isinstance(value.start, int) and isinstance(value.end, int))
        return _interval_distribution(value.start, value.end, as_int, "log" in tags, key)
    raise ConfigError(key, f"{override.input_line!r}: use choice(), range() or interval() (glob() is not supported)")


def _range_distribution(start: Any, stop: Any, step: Any, log: bool, key: str) -> Any:
    from optuna.distributions import FloatDistribution, IntDistribution

    if start is None or stop is None:
        raise ConfigError(key, "range() needs a start and a stop")
    if log:
        raise ConfigError(key, "a log scale cannot have a step: use tag(log, interval(low, high))")
    if step is None or step <= 0:
        raise ConfigError(key, f"range() step must be > 0, got {step}")
    if stop <= start:
        raise ConfigError(key, f"empty range: range({start}, {stop}) needs stop > start (stop is included)")
    if all(isinstance(v, int) for v in (start, stop, step)):
        return IntDistribution(int(start), int(stop), step=int(step))
    return FloatDistribution(float(start), float(stop), step=float(step))


def _interval_distribution(low: Any, high: Any, as_int: bool, log: bool, key: str) -> Any:
    from optuna.distributions import FloatDistribution, IntDistribution

    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (low, high)):
        raise ConfigError(key, f"interval({low}, {high}) needs two finite numbers")
    if high <= low:
        raise ConfigError(key, f"empty interval: interval({low}, {high}) needs high > low")
    if log and low <= 0:
        raise ConfigError(key, f"a log scale needs low > 0, got interval({low}, {high})")
    if as_int:
        if int(low) != low or int(high) != high:
            raise ConfigError(key, f"an integer interval needs integer bounds, got ({low}, {high})")
        return IntDistribution(int(low), int(high), log=log)
    return FloatDistribution(float(low), float(high), log=log)


def _choice_value(item: Any, key: str) -> Any:
    if item is None or isinstance(item, (bool, int, float, str)):
        return item
    raise ConfigError(key, f"choice() values must be numbers, strings or booleans, got {item!r}")


def describe_distribution(distribution: Any) -> str:
    """A short readable form: ``float[1e-05, 0.001] log``, ``int[8, 64] step 8``, ``choice(a, b)``."""
    from optuna.distributions import CategoricalDistribution

    if isinstance(distribution, CategoricalDistribution):
        return "choice(" + ", ".join(map(str, distribution.choices)) + ")"
    kind = "int" if type(distribution).__name__.startswith("Int") else "float"
    text = f"{kind}[{distribution.low}, {distribution.high}]"
    if distribution.log:
        text += " log"
    if distribution.step not in (None, 1):
        text += f" step {distribution.step}"
    return text


def format_override(key: str, value: Any) -> str:
    """``key=value`` in Hydra's grammar (strings quoted when they need it)."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = repr(value)
    elif isinstance(value, int):
        text = str(value)
    else:
        text = str(value)
        if not _PLAIN_STRING.match(text) or text.lower() in ("null", "true", "false"):
            text = "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return f"{key}={text}"


def _fixed_line(key: str, override: Any) -> str:
    value = override.value()
    if isinstance(value, (dict, list)):
        return f"{key}={override.get_value_element_as_str()}"
    return format_override(key, value)


# ----------------------------------------------------------------------------- validation
def validate_keys(space: SearchSpace, config: Any, groups: Mapping[str, Sequence[str]]) -> None:
    """Every parameter names a config group (with existing options) or an existing config key.

    ``groups`` maps each config group of the composed config to its options. Keys added with
    ``+`` (``+model.dropout``) need not exist.
    """
    from omegaconf import OmegaConf

    known = _config_keys(config)
    for key, distribution in space.distributions.items():
        bare = key.lstrip("+~")
        origin = _config_key(space.origins.get(key, "")) or key
        if key.startswith("+"):
            continue
        if bare in groups:
            for choice in getattr(distribution, "choices", ()):
                if str(choice) not in groups[bare] and choice is not None:
                    raise ConfigError(origin, f"{choice!r} is not an option of config group {bare!r}; options: "
                                      f"{', '.join(groups[bare])}")
            continue
        if OmegaConf.select(config, bare, default=_MISSING, throw_on_missing=False) is _MISSING:
            near = difflib.get_close_matches(bare, known, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(near)}?" if near else "; prefix it with + to add a new key"
            raise ConfigError(origin, f"unknown config key {bare!r}{hint}")


_MISSING = object()


def _config_keys(config: Any, prefix: str = "") -> list[str]:
    from omegaconf import DictConfig

    keys = []
    for name in config.keys() if isinstance(config, DictConfig) else []:
        if not prefix and name == "hydra":
            continue
        path = f"{prefix}{name}"
        keys.append(path)
        child = config._get_node(name)
        if isinstance(child, DictConfig):
            keys += _config_keys(child, f"{path}.")
    return keys


def probe_values(space: SearchSpace) -> list[dict[str, Any]]:
    """Parameter sets that, composed, show every value kind the space can produce.

    All lows, all highs, and each categorical option at least once: composing these catches a
    value the config cannot take (a float for an integer key, a missing group option) before
    any trial runs.
    """
    from optuna.distributions import CategoricalDistribution

    probes = []
    width = max([len(d.choices) for d in space.distributions.values() if isinstance(d, CategoricalDistribution)] or [1])
    for index in range(max(width, 2)):
        probe = {}
        for key, dist in space.distributions.items():
            if isinstance(dist, CategoricalDistribution):
                probe[key] = dist.choices[index % len(dist.choices)]
            else:
                probe[key] = dist.low if index % 2 == 0 else dist.high
        probes.append(probe)
    return probes


def grid_space(space: SearchSpace) -> dict[str, list[Any]]:
    """The value lists of a grid (every parameter must be a choice or a stepped range)."""
    from optuna.distributions import CategoricalDistribution

    grid: dict[str, list[Any]] = {}
    for key, dist in space.distributions.items():
        if isinstance(dist, CategoricalDistribution):
            grid[key] = list(dist.choices)
        elif dist.step is not None and not dist.log:
            count = int(round((dist.high - dist.low) / dist.step)) + 1
            grid[key] = [dist.low + i * dist.step for i in range(count) if dist.low + i * dist.step <= dist.high + 1e-12]
        else:
            origin = _config_key(space.origins.get(key, "")) or key
            raise ConfigError(origin, "the grid sampler needs choice() or range() for every parameter, not interval()")
    return grid


def _config_key(origin: str) -> str:
    return origin if origin.startswith(PARAMS_KEY) else ""


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]

