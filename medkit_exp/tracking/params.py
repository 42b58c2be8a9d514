"""Configs as MLflow params: flattening, MLflow's limits, and redaction of secrets.

Secrets never reach MLflow: values under keys that look like tokens, passwords, secrets,
credentials or API keys become ``"***"``, and ``hf_auth_token`` is dropped entirely, key
included, from params, the config artifact, the overrides and the command-line tag.

>>> flatten_params({"model": {"name": "bert", "layers": [1, 2]}, "lr": 0.1})
{'model.name': 'bert', 'model.layers': '[1, 2]', 'lr': '0.1'}
>>> redact_config({"db": {"password": "x", "user": "me"}, "hf_auth_token": "hf_abc"})
{'db': {'password': '***', 'user': 'me'}}
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medkit_exp.redaction import (  # the redaction rules live there
    REDACTED,
    normalise_key,
    is_secret_key,
    is_secret_value,
    redact_text,
    redact_value,
    remember_secret,
)

TRUNCATION_MARKER = "...[truncated; full value in config/config.yaml]"
#: Keys removed entirely (key and value) wherever they appear.
DROPPED_KEYS = frozenset({"hf_auth_token"})
# MLflow's limits (mlflow.utils.validation, 3.x): checked here so a long value is cut with a
# marker instead of being rejected or silently cut by the server.
MAX_PARAM_VAL_LENGTH = 6000
MAX_PARAMS_PER_BATCH = 100
MAX_KEY_LENGTH = 250

#: Values that differ for every run by construction (its folders, its name: a sweep names its
#: trials ``trial-<n>``): tags, not params, so that params compare runs and only what a user
#: varies shows up in ``compare`` and MLflow's parallel coordinates. The run's folder is the
#: ``output_dir`` tag, its name the ``run_name`` tag (and MLflow's run name).
RUN_SPECIFIC_KEYS = ("paths.output_dir", "trainer.output_dir", "tracking.run_name")

#: Settings of how a run is wired and watched, not of the experiment: the instantiation keys
#: (``_target_``, ``_partial_``) wherever they are, the ``tracking`` group (where the run is recorded
#: and how often: ``tracking_uri`` may even hold credentials) and the callbacks that only display or
#: record the run. The other callbacks' settings stay (``callbacks.early_stopping.patience`` is
#: something a user varies). The whole config is the run's ``config/config.yaml`` artifact.
WIRING_KEYS = frozenset({"_target_", "_partial_"})
CIRCUMSTANCE_KEYS = ("tracking", "callbacks.printer", "callbacks.tracking")

_BAD_KEY_CHARS = re.compile(r"[^\w.\- :/]")
_OVERRIDE_PREFIX = re.compile(r"(^|\.)[+~]+")


def is_dropped_key(key: str) -> bool:
    """True for keys removed entirely (``hf_auth_token``)."""
    return normalise_key(key) in DROPPED_KEYS


def redact_config(config: Any) -> Any:
    """A copy of a nested config with secrets replaced by ``"***"`` and ``hf_auth_token`` removed."""
    if _is_mapping(config):
        redacted = {}
        for key, value in config.items():
            if is_dropped_key(str(key)):
                continue
            if is_secret_key(str(key)) and value is not None:
                if not _is_mapping(value) and not _is_sequence(value):
                    remember_secret(value)  # also hidden where a log line prints it without its key
                redacted[key] = REDACTED
            else:
                redacted[key] = redact_config(value)
        return redacted
    if _is_sequence(config):
        return [redact_config(item) for item in config]
    return redact_value(config)  # credentials inside URLs, token-shaped strings


def redact_override(override: str) -> str | None:
    """A Hydra override (``key=value``) or command-line word, redacted; None to drop it."""
    text = str(override)
    if "=" in text:
        key, value = text.split("=", 1)
        bare_key = key.lstrip("+~-")
        if is_dropped_key(bare_key):
            remember_secret(value)
            return None
        if is_secret_key(bare_key) or is_secret_value(value):
            remember_secret(value)
            return f"{key}={REDACTED}"
        return f"{redact_text(key)}={redact_text(value)}"  # a credentialed URL in a value or sweep
    return REDACTED if is_secret_value(text) else redact_text(text)


def redact_argv(argv: list[str]) -> list[str]:
    """Command-line words with secrets redacted (``--token VALUE`` and ``key=value`` forms)."""
    words: list[str] = []
    hide_next = False
    for word in argv:
        if hide_next:
            words.append(REDACTED)
            hide_next = False
            continue
        if word.startswith("--") and "=" not in word and is_secret_key(word[2:].replace("-", "_")):
            hide_next = True
            words.append(word)
            continue
        redacted = redact_override(word)
        if redacted is not None:
            words.append(redacted)
    return words


def command_line(argv: list[str]) -> str:
    """The redacted command line as one shell-quoted string."""
    return shlex.join(redact_argv([str(word) for word in argv]))


def flatten_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings to dotted keys; leaves (lists included) become strings."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if _is_mapping(value) and value:
            flat.update(flatten_params(value, prefix=f"{dotted}."))
        else:
            flat[dotted] = _param_value(value)
    return flat


def without_keys(config: Mapping[str, Any], dotted_keys: Sequence[str]) -> dict[str, Any]:
    """A copy of a nested config without the given dotted keys (absent ones are ignored).

    >>> without_keys({"paths": {"output_dir": "o", "data_dir": "d"}, "seed": 1}, ["paths.output_dir"])
    {'paths': {'data_dir': 'd'}, 'seed': 1}
    """
    kept: dict[str, Any] = {}
    for key, value in config.items():
        inner = [k.split(".", 1)[1] for k in dotted_keys if k.startswith(f"{key}.")]
        if key in dotted_keys:
            continue
        kept[key] = without_keys(value, inner) if inner and _is_mapping(value) else value
    return kept


def experiment_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config's keys that describe the experiment: without :data:`CIRCUMSTANCE_KEYS` and the
    :data:`WIRING_KEYS` at any depth (see there why).

    >>> experiment_params({"tracking": {"worker": True}, "callbacks": {"printer": {"_target_": "P"},
    ...     "early_stopping": {"_target_": "E", "patience": 3}}, "seed": 1})
    {'callbacks': {'early_stopping': {'patience': 3}}, 'seed': 1}
    """
    return _without_wiring(without_keys(config, CIRCUMSTANCE_KEYS))


