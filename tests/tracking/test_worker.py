"""The tracking worker: MLflow's work in a process of its own (``MLflowCallback(worker=True)``)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from medkit_exp.errors import TrackingError
from medkit_exp.training import TrainerCallback
from tests.tracking.helpers import metric_steps

ROOT = Path(__file__).resolve().parents[2]


def _script(tmp_path: Path, tracking_uri: str, experiment: str, body: str) -> subprocess.CompletedProcess:
    """Run a training with a worker-mode callback in a fresh interpreter (stdout: a JSON line)."""
    code = textwrap.dedent(f"""
        import json, os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from medkit_exp.tracking import MLflowCallback
        from tests.training.toy import toy_trainer_builder
        callback = MLflowCallback({tracking_uri!r}, {experiment!r}, worker=True, flush_interval=0.2,
                                  artifact_location={str(tmp_path / 'artifacts')!r})
        build = toy_trainer_builder({str(tmp_path / 'run')!r}, logging_steps=1, eval_strategy="steps", eval_steps=4,
                                    nb_training_epochs=2, checkpoint_metric="accuracy", minimize_checkpoint_metric=False)
    """) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_the_training_process_never_imports_mlflow(tmp_path, tracking_uri, experiment_name, client):
    done = _script(tmp_path, tracking_uri, experiment_name, """
        trainer = build(callback=[callback])
        trainer.train()
        print(json.dumps({"run_id": callback.run_id, "mlflow": "mlflow" in sys.modules,
                          "matplotlib": "matplotlib" in sys.modules, "steps": trainer.state.global_step}))
    """)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["mlflow"] is False and result["matplotlib"] is False
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert metric_steps(client, result["run_id"], "train/loss") == list(range(1, result["steps"] + 1))
    assert {a.path for a in client.list_artifacts(result["run_id"])} >= {"history", "plots", "checkpoints"}


def test_a_training_process_killed_hard_leaves_its_run_killed_not_running(tmp_path, tracking_uri, experiment_name, client):
    """SIGKILL gives the training no chance to end its run: the worker sees its stdin close,
    sends what it has and ends the run KILLED."""
    done = _script(tmp_path, tracking_uri, experiment_name, """
        from medkit_exp.training import TrainerCallback

        class DieAt(TrainerCallback):
            def on_step_end(self, step_idx, nb_batches, phase):
                if phase == "train" and self.state.global_step == 6:
                    print(json.dumps({"run_id": callback.run_id}), flush=True)
                    os.kill(os.getpid(), 9)

        build(callback=[callback, DieAt()]).train()
    """)
    assert done.returncode == -9, done.stderr[-3000:]
    run_id = json.loads(done.stdout.strip().splitlines()[-1])["run_id"]
    deadline = time.monotonic() + 60
    while client.get_run(run_id).info.status == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.2)
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["error"] == "the training process ended without closing the run"
    assert metric_steps(client, run_id, "train/loss")[:5] == [1, 2, 3, 4, 5]  # what was written before the kill


def test_worker_log_records_reach_the_training_process_loggers(make_trainer, make_callback, client, caplog):
    with caplog.at_level(logging.INFO, logger="medkit_exp.tracking"):
        callback = make_callback(worker=True, plots=False, log_checkpoints=False)
        make_trainer(callback=[callback], nb_training_epochs=1).train()
    created = [r for r in caplog.records if "MLflow run" in r.getMessage() and callback.run_id in r.getMessage()]
    assert created and created[0].name == "medkit_exp.tracking.callback"  # logged in the worker, handled here


def test_a_run_mlflow_refuses_for_good_raises_a_clear_error(make_trainer, make_callback):
    bad = make_callback(worker=True, experiment_name="x" * 600, plots=False, log_checkpoints=False)
    trainer = make_trainer(callback=[bad], nb_training_epochs=1)
    with pytest.raises(TrackingError, match="MLflow could not open the run: .*maximum length of 500"):
        trainer.train()
    assert trainer.state.global_step == 0


def test_a_worker_serves_the_runs_of_a_process_one_after_the_other(make_trainer, make_callback, client, tmp_path):
    from medkit_exp.tracking import worker

    first = make_callback(worker=True, plots=False, log_checkpoints=False)
    make_trainer(callback=[first], nb_training_epochs=1).train()
    [idle] = [w for w in worker._idle if w.alive]
    second = make_callback(worker=True, plots=False, log_checkpoints=False)
    # a new run: a folder of its own
    make_trainer(callback=[second], nb_training_epochs=1, output_dir=str(tmp_path / "second")).train()
    assert [w for w in worker._idle if w.alive] == [idle]  # the same process, given back again
    assert first.run_id != second.run_id
    assert {client.get_run(r).info.status for r in (first.run_id, second.run_id)} == {"FINISHED"}


def test_without_a_worker_process_tracking_runs_in_the_training_process(make_trainer, make_callback, client, monkeypatch, caplog):
    from medkit_exp.tracking import worker

    def cannot_start(self):
        raise OSError("no process left")

    monkeypatch.setattr(worker, "_idle", [])
    monkeypatch.setattr(worker.WorkerProcess, "__init__", cannot_start)
    callback = make_callback(worker=True, plots=False, log_checkpoints=False)
    with caplog.at_level(logging.WARNING, logger="medkit_exp.tracking"):
        make_trainer(callback=[callback], nb_training_epochs=1).train()
    assert "No MLflow tracking worker (no process left): tracking runs in the training process" in caplog.text
    assert client.get_run(callback.run_id).info.status == "FINISHED"


@pytest.mark.parametrize("worker", [True, False])
def test_run_task_takes_the_function_itself(make_trainer, make_callback, client, worker):
    from tests.tracking.helpers import tag_task

    class TagAtEnd(TrainerCallback):
        def on_train_end(self):
            callback.run.run_task(tag_task, key="task", value="ran")

    callback = make_callback(worker=worker)
    make_trainer(callback=[TagAtEnd(), callback]).train()
    assert client.get_run(callback.run_id).data.tags["task"] == "ran"


def test_run_task_refuses_a_function_no_process_can_import():
    """In the worker or not, alike: a worker could not import a lambda or a nested function."""
    from medkit_exp.tracking.run_handle import RunHandle

    def nested(run):
        pass

    for function in (lambda run: None, nested, "tests.tracking.helpers:tag_task"):  # no name strings either
        with pytest.raises(TypeError, match="module-level function"):
            RunHandle("0" * 32, "sqlite:///unused.db").run_task(function)


def test_a_pooled_worker_sees_the_tracking_variables_of_each_run_and_keeps_its_others(
        make_trainer, make_callback, client, tmp_path, monkeypatch):
    """The worker started before these variables changed: each run's Open carries them (set ones
    set, removed ones removed); a variable MLflow's work does not read is not its business."""
    from tests.tracking.helpers import env_tag_task

    current = {}

    class TagEnv(TrainerCallback):
        def on_train_end(self):
            for name in ("MLFLOW_TEST_MARK", "UNRELATED_TEST_MARK"):
                current["callback"].run.run_task(env_tag_task, name=name)

    def tags_of_a_run(folder: str) -> dict[str, str]:
        callback = current["callback"] = make_callback(worker=True, plots=False, log_checkpoints=False)
        make_trainer(callback=[TagEnv(), callback], nb_training_epochs=1, output_dir=str(tmp_path / folder)).train()
        return client.get_run(callback.run_id).data.tags

    monkeypatch.setenv("MLFLOW_TEST_MARK", "first")
    first = tags_of_a_run("first")
    assert first["env.MLFLOW_TEST_MARK"] == "first"
    monkeypatch.delenv("MLFLOW_TEST_MARK")
    monkeypatch.setenv("UNRELATED_TEST_MARK", "set after the worker started")
    second = tags_of_a_run("second")
    assert second["env.MLFLOW_TEST_MARK"] == "<unset>"
    assert second["env.UNRELATED_TEST_MARK"] == "<unset>"  # only the tracking variables travel


