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
