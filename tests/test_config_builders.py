"""The values the config check shares with plain-Python users: TrainerConfig, the scheduler
builders and NERDataConfig refuse non-finite, negative, zero-where-meaningless and huge values
naming the key; checking a config imports nothing heavy; --cfg and --multirun still work."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medkit_exp.errors import ConfigError
from medkit_exp.ner.data import NERDataConfig
from medkit_exp.training.config import TrainerConfig, check_number
from medkit_exp.training.schedulers import ReduceLROnPlateauBuilder, WarmupDecaySchedulerBuilder
from tests.test_cli import run_cli

ROOT = Path(__file__).resolve().parents[1]
NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(("key", "value"), [
    ("learning_rate", NAN), ("learning_rate", INF), ("learning_rate", 0.0), ("weight_decay", NAN),
    ("weight_decay", INF), ("weight_decay", -0.1), ("max_grad_norm", NAN), ("max_grad_norm", 0.0),
    ("seed", -1), ("seed", 2**32), ("batch_size", 0), ("batch_size", 10**20), ("max_steps", 0),
    ("eval_batch_size", 0), ("logging_steps", 0), ("checkpoint_metric", ""), ("batch_size", 1.5),
])
def test_trainer_config_refuses_naming_the_field(key, value):
    with pytest.raises(ConfigError) as caught:
        TrainerConfig("out", **{key: value})
    assert caught.value.key == key


@pytest.mark.parametrize(("builder", "kwargs", "key"), [
    (ReduceLROnPlateauBuilder, {"factor": 1.5}, "factor"), (ReduceLROnPlateauBuilder, {"factor": 1.0}, "factor"),
    (ReduceLROnPlateauBuilder, {"factor": 0.0}, "factor"), (ReduceLROnPlateauBuilder, {"factor": -1.0}, "factor"),
    (ReduceLROnPlateauBuilder, {"factor": NAN}, "factor"), (ReduceLROnPlateauBuilder, {"patience": -1}, "patience"),
    (ReduceLROnPlateauBuilder, {"threshold": NAN}, "threshold"), (ReduceLROnPlateauBuilder, {"mode": "maxx"}, "mode"),
    (WarmupDecaySchedulerBuilder, {"warmup_ratio": NAN}, "warmup_ratio"),
    (WarmupDecaySchedulerBuilder, {"warmup_ratio": 1.0}, "warmup_ratio"),
    (WarmupDecaySchedulerBuilder, {"warmup_steps": -1}, "warmup_steps"),
    (WarmupDecaySchedulerBuilder, {"min_lr_ratio": INF}, "min_lr_ratio"),
    (WarmupDecaySchedulerBuilder, {"min_lr_ratio": 1.5}, "min_lr_ratio"),
])
def test_scheduler_builders_refuse_naming_the_key(builder, kwargs, key):
    with pytest.raises(ConfigError) as caught:
        builder(**kwargs)
    assert caught.value.key == f"scheduler.{key}"


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"labels": ["a", "a"]}, "data.labels"), ({"labels": []}, "data.labels"), ({"labels": ["a b"]}, "data.labels"),
    ({"max_documents": -1}, "data.max_documents"), ({"max_documents": 0}, "data.max_documents"),
    ({"format": "bratt"}, "data.format"), ({"name": ""}, "data.name"), ({"split": "sentence"}, "data.split"),
    ({"label_map": {"X": ""}}, "data.label_map.X"),
])
def test_data_config_refuses_naming_the_key(kwargs, key):
    with pytest.raises(ConfigError) as caught:
        NERDataConfig(**kwargs)
    assert caught.value.key == key


@given(st.floats(allow_nan=True, allow_infinity=True), st.one_of(st.none(), st.floats(-10, 10)))
def test_check_number_never_accepts_a_non_finite_value_or_one_below_its_minimum(value, minimum):
    try:
        check_number("k", value, minimum)
    except ConfigError as error:
        assert error.key == "k" and "\n" not in str(error)
        return
    assert math.isfinite(value) and (minimum is None or value >= minimum)


@pytest.mark.parametrize(("override", "imported"), [
    # a bad value is refused before anything heavy is imported
    ("optimizer.lr=nan", "[]"),
    # a good config: the component's class is imported for its signature (its module imports
    # torch, which the task needs next anyway); nothing else, and no model is loaded
    ("optimizer.lr=0.001", "['torch']"),
])
def test_checking_a_config_imports_nothing_heavy(override, imported):
    code = (
        "import sys\n"
        "from medkit_exp.config_check import command_line_args\n"
        "from medkit_exp.config_compose import check_composed_command_line\n"
        "from medkit_exp.errors import ConfigError\n"
        "from medkit_exp.schema import MedkitExpConfig\n"
        "import medkit_exp.cli\n"
        "args = command_line_args(['+experiment=ner', 'debug=fast', 'optimizer=sgd', 'metrics=seqeval',"
        f" 'scheduler=plateau', '{override}', 'hydra.run.dir=/tmp/unused'])\n"
        "try:\n    check_composed_command_line(MedkitExpConfig, args)\nexcept ConfigError:\n    pass\n"
        "print([m for m in ('torch', 'transformers', 'mlflow', 'optuna', 'seqeval') if m in sys.modules])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.stdout.strip() == imported, result.stderr[-2000:]


def test_cfg_job_still_prints_the_config(tmp_path):
    result = run_cli(tmp_path, "+experiment=ner", "optimizer=sgd", "--cfg", "job")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "experiment_name: ner" in result.stdout and "momentum: 0.9" in result.stdout


def test_multirun_with_a_bad_value_stops_before_any_job(tmp_path):
    result = run_cli(tmp_path, "+experiment=ner", "debug=fast", "tracking=none", "--multirun", "seed=1,2",
                     "optimizer.lr=nan", "hydra.sweep.dir=sweep")
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("Error: config key 'optimizer.lr': must be a finite number, got nan")
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize(("sweep", "message"), [
    (["optimizer.lr=1e-4,nan"], "config key 'optimizer.lr': must be a finite number, got nan"),
    (["scheduler=linear,cosin"], "config key 'scheduler': no option 'cosin' in conf/scheduler; did you mean cosine?"),
    (["seed=range(-2,2)"], "config key 'seed': must be >= 0, got -2"),
    (["hparams_search=ner_optuna", "scheduler=choice(linear,cosin)"], "config key 'scheduler': no option 'cosin'"),
    (["trainer.batch_size=1,abc"], "config key 'trainer.batch_size': Value 'abc' of type 'str' could not be converted"),
    (["seed=range(0,5000)", "optimizer.lr=nan,1e-4"], "config key 'optimizer.lr': must be a finite number"),
])
def test_each_value_of_a_command_line_sweep_is_checked_before_the_first_job(sweep, message):
    from medkit_exp.config_check import command_line_args
    from medkit_exp.config_compose import check_composed_command_line
    from medkit_exp.schema import MedkitExpConfig

    multirun = [] if any(s.startswith("hparams_search") for s in sweep) else ["--multirun"]
    with pytest.raises(ConfigError, match="^" + message.replace("?", r"\?")):
        check_composed_command_line(MedkitExpConfig, command_line_args(["+experiment=ner", *multirun, *sweep]))


def test_the_readme_sweeps_pass_the_check():
    from medkit_exp.config_check import command_line_args
    from medkit_exp.config_compose import check_composed_command_line
    from medkit_exp.schema import MedkitExpConfig

    for argv in (["+experiment=ner", "hparams_search=ner_optuna", "hydra.sweeper.n_trials=2"],
                 ["+experiment=ner", "hparams_search=ner_optuna", "optimizer.lr=tag(log, interval(1e-5, 1e-3))",
                  "scheduler=choice(linear, cosine)"],
                 ["+experiment=ner", "--multirun", "optimizer.lr=1e-4,2e-4", "scheduler=linear,cosine"]):
        check_composed_command_line(MedkitExpConfig, command_line_args(argv))


def test_a_component_that_cannot_be_built_is_one_line_naming_the_component_key(tmp_path):
    from medkit_exp.cli import one_line

    result = run_cli(tmp_path, "+experiment=ner", "debug=fast", "tracking=none", "hydra.run.dir=run",
                     "component.model_name_or_path=nobody/no-such-model")
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith("Error: config key 'component.model_name_or_path': "), errors
    assert "Error in call to target" not in result.stderr and "Traceback" not in result.stderr
    assert one_line("a\n  b\n\nc") == "a b c" and len(one_line("x" * 5000)) == 1000