def test_activate_restores_an_unset_fluent_tracking_uri(client, tmp_path, monkeypatch):
    """Through MLflow's public API only: the URI unset before is unset after (MLflow's own
    resolution applies again), a URI set before is set again."""
    import mlflow

    from medkit_exp.tracking.run_handle import RunHandle

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(None)
    default = mlflow.get_tracking_uri()
    run_id = client.create_run(client.create_experiment(f"activate-{tmp_path.name}")).info.run_id
    handle = RunHandle(run_id, client.tracking_uri)
    with handle.activate() as run:
        assert run.info.run_id == run_id and mlflow.get_tracking_uri() == client.tracking_uri
    assert "MLFLOW_TRACKING_URI" not in os.environ and mlflow.get_tracking_uri() == default
    mlflow.set_tracking_uri("sqlite:///elsewhere.db")
    try:
        with handle.activate():
            pass
        assert mlflow.get_tracking_uri() == "sqlite:///elsewhere.db"
    finally:
        mlflow.set_tracking_uri(None)


def test_a_request_the_tracker_does_not_know_is_refused_by_type(tmp_path):
    from medkit_exp.tracking.tracker import RunTracker

    with pytest.raises(RuntimeError, match="Flush before Open"):
        from medkit_exp.tracking.messages import Flush

        RunTracker({}).handle(Flush())
    tracker = RunTracker({})
    tracker.logger = object()  # opened, as far as dispatch goes
    with pytest.raises(TypeError, match="not a tracking request"):
        tracker.handle({"call": "submit"})  # the former string-named calls mean nothing now
