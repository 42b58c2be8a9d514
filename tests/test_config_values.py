"""Every key of every schema refuses its bad values in one line naming the key, before any work.

The keys and their types come from the schema dataclasses (walked, not listed); bad values are
generated per type: NaN, infinities, negatives and 64-bit overflows for numbers, zero where it
means nothing, wrong types, empty texts, unknown choices for enumerated texts, duplicate and
empty labels. Most run in-process through the same composition as the command line
(:func:`check_composed_command_line`); a representative subset runs the real command line.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import sys
import typing
from collections import Counter

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict
from omegaconf.errors import ValidationError

from medkit_exp.conf_location import config_dir
from medkit_exp.config_check import check_command_line, check_config, command_line_args
from medkit_exp.config_keys import component_file_keys, schema_fields
from medkit_exp.config_compose import check_composed_command_line, type_error
from medkit_exp.config_values import RULES, TAGGER_RULES
from medkit_exp.errors import ConfigError
from medkit_exp.schema import EvaluateConfig, MedkitExpConfig, PredictConfig
from tests.test_cli import run_cli
from tests.test_config_check import HYDRA_FILES, left_in

import medkit_exp.evaluate  # noqa: F401,E402 - registers the evaluate and predict schemas
import medkit_exp.predict  # noqa: F401,E402

SCHEMAS = {"config": MedkitExpConfig, "evaluate": EvaluateConfig, "predict": PredictConfig}
#: Keys set from another key: a value given to them is refused as such (naming them).
DERIVED = {"trainer.learning_rate", "trainer.weight_decay", "trainer.max_grad_norm"}
#: Texts where any non-empty value may be right (paths, names): only the empty text is bad.
FREE_TEXT = {
    "experiment_name", "optimized_metric", "resume_from", "paths.output_dir", "data.name", "data.path",
    "data.train", "data.dev", "data.test", "tracking.tracking_uri", "tracking.experiment_name", "tracking.run_name",
    "trainer.output_dir", "trainer.checkpoint_metric", "trainer.metric_to_track_lr", "callbacks.early_stopping.metric",
    "component.model_name_or_path",
}
#: Texts whose empty value means "unset".
EMPTY_IS_UNSET = {"paths.data_dir", "data.data_dir", "component.hf_auth_token"}
#: Paths the evaluate and predict applications check first, naming the key (a missing one, an
#: empty one: tests/test_evaluate_predict.py), before any work.
APP_CHECKED = {"checkpoint", "model", "input", "output"}
#: Numbers for which zero means nothing.
ZERO_IS_MEANINGLESS = {
    "optimizer.lr", "optimizer.max_grad_norm", "scheduler.factor", "trainer.nb_training_epochs", "trainer.batch_size",
    "trainer.gradient_accumulation_steps", "trainer.logging_steps", "trainer.max_steps", "trainer.eval_steps",
    "trainer.eval_batch_size", "data.max_documents", "tracking.log_every_n_steps", "callbacks.early_stopping.patience",
    "batch_size", "component.tokenizer_max_length", "component.pad_to_multiple_of",
}
#: Numbers with an upper bound (a huge value is out of range, not only out of 64 bits).
BOUNDED = {"seed", "optimizer.momentum", "scheduler.warmup_ratio", "scheduler.min_lr_ratio", "scheduler.factor",
           "component.tokenizer_max_length", "trainer.seed"}
#: (key, override): keys read only with another setting, or set through a config group.
NEEDS = {"scheduler.mode": ["scheduler=plateau"], "scheduler.factor": ["scheduler=plateau"],
         "scheduler.patience": ["scheduler=plateau"], "optimizer.momentum": ["optimizer=sgd"],
         "paths.data_dir": ["data=ncbi"], "data.data_dir": ["data=ncbi"],
         "trainer.metric_to_track_lr": ["scheduler=plateau"],
         "callbacks.early_stopping.metric": ["callbacks=early_stopping"]}
#: Values bad only with the rest of the config or the machine: a stride as long as the window
#: (debug=fast: 64 sub-tokens), fp16 on CPU, a CUDA device the machine lacks.
EXTRA = {"component.stride": ["64"], "trainer.precision": ["fp16"],
         "component.device": ["1000"], "device": ["1000"]}  # (no machine has cuda:1000)
#: Eval metrics watched by the run: a name the metrics never produce is refused before the model loads.
METRIC_KEYS = {"optimized_metric", "trainer.checkpoint_metric", "trainer.metric_to_track_lr",
               "callbacks.early_stopping.metric"}
#: The HF tagger's keys with their types (the component group is open: its class has them).
TAGGER_TYPES = {
    "model_name_or_path": str | None, "labels": list[str], "tagging_scheme": str | None, "tag_subtokens": bool,
    "tokenizer_max_length": int | None, "hf_auth_token": str | None, "device": int, "stride": int | None,
    "unknown_labels": str, "pad_to_multiple_of": int | None,  # or "auto" (its default)
}


def leaves(schema: type, prefix: str = "") -> list[tuple[str, typing.Any]]:
    """(dotted key, type) of every leaf of ``schema``; the component's keys are the tagger's."""
    found = []
    for name, kind in schema_fields(schema).items():
        if name == "component":
            found += [(f"component.{key}", kind) for key, kind in TAGGER_TYPES.items()]
        elif dataclasses.is_dataclass(kind):
            found += leaves(kind, f"{prefix}{name}.")
        else:
            found.append((f"{prefix}{name}", kind))
    return found


def _base(kind: typing.Any) -> tuple[type, bool]:
    args = typing.get_args(kind)
    optional = type(None) in args
    plain = [a for a in args if a is not type(None)] if args else [kind]
    origin = typing.get_origin(plain[0]) or plain[0]
    return origin, optional


def bad_values(key: str, kind: typing.Any) -> list[str]:
    """Command-line values that ``key`` (of type ``kind``) must refuse."""
    base, optional = _base(kind)
    if key in APP_CHECKED:
        return []
    values = [] if optional or key in EMPTY_IS_UNSET else ["null"]
    if base is bool:  # (OmegaConf reads any integer as a bool: 2 is true)
        values += ["maybe", "0.5"]
    elif base is float:
        values += ["nan", "inf", "-inf", "-1.5", "abc"] + (["1e300"] if key in BOUNDED else [])
    elif base is int:
        values += ["-2", "99999999999999999999", "-99999999999999999999", "1.5", "abc"]
        values += ["10000000000"] if key in BOUNDED else []
    elif base is str:
        values += [] if key in EMPTY_IS_UNSET else ["''"]
        values += [] if key in FREE_TEXT or key in EMPTY_IS_UNSET else ["zz_no_such_choice"]
    elif base is list:
        values += ["[]", "[a,a]", "['']", "'a b'"]
    elif base is dict:
        values += ["3", "abc"]
    if key in ZERO_IS_MEANINGLESS:
        values.append("0")
    if key in METRIC_KEYS:
        values += ["f2", "problem_f"]
    values += EXTRA.get(key, [])
    if key in ("paths.data_dir", "data.data_dir"):
        values.append("/no/such/folder")
    return values


def cases(config_name: str) -> list[tuple[str, str, str]]:
    schema = SCHEMAS[config_name]
    own = set(schema_fields(schema)) - set(schema_fields(MedkitExpConfig))  # evaluate/predict keys
    found = []
    for key, kind in leaves(schema):
        if config_name != "config" and "." in key:
            continue  # the shared groups: checked once, with the training config
        if config_name != "config" and key not in own:
            continue
        found += [(config_name, key, value) for value in bad_values(key, kind)]
    return found


CASES = cases("config") + cases("evaluate") + cases("predict")


@functools.lru_cache(maxsize=None)
def base_config(config_name: str, presets: tuple[str, ...]) -> typing.Any:
    """The composed config the bad values go into (composing costs ~0.3 s: once per preset)."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        overrides = ["+experiment=ner", "debug=fast", "paths.output_dir=/tmp/unused", *presets]
        return compose(config_name, overrides=overrides)