def _without_wiring(config: Mapping[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in config.items():
        if key in WIRING_KEYS:
            continue
        value = _without_wiring(value) if _is_mapping(value) else value
        if not (_is_mapping(value) and not value and _is_mapping(config[key]) and config[key]):
            kept[key] = value  # an entry that held only wiring (callbacks.printer without settings) goes
    return kept


def _param_value(value: Any) -> str:
    if _is_mapping(value):
        return "{}"
    if _is_sequence(value):
        try:
            return json.dumps(list(value), default=str)
        except (TypeError, ValueError):
            return str(list(value))
    return str(value)


def mlflow_key(key: str) -> str:
    """A param or tag key MLflow accepts: a Hydra override's ``+``/``~`` dropped, other characters
    MLflow refuses as ``_``, cut at its length limit.

    >>> mlflow_key("search_space.+tracking.tags.mirror")
    'search_space.tracking.tags.mirror'
    """
    return _BAD_KEY_CHARS.sub("_", _OVERRIDE_PREFIX.sub(r"\1", str(key)))[:MAX_KEY_LENGTH]


def mlflow_params(config: Mapping[str, Any]) -> dict[str, str]:
    """Redacted, flattened params within MLflow's key and value limits."""
    params: dict[str, str] = {}
    for key, value in flatten_params(redact_config(config)).items():
        params[mlflow_key(key)] = truncate_value(value)
    return params


def truncate_value(value: str, limit: int = MAX_PARAM_VAL_LENGTH) -> str:
    """Cut a value to ``limit`` characters, ending with a marker saying so."""
    if len(value) <= limit:
        return value
    return value[: limit - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    """``items`` in consecutive lists of at most ``size``."""
    return [items[start : start + size] for start in range(0, len(items), size)]


def config_yaml(config_yaml_text: str | None, params: Mapping[str, Any] | None) -> str | None:
    """The config artifact: the given YAML (or the params dumped as YAML), redacted."""
    import yaml

    if config_yaml_text is not None:
        # libyaml's loader when PyYAML has it: the pure-Python one took 0.4 s for the demo config
        loaded = yaml.load(config_yaml_text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    elif params is not None:
        loaded = params
    else:
        return None
    return yaml.safe_dump(redact_config(_plain(loaded)), sort_keys=False, allow_unicode=True)


def redacted_yaml(config: Any) -> str:
    """A config (an OmegaConf one, resolved or not, or plain data) as YAML, secrets redacted:
    what a run writes to its folder (``config_resolved.yaml``).

    >>> print(redacted_yaml({"source": "https://alice:pw@host/repo", "api_key": "k"}), end="")
    source: https://alice:***@host/repo
    api_key: '***'
    """
    import yaml

    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(config, (DictConfig, ListConfig)):
            config = OmegaConf.to_container(config, resolve=True)
    except ImportError:  # plain data needs no OmegaConf
        pass
    return yaml.safe_dump(redact_config(_plain(config)), sort_keys=False, allow_unicode=True)


def redact_yaml_files(folder: str | Path, pattern: str = ".hydra/*.yaml") -> list[Path]:
    """Rewrite the YAML files of ``folder`` matching ``pattern`` (Hydra's ``config.yaml``,
    ``hydra.yaml``, ``overrides.yaml``; a sweep's ``multirun.yaml``) without their secrets; the
    files rewritten. A file that is not YAML is redacted as text."""
    import yaml

    rewritten = []
    for path in sorted(Path(folder).glob(pattern)):
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            new = yaml.safe_dump(redact_config(yaml.safe_load(text)), sort_keys=False, allow_unicode=True)
        except yaml.YAMLError:
            new = redact_text(text)
        if yaml_changed(text, new):
            path.write_text(new, encoding="utf-8")
            rewritten.append(path)
    return rewritten


def yaml_changed(old: str, new: str) -> bool:
    """True when ``new`` (a re-dump) holds other data than ``old``: unchanged files keep their form."""
    import yaml

    try:
        return yaml.safe_load(old) != yaml.safe_load(new)
    except yaml.YAMLError:
        return old != new


def _plain(value: Any) -> Any:
    """Mappings and sequences (OmegaConf's included) as plain dicts and lists."""
    if _is_mapping(value):
        return {str(k): _plain(v) for k, v in value.items()}
    if _is_sequence(value):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


# Checked before the abstract Mapping/Sequence: the first isinstance() of a type against an ABC
# walks every registered subclass (hundreds of dict subclasses once transformers is imported),
# which cost 0.4 s per run for a handful of scalar types.
_SCALARS = (str, bytes, int, float, bool, type(None))


def _is_mapping(value: Any) -> bool:
    return isinstance(value, dict) or (not isinstance(value, _SCALARS) and isinstance(value, Mapping))


def _is_sequence(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return True
    return not isinstance(value, _SCALARS) and isinstance(value, Sequence)


def trainer_config_dict(config: Any) -> dict[str, Any]:
    """A TrainerConfig (or any config object) as a dict, for params."""
    to_dict = getattr(config, "to_dict", None)
    return to_dict() if callable(to_dict) else dict(getattr(config, "__dict__", {}))
