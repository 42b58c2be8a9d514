"""What a tracked toy run records in a real MLflow store."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from medkit_exp.tracking import describe_dataset
from tests.tracking.helpers import metric_steps
from tests.training.toy import make_texts

ROOT = Path(__file__).resolve().parents[2]


def _history(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "history.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("worker", [False, True], ids=["inline", "worker"])
def test_run_records_params_metrics_datasets_tags_and_artifacts(make_trainer, make_callback, client, tmp_path, worker):
    train, dev = make_texts(64, 1), make_texts(24, 2)
    datasets = [describe_dataset("toy-train", train, "toy:train", "train"), describe_dataset("toy-dev", dev, "toy:dev", "eval")]
    callback = make_callback(
        worker=worker, run_name="first", params={"model": {"dim": 16, "dropout": 0.0}, "trainer": {"lr": 0.01}},
        config_yaml="model:\n  dim: 16\n  dropout: 0.0\ntrainer:\n  lr: 0.01\n", overrides=["trainer.lr=0.01"],
        datasets=datasets, tags={"team": "nlp"}, log_checkpoints=["best", "last"],
    )
    trainer = make_trainer(train=train, callback=[callback])
    trainer.train()

    run = client.get_run(callback.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "first"
    assert run.data.params == {"model.dim": "16", "model.dropout": "0.0", "trainer.lr": "0.01"}
    # Metric steps are global optimizer steps, as in the trainer's history.
    history = _history(tmp_path / "run")
    log_steps = [r["step"] for r in history if r["type"] == "log"]
    eval_steps = [r["step"] for r in history if r["type"] == "eval"]
    assert log_steps == list(range(2, trainer.state.global_step + 1, 2))
    for key in ("train/loss", "train/learning_rate", "train/grad_norm", "train/samples_per_second", "train/epoch"):
        assert metric_steps(client, callback.run_id, key) == log_steps, key
    for key in ("eval/loss", "eval/accuracy", "train/loss_avg"):
        assert metric_steps(client, callback.run_id, key) == eval_steps, key
    losses = {m.step: m.value for m in client.get_metric_history(callback.run_id, "train/loss")}
    assert losses == pytest.approx({r["step"]: r["loss"] for r in history if r["type"] == "log"})

    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"toy-train", "toy-dev"}
    assert inputs["toy-train"].dataset.digest == datasets[0].digest
    assert json.loads(inputs["toy-train"].dataset.profile) == {"num_records": 64}
    assert json.loads(inputs["toy-dev"].dataset.source) == {"uri": "toy:dev"}
    assert {t.key: t.value for t in inputs["toy-dev"].tags} == {"mlflow.data.context": "eval"}

    tags = run.data.tags
    assert tags["data.toy-train.digest"] == datasets[0].digest and tags["data.toy-dev.count"] == "24"
    assert tags["experiment_name"] == callback.experiment_name and tags["run_name"] == "first"
    assert tags["team"] == "nlp" and tags["host"] and tags["command"]
    for package in ("torch", "transformers", "medkit_exp", "mlflow", "python"):
        assert tags[f"versions.{package}"] not in ("", "not installed"), package
    assert tags["global_step"] == str(trainer.state.global_step)

    def files(path=None):
        return {a.path for a in client.list_artifacts(callback.run_id, path)}

    assert {"config", "history", "plots", "checkpoints"} <= files()
    assert files("plots") == {"plots/learning_curves.png"}
    assert files("history") == {"history/history.jsonl"}
    assert files("config") == {"config/config.yaml", "config/overrides.yaml"}
    best, last = Path(trainer.state.best_checkpoint).name, Path(trainer.state.last_checkpoint).name
    assert "checkpoints/best/toy_model.pt" in files("checkpoints/best")
    assert ("checkpoints/last" in files("checkpoints")) == (best != last)
    local = Path(client.download_artifacts(callback.run_id, "config/config.yaml", str(tmp_path / "dl")))
    assert yaml.safe_load(local.read_text()) == {"model": {"dim": 16, "dropout": 0.0}, "trainer": {"lr": 0.01}}
    png = Path(client.download_artifacts(callback.run_id, "plots/learning_curves.png", str(tmp_path / "dl")))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_learning_curves_drawn_once_at_the_last_evaluation_before_the_last_checkpoint(
    make_trainer, make_callback, client, tmp_path, monkeypatch
):
    """The curves are drawn when the last evaluation is in the history, while the last checkpoint
    is still to be written (off the end of the run), and not drawn again at the end."""
    import medkit_exp.tracking.plots as plots
    from medkit_exp.training.checkpoint import checkpoint_name

    seen = []
    original = plots.plot_learning_curves

    def drawing(history, png, **kwargs):
        lines = Path(history).read_text().splitlines()
        last = Path(trainer.state.output_dir) / "checkpoints" / checkpoint_name(trainer.state.max_steps)
        seen.append((lines, last.exists()))
        return original(history, png, **kwargs)

    # the task (plots.log_learning_curves, passed as itself) draws with plots.plot_learning_curves
    monkeypatch.setattr(plots, "plot_learning_curves", drawing)
    callback = make_callback(worker=False)
    trainer = make_trainer(callback=[callback])
    trainer.train()
    assert trainer.state.global_step == trainer.state.max_steps
    assert len(seen) == 1
    lines, last_checkpoint_written = seen[0]
    assert lines == (tmp_path / "run" / "history.jsonl").read_text().splitlines()  # the whole history
    assert not last_checkpoint_written
    assert [a.path for a in client.list_artifacts(callback.run_id, "plots")] == ["plots/learning_curves.png"]


def test_without_params_the_trainer_config_is_logged(make_trainer, make_callback, client):
    callback = make_callback(plots=False, log_checkpoints=False)
    make_trainer(callback=[callback], nb_training_epochs=1).train()
    params = client.get_run(callback.run_id).data.params
    assert params["trainer.learning_rate"] == "0.01" and params["trainer.batch_size"] == "8"


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
@pytest.mark.parametrize("worker", [False, True], ids=["inline", "worker"])
def test_git_commit_and_dirty_flag_of_the_package_and_of_the_working_dir(make_trainer, make_callback, client, tmp_path,
                                                                         worker):
    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                              check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("commit", "-q", "-m", "first")
    (tmp_path / "code.py").write_text("x = 2\n")  # uncommitted change: dirty
    callback = make_callback(worker=worker, plots=False, log_checkpoints=False)
    make_trainer(callback=[callback], nb_training_epochs=1).train()
    tags = client.get_run(callback.run_id).data.tags
    assert tags["workdir.git.commit"] == git("rev-parse", "HEAD") and tags["workdir.git.dirty"] == "true"
    # the code that ran is the package's checkout, not the working directory's repository
    package_head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert tags["medkit_exp.git.commit"] == package_head == tags["mlflow.source.git.commit"]


def test_outside_any_repository_the_package_version_is_still_recorded(make_trainer, make_callback, client):
    callback = make_callback(plots=False, log_checkpoints=False)  # the working dir is a bare tmp folder
    make_trainer(callback=[callback], nb_training_epochs=1).train()
    tags = client.get_run(callback.run_id).data.tags
    assert not any(key.startswith(("git.", "workdir.git.")) for key in tags)
    package_head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert tags["medkit_exp.git.commit"] == package_head and tags["medkit_exp.version"] == "0.1.0"
    assert tags["medkit_exp.source"] == f"git checkout {ROOT}" and tags["medkit_exp.git.dirty"] in ("true", "false")


def test_many_and_long_params_within_mlflow_limits(make_trainer, make_callback, client, tmp_path):
    params = {"group": {f"p{i:03d}": i for i in range(250)}, "long": "x" * 7000}
    callback = make_callback(params=params, plots=False, log_checkpoints=False)
    make_trainer(callback=[callback], nb_training_epochs=1).train()
    logged = client.get_run(callback.run_id).data.params
    assert len(logged) == 251 and logged["group.p249"] == "249"
    assert len(logged["long"]) == 6000 and logged["long"].endswith("[truncated; full value in config/config.yaml]")
    config = Path(client.download_artifacts(callback.run_id, "config/config.yaml", str(tmp_path / "dl")))
    assert yaml.safe_load(config.read_text())["long"] == "x" * 7000


def test_log_every_n_steps(make_trainer, make_callback, client):
    callback = make_callback(log_every_n_steps=4, plots=False, log_checkpoints=False)
    trainer = make_trainer(callback=[callback], logging_steps=2)
    trainer.train()
    assert metric_steps(client, callback.run_id, "train/loss") == list(range(4, trainer.state.global_step + 1, 4))


def test_metrics_are_sent_in_batches_from_a_background_thread(make_trainer, make_callback, monkeypatch):
    from mlflow import MlflowClient

    calls = []
    original = MlflowClient.log_batch

    def spy(self, run_id, metrics=(), params=(), tags=(), synchronous=None):
        if metrics:
            calls.append((threading.current_thread().name, len(metrics)))
        return original(self, run_id, metrics=metrics, params=params, tags=tags, synchronous=synchronous)

    monkeypatch.setattr(MlflowClient, "log_batch", spy)
    callback = make_callback(flush_interval=60.0, plots=False, log_checkpoints=False)
    trainer = make_trainer(callback=[callback], logging_steps=1)
    trainer.train()
    assert trainer.state.global_step == 16  # 16 on_log events, 4 evaluations
    assert calls and all(name != threading.main_thread().name for name, _ in calls)
    # one batch: everything, flushed at the end (each evaluation: 3 values and best/eval/{accuracy,loss}, best/step)
    assert len(calls) == 1 and calls[0][1] == 16 * 6 + 4 * (3 + 3)


@pytest.mark.parametrize("worker", [False, True], ids=["inline", "worker"])
def test_hooks_get_the_run_and_can_log_to_it(make_trainer, make_callback, client, tmp_path, worker):
    import mlflow

    seen = {}

    def model_logger(checkpoint_dir, run):
        seen["checkpoint"] = checkpoint_dir
        with run.activate():
            mlflow.log_text("model card", "model/card.txt")

    def confusion(run, state):
        seen["step"] = state.global_step
        run.client.log_text(run.run_id, "matrix", "plots/confusion.txt")

    callback = make_callback(worker=worker, log_model=model_logger, extra_artifacts=[confusion], plots=False, log_checkpoints=False)
    trainer = make_trainer(callback=[callback])
    trainer.train()
    assert seen == {"checkpoint": trainer.state.best_checkpoint, "step": trainer.state.global_step}
    paths = {a.path for a in client.list_artifacts(callback.run_id, "model")} | {
        a.path for a in client.list_artifacts(callback.run_id, "plots")}
    assert paths == {"model/card.txt", "plots/confusion.txt"}
    assert client.get_run(callback.run_id).info.status == "FINISHED"
    assert mlflow.active_run() is None


@pytest.mark.parametrize("worker", [False, True], ids=["inline", "worker"])
def test_child_run_of_a_sweep(make_trainer, make_callback, client, experiment_name, worker):
    from medkit_exp.tracking.ops import get_or_create_experiment

    parent = client.create_run(get_or_create_experiment(client, experiment_name), run_name="sweep")
    callback = make_callback(worker=worker, parent_run_id=parent.info.run_id, plots=False, log_checkpoints=False)
    make_trainer(callback=[callback], nb_training_epochs=1).train()
    assert client.get_run(callback.run_id).data.tags["mlflow.parentRunId"] == parent.info.run_id


def test_default_tracking_uri_is_explicit(monkeypatch, tmp_path):
    from medkit_exp.tracking import resolve_tracking_uri

    assert resolve_tracking_uri("sqlite:///x.db") == "sqlite:///x.db"
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"  # MLflow 3: ./mlflow.db
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    assert resolve_tracking_uri() == "http://tracking:5000"


@pytest.mark.parametrize("worker", [False, True], ids=["inline", "worker"])
def test_system_metrics_from_mlflow_monitor(make_trainer, make_callback, client, monkeypatch, caplog, worker):
    import importlib.util
    import logging

    import time

    from medkit_exp.training import TrainerCallback

    class SlowEvaluations(TrainerCallback):  # the monitor samples every 0.05 s: give it time
        def on_evaluate(self, metrics, step):
            time.sleep(0.15)

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.05")
    callback = make_callback(worker=worker, system_metrics=True, plots=False, log_checkpoints=False)
    with caplog.at_level(logging.WARNING, logger="medkit_exp.tracking"):
        make_trainer(callback=[callback, SlowEvaluations()]).train()
    run = client.get_run(callback.run_id)
    assert run.info.status == "FINISHED"
    if importlib.util.find_spec("psutil") is None:
        assert "system metrics are not logged" in caplog.text  # optional: training goes on
    else:  # the monitor sampled during the training: its system/* metrics arrived
        assert any(key.startswith("system/") for key in run.data.metrics), sorted(run.data.metrics)
        assert "less than one sampling period" not in caplog.text


def test_numpy_and_tensor_metric_values_are_logged():
    import numpy as np
    import torch

    from medkit_exp.tracking.messages import LogMetrics, is_number

    values = {"a": np.float32(0.5), "b": torch.tensor(0.25), "c": np.int64(3), "d": 1.5}
    assert all(is_number(value) for value in values.values())
    assert not any(is_number(value) for value in (True, "0.1", None, torch.ones(3)))
    points = LogMetrics.at_step(values, step=7).points
    assert [point[:2] for point in points] == [("a", 0.5), ("b", 0.25), ("c", 3.0), ("d", 1.5)]


def test_system_metrics_of_a_run_shorter_than_the_sampling_interval(make_trainer, make_callback, client, monkeypatch,
                                                                    caplog):
    """MLflow's monitor publishes only after a full interval: through MLflow's public API a shorter
    run gets no sample (tracking/system_metrics.py), still finishes, and a warning says so."""
    import pytest

    pytest.importorskip("psutil")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "600")
    callback = make_callback(system_metrics=True, plots=False, log_checkpoints=False)
    make_trainer(callback=[callback]).train()
    run = client.get_run(callback.run_id)
    assert run.info.status == "FINISHED"
    assert not any(key.startswith("system/") for key in run.data.metrics), sorted(run.data.metrics)
    assert "less than one sampling period (600s" in caplog.text
