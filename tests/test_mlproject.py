"""``mlflow run .`` with the top-level MLproject: offline, local environment, and the run MLflow
creates is the run the command fills (training metrics, evaluation metrics), not a second one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from medkit_exp.training.history import HISTORY_FILE
from tests.test_cli import ROOT

DEMO_DEV = ROOT / "medkit_exp" / "ner" / "demo" / "dev"


def test_mlproject_declares_experiment_and_overrides_for_each_entry_point():
    project = yaml.safe_load((ROOT / "MLproject").read_text())
    points = project["entry_points"]
    assert set(points) == {"main", "train", "evaluate", "predict"}
    for name, point in points.items():
        assert {"experiment", "overrides"} <= set(point["parameters"]), name
        assert "{overrides}" in point["command"] and "+experiment={experiment}" in point["command"], name
    assert points["main"]["command"] == points["train"]["command"]


def _mlflow_run(tmp_path: Path, uri: str, *args: str) -> subprocess.CompletedProcess:
    environment = {
        **os.environ, "MLFLOW_TRACKING_URI": uri, "HF_HUB_OFFLINE": "1",
        # The entry points call `python`: this interpreter's, whatever the caller's PATH.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "HYDRA_FULL_ERROR"):
        environment.pop(name, None)
    command = [sys.executable, "-m", "mlflow", "run", str(ROOT), "--env-manager", "local", *args]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=environment)


@pytest.mark.slow
def test_mlflow_run_trains_and_evaluates_into_the_runs_it_creates(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)  # the store's default artifact root (./mlruns) lands here, not in the repository
    client = MlflowClient(uri)
    client.search_experiments()
    run_dir = tmp_path / "run"
    overrides = f"debug=fast hydra.run.dir={run_dir} tracking.run_name='two words' tracking.log_model=false"
    result = _mlflow_run(tmp_path, uri, "-e", "main", "-P", "experiment=ner", "-P", f"overrides={overrides}")
    assert result.returncode == 0, result.stderr[-3000:]

    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert f"Run (ID '{run.info.run_id}') succeeded" in result.stderr
    assert run.info.status == "FINISHED"
    assert run.data.params["experiment"] == "ner"  # mlflow run's own parameter...
    assert run.data.tags["run_name"] == "two words"  # ...and the training's (a tag, as run names are): one run
    history = [json.loads(line) for line in (run_dir / HISTORY_FILE).read_text().splitlines()]
    logged = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "eval/f1")}
    assert logged == pytest.approx({r["step"]: r["eval"]["f1"] for r in history if r["type"] == "eval"})

    evaluate_overrides = f"overrides=debug=fast hydra.run.dir={tmp_path / 'eval'}"
    result = _mlflow_run(tmp_path, uri, "-e", "evaluate", "-P", f"checkpoint={run_dir}", "-P", evaluate_overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    (evaluation,) = [r for r in runs if r.info.run_id != run.info.run_id]
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluation.data.metrics["dev/f1"] == pytest.approx(report["words"]["f1"])
    assert evaluation.data.metrics["dev/spans_f1"] == pytest.approx(report["spans"]["f1"])
    assert evaluation.info.status == "FINISHED" and evaluation.data.tags["task"] == "evaluate"

    output = tmp_path / "predictions.jsonl"
    result = _mlflow_run(
        tmp_path, uri, "-e", "predict", "-P", f"model={run_dir}", "-P", f"input={DEMO_DEV}", "-P", f"output={output}",
        "-P", f"overrides=hydra.run.dir={tmp_path / 'predict'}",  # the command runs in the project folder
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(output.read_text().splitlines()) == 18
    assert (tmp_path / "predict" / "predict.log").exists()
