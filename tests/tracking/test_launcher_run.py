"""``mlflow run`` sets MLFLOW_RUN_ID: training and evaluation log into that run, not a new one."""

from __future__ import annotations

import json

from medkit_exp.tracking.ops import EXPERIMENT_KIND_TAG, TRAINING_KIND
from tests.tracking.helpers import metric_steps


def _runs(client, experiment_name):
    experiment = client.get_experiment_by_name(experiment_name)
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def test_training_logs_into_the_run_named_by_mlflow_run_id(
    make_trainer, make_callback, client, experiment_name, monkeypatch
):
    launcher = client.create_run(client.create_experiment(experiment_name)).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", launcher)
    callback = make_callback()
    trainer = make_trainer(callback=[callback])
    trainer.train()

    assert callback.run_id == launcher
    assert [run.info.run_id for run in _runs(client, experiment_name)] == [launcher]
    eval_steps = [entry for entry in range(4, trainer.state.global_step + 1, 4)]
    assert metric_steps(client, launcher, "eval/accuracy") == eval_steps
    run = client.get_run(launcher)
    assert run.info.status == "FINISHED" and "trainer.batch_size" in run.data.params
    # `mlflow run` made the experiment without a kind: the training marks it as one of model training
    assert client.get_experiment_by_name(experiment_name).tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND


def test_an_experiment_kind_already_set_is_kept_when_attaching(
    make_trainer, make_callback, client, experiment_name, monkeypatch
):
    experiment_id = client.create_experiment(experiment_name, tags={EXPERIMENT_KIND_TAG: "genai_development"})
    monkeypatch.setenv("MLFLOW_RUN_ID", client.create_run(experiment_id).info.run_id)
    callback = make_callback()
    make_trainer(callback=[callback], max_steps=4).train()
    assert client.get_experiment(experiment_id).tags[EXPERIMENT_KIND_TAG] == "genai_development"


def test_an_unknown_mlflow_run_id_or_a_sweep_child_gets_a_run_of_its_own(
    make_trainer, make_callback, client, experiment_name, monkeypatch, tmp_path
):
    monkeypatch.setenv("MLFLOW_RUN_ID", "0123456789abcdef0123456789abcdef")  # not in this store
    callback = make_callback()
    make_trainer(callback=[callback]).train()
    assert callback.run_id != "0123456789abcdef0123456789abcdef"
    assert client.get_run(callback.run_id).data.metrics["eval/accuracy"] >= 0

    parent = client.create_run(client.get_experiment_by_name(experiment_name).experiment_id).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", parent)  # e.g. a sweep launched by `mlflow run`
    child = make_callback(parent_run_id=parent)
    make_trainer(callback=[child], output_dir=str(tmp_path / "child")).train()  # a new run: a new folder
    assert child.run_id not in (parent, callback.run_id)
    assert client.get_run(child.run_id).data.tags["mlflow.parentRunId"] == parent


def test_evaluation_logs_into_the_launcher_run_or_a_run_of_its_own(
    client, tracking_uri, experiment_name, tmp_path, monkeypatch
):
    from medkit_exp.evaluate import flat_metrics, log_to_mlflow

    report = {
        "checkpoint": str(tmp_path / "checkpoint-0000004"), "data": "demo", "split": "test", "documents": 3,
        "precision": "bf16", "prediction_precision": "bf16", "entities": 5, "words": {"loss": 1.25, "f1": 0.5, "problem_support": 5.0}, "spans": {"f1": 0.4},
    }
    (tmp_path / "metrics.json").write_text(json.dumps(report))
    tracking = {"tracking_uri": tracking_uri, "experiment_name": experiment_name}

    own = log_to_mlflow(tracking, report, [tmp_path / "metrics.json"])
    run = client.get_run(own)
    assert client.get_experiment(run.info.experiment_id).tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND
    assert run.info.run_name == "evaluate-test" and run.info.status == "FINISHED"
    assert run.data.metrics == flat_metrics(report) == {
        "test/loss": 1.25, "test/f1": 0.5, "test/problem_support": 5.0, "test/spans_f1": 0.4
    }
    assert run.data.params["evaluate.split"] == "test" and run.data.tags["task"] == "evaluate"
    assert run.data.params["evaluate.precision"] == run.data.params["evaluate.prediction_precision"] == "bf16"
    assert [a.path for a in client.list_artifacts(own, "evaluation")] == ["evaluation/metrics.json"]

    launcher = client.create_run(run.info.experiment_id).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", launcher)
    assert log_to_mlflow(tracking, report, [tmp_path / "metrics.json"]) == launcher
    assert client.get_run(launcher).data.metrics["test/spans_f1"] == 0.4
    assert client.get_run(launcher).info.status == "RUNNING"  # `mlflow run` ends its own run
    assert len(_runs(client, experiment_name)) == 2
