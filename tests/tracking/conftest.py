"""Fixtures: a real MLflow sqlite store (one per session), toy trainers, tracked callbacks."""

from __future__ import annotations

import os

import pytest

from tests.training.toy import toy_trainer_builder


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory) -> str:
    """A sqlite MLflow store, created once: its first creation runs migrations (seconds).

    MLflow caches the store, whose default artifact root is ``./mlruns`` of the working
    directory at creation: it is created from its own folder, so no artifact lands in the
    repository even for an experiment created without an artifact location.
    """
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("mlflow_store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    previous = os.getcwd()
    os.chdir(folder)
    try:
        MlflowClient(uri).search_experiments(max_results=1)
    finally:
        os.chdir(previous)
    return uri


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path, monkeypatch):
    """Nothing lands in the repository (MLflow's defaults are relative to the working dir)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)


@pytest.fixture
def client(tracking_uri):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri)


@pytest.fixture
def experiment_name(request) -> str:
    """A distinct experiment per test keeps tests independent in the shared store."""
    return f"test-{request.node.name}"


@pytest.fixture
def make_callback(tracking_uri, experiment_name, tmp_path):
    """An MLflowCallback on the session store; keyword arguments override the defaults."""
    from medkit_exp.tracking import MLflowCallback

    def build(**kwargs):
        settings = {
            "tracking_uri": tracking_uri,
            "experiment_name": experiment_name,
            "artifact_location": str(tmp_path / "artifacts"),
            "flush_interval": 0.2,
        }
        settings.update(kwargs)
        return MLflowCallback(**settings)

    return build


@pytest.fixture
def make_trainer(tmp_path):
    """Builds a Trainer over the toy classifier (evaluating every 4 steps); keyword arguments go to TrainerConfig."""
    return toy_trainer_builder(
        tmp_path / "run", logging_steps=2, eval_strategy="steps", eval_steps=4, nb_training_epochs=2,
        checkpoint_metric="accuracy", minimize_checkpoint_metric=False,
    )


APP_MODEL_NAME = "app-run-test-ner"


@pytest.fixture(scope="session")
def app_run(tracking_uri, tmp_path_factory):
    """One tracked ``python -m medkit_exp +experiment=ner debug=fast`` run on the session store
    (shared by the end-to-end tests: it takes seconds): registered model with an alias, system
    metrics sampled every 0.2 s, every optimizer step logged. Returns a dict: ``run_id``,
    ``run_dir``, ``cwd``, ``tracking_uri``, ``stdout``."""
    import re

    from tests.test_cli import run_cli

    cwd = tmp_path_factory.mktemp("app_run")
    result = run_cli(
        cwd, "+experiment=ner", "debug=fast", "hydra.run.dir=run", f"tracking.tracking_uri={tracking_uri}",
        "tracking.experiment_name=app-run-test", "tracking.log_every_n_steps=1", "tracking.system_metrics=true",
        f"tracking.model_hooks.0.register_model_name={APP_MODEL_NAME}", "tracking.model_hooks.0.model_alias=candidate",
        "tracking.model_hooks.0.prediction_sample_size=5",
        env={"MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "0.2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = re.search(r"MLflow run: ([0-9a-f]{32})", result.stdout)
    assert found, result.stdout[-2000:]
    return {"run_id": found.group(1), "run_dir": cwd / "run", "cwd": cwd, "tracking_uri": tracking_uri,
            "stdout": result.stdout}