def refusal(config_name: str, key: str, value: str) -> ConfigError:
    """Set ``key=value`` as Hydra would (its parser gives the value, OmegaConf checks the type);
    then the key check and :func:`check_config`, as the command line does after composing."""
    schema = SCHEMAS[config_name]
    added = key.startswith("component.") and key.split(".", 1)[1] not in component_file_keys()
    override = f"{'+' if added else ''}{key}={value}"
    with pytest.raises(ConfigError) as caught:
        check_command_line(schema, ["+experiment=ner", override])
        cfg = copy.deepcopy(base_config(config_name, tuple(NEEDS.get(key, ()))))
        (parsed,) = OverridesParser.create().parse_overrides([override])
        try:
            with open_dict(cfg):
                OmegaConf.update(cfg, key, parsed.value(), merge=False)
        except ValidationError as error:
            raise type_error(error) from None
        check_config(cfg, schema)
    return caught.value


@pytest.mark.parametrize(("config_name", "key", "value"), CASES, ids=[f"{c}:{k}={v}" for c, k, v in CASES])
def test_every_bad_value_of_every_key_is_one_line_naming_the_key(config_name, key, value):
    error = refusal(config_name, key, value)
    assert error.key == key or error.key.startswith(f"{key}."), (error.key, str(error))
    assert "\n" not in str(error) and len(str(error)) < 400, str(error)


