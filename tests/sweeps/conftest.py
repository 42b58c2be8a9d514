"""Sweep fixtures: real Hydra multiruns of the application, in this process or in a subprocess,
on a tiny random encoder (``debug=fast``), with a real MLflow sqlite store and Optuna storage."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A trial as cheap as the application allows: tiny random encoder, 4 steps, evaluations at
# steps 2 and 4, nothing uploaded but params, metrics and the config.
FAST = [
    "+experiment=ner", "debug=fast", "tracking.model_hooks.0.dev_report=false", "tracking.plots=false",
    "tracking.log_model=false", "tracking.log_checkpoints=false",
]


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    """An empty MLflow sqlite store, created once (its migrations take seconds); tests copy it."""
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("mlflow_template")
    previous = os.getcwd()
    os.chdir(folder)
    try:
        MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").search_experiments(max_results=1)
    finally:
        os.chdir(previous)
    return folder / "mlflow.db"


@pytest.fixture
def mlflow_uri(tmp_path, mlflow_template) -> str:
    database = tmp_path / "mlflow.db"
    shutil.copyfile(mlflow_template, database)
    return f"sqlite:///{database}"


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path, monkeypatch):
    """MLflow's and Hydra's relative defaults land in the test's folder, never in the repository."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def run_sweep(sweep_dir: Path, *overrides: str, task: Callable[[Any], Any] | None = None) -> Any:
    """A real Hydra multirun of the application (or of ``task``) in this process.

    Hydra composes ``conf/``, instantiates the sweeper named by the overrides and runs it; each
    trial runs the application's own task function through Hydra's basic launcher, as
    ``python -m medkit_exp -m ...`` does, minus the process start.
    """
    from hydra._internal.hydra import Hydra
    from hydra.core.global_hydra import GlobalHydra

    import medkit_exp.cli as cli

    GlobalHydra.instance().clear()
    hydra_app = Hydra.create_main_hydra_file_or_module(
        calling_file=cli.__file__, calling_module=None, config_path=cli.config_dir(), job_name="cli"
    )
    try:
        return hydra_app.multirun(
            config_name="config", task_function=task or cli.main.__wrapped__,
            overrides=[*overrides, f"hydra.sweep.dir={sweep_dir}"], with_log_configuration=False,
        )
    finally:
        GlobalHydra.instance().clear()


def run_cli(cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m medkit_exp ARGS`` in a subprocess, from ``cwd``."""
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    environment.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", "medkit_exp", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env=environment,
    )


def start_cli(cwd: Path, *args: str, log: Path) -> subprocess.Popen:
    """``python -m medkit_exp ARGS`` started in the background, its output in ``log``."""
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    environment.pop("HYDRA_FULL_ERROR", None)
    with open(log, "w") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "medkit_exp", *args], cwd=cwd, stdout=output, stderr=subprocess.STDOUT, env=environment
        )


def wait_all(processes: list[subprocess.Popen], timeout: float = 900) -> list[int]:
    """Wait for every process; those still running at the end are killed (by their own handle)."""
    try:
        return [process.wait(timeout=timeout) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def load_study(storage: str, name: str) -> Any:
    import optuna

    from medkit_exp.sweeps.factories import make_storage

    return optuna.load_study(study_name=name, storage=make_storage(storage))


def sweep_runs(tracking_uri: str, experiment: str = "ner") -> tuple[list[Any], list[Any]]:
    """``(parents, children)`` runs of the sweeps in ``experiment``."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("medkit_exp.sweep") == "parent"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children