def test_bad_values_cover_every_key_of_every_schema_and_every_key_has_a_rule():
    keys = {key for config_name in SCHEMAS for key, _ in leaves(SCHEMAS[config_name])}
    tried = {key for _, key, _ in CASES}
    assert keys - {k for k in keys if k.startswith(("trainer.", "data."))} <= set(RULES) | {
        f"component.{k}" for k in TAGGER_RULES}  # trainer and data: their dataclasses validate
    missing = {key for key in keys if key not in tried and key not in {"component.hf_auth_token", *APP_CHECKED}}
    assert not missing, missing
    per_group = Counter(key.split(".")[0] if "." in key else f"{config}:top-level" for config, key, _ in CASES)
    print("bad values tried per group:", dict(sorted(per_group.items())), "total", len(CASES), file=sys.stderr)
    assert len(CASES) >= 300


def test_the_defaults_and_presets_pass():
    for preset in ([], ["optimizer=sgd"], ["metrics=seqeval"], ["scheduler=plateau"], ["trainer=gpu"],
                   ["callbacks=early_stopping"], ["debug=overfit"], ["tracking=none"]):
        argv = ["+experiment=ner", *preset, "hydra.run.dir=/tmp/unused"]
        check_composed_command_line(MedkitExpConfig, command_line_args(argv))


# Through the real command line: exit code 2, one Error line, no traceback, nothing written but Hydra's own files.
CLI_CASES = [
    ("seed=99999999999999999999", "seed"), ("seed=-1", "seed"), ("optimizer.lr=nan", "optimizer.lr"),
    ("optimizer.weight_decay=inf", "optimizer.weight_decay"),
    ("optimizer.max_grad_norm=nan", "optimizer.max_grad_norm"),
    ("scheduler=plateau scheduler.factor=1.5", "scheduler.factor"), ("scheduler=plateau scheduler.patience=-1",
                                                                       "scheduler.patience"),
    ("component.tokenizer_max_length=1000000000", "component.tokenizer_max_length"),
    ("data.max_documents=-1", "data.max_documents"), ("callbacks.early_stopping.min_delta=nan",
                                                      "callbacks.early_stopping.min_delta"),
    ("tracking.experiment_name=''", "tracking.experiment_name"), ("data.labels=[a,a]", "data.labels"),
    ("paths.output_dir=/dev/null/x", "paths.output_dir"), ("hydra.searchpath=[file:///no/such/folder]",
                                                           "hydra.searchpath"),
    ("scheduler=cosin", "scheduler"), ("trainer.batch_size=abc", "trainer.batch_size"),
    ("trainer.batch_size=[1", "trainer.batch_size"), ("newgroup=1", "newgroup"), ("+debug=overfit", "debug"),
    ("hparams_search=ner_optun", "hparams_search"), ("data=ncbii", "data"),
    ("+seed=3", "seed"),
]


@pytest.mark.parametrize(("args", "key"), CLI_CASES, ids=[a for a, _ in CLI_CASES])
def test_command_line_refuses_in_one_line_exit_2_before_any_work(tmp_path, args, key):
    result = run_cli(tmp_path, "+experiment=ner", "debug=fast", *args.split(), "hydra.run.dir=run",
                     f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}")
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: config key '{key}': "), result.stderr
    assert "Traceback" not in result.stderr and "Some weights" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 2, result.stderr  # the error and the HYDRA_FULL_ERROR hint
    assert left_in(tmp_path) <= {"run", *(f"run/{name}" for name in HYDRA_FILES)}, left_in(tmp_path)


def test_a_group_outside_the_defaults_without_plus_says_to_add_the_plus(tmp_path):
    result = run_cli(tmp_path, "experiment=ner", "hydra.run.dir=run")
    assert result.returncode == 2
    assert result.stderr.startswith("Error: config key 'experiment': is a config group not in the defaults: "
                                    "add it with a +: +experiment=ner"), result.stderr
