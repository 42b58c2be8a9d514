"""No secret in any record: a real training and a real sweep given credentialed URLs (hosts never
contacted: tags, a swept value) and a secret-named environment variable; then every byte of the
MLflow store, its artifacts, the spools and the run folders is searched for the secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRETS = ["s3cretPW", "dbPASS9876", "mirrorPW42", "envSecretValue123"]
FAST = ["debug=fast", "tracking.model_hooks.0.dev_report=false", "tracking.plots=false", "tracking.log_model=false",
        "tracking.log_checkpoints=false"]
CREDENTIALED = [
    "+tracking.tags.source=https://alice:s3cretPW@git.example.org/repo",
    "+tracking.tags.database=postgresql://optuna:dbPASS9876@db-host:5432/optuna",
]
# Written by medkit_exp/cli.py (config_resolved.yaml) and by Hydra before the task runs (.hydra/,
# rewritten redacted by cli.task()).
CLI_FILES = ("config_resolved.yaml", ".hydra/")


def run_app(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT),
                   "MEDKIT_TEST_API_TOKEN": "envSecretValue123"}
    for name in ("HYDRA_FULL_ERROR", "MLFLOW_TRACKING_URI"):
        environment.pop(name, None)
    return subprocess.run([sys.executable, "-m", "medkit_exp", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=900, env=environment)


def files_holding_secrets(root: Path) -> dict[str, list[str]]:
    """``{file: [secrets in its bytes]}`` for every file under ``root``."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits = [secret for secret in SECRETS if secret.encode() in data]
            if hits:
                found[str(path.relative_to(root))] = hits
    return found


@pytest.fixture(scope="module")
def tracked_runs(tmp_path_factory) -> Path:
    """One training and a one-trial sweep, each with credentialed URLs, in one folder."""
    folder = tmp_path_factory.mktemp("secrets")
    work = folder / "work"
    work.mkdir()
    uri = f"sqlite:///{work / 'mlflow.db'}"
    training = run_app(work, "+experiment=ner", *FAST, *CREDENTIALED, f"tracking.tracking_uri={uri}",
                       "tracking.experiment_name=secrets")
    (folder / "training.log").write_text(training.stdout + training.stderr)
    assert training.returncode == 0, training.stderr[-3000:]
    sweep = run_app(
        work, "+experiment=ner", "hparams_search=ner_optuna", *FAST, *CREDENTIALED, f"tracking.tracking_uri={uri}",
        "tracking.experiment_name=secrets", "hydra.sweeper.n_trials=1", "hydra/sweeper/pruner=none",
        f"hydra.sweeper.storage=journal:{folder / 'optuna.journal'}", "hydra.sweeper.study_name=secrets",
        "hydra.sweep.dir=multirun/secrets",
        "+tracking.tags.mirror=choice(https://u:mirrorPW42@a.example.org/x, https://u:mirrorPW42@b.example.org/x)",
    )
    (folder / "sweep.log").write_text(sweep.stdout + sweep.stderr)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    return work


def test_no_secret_in_the_store_artifacts_spools_or_run_folders(tracked_runs):
    """The sqlite store's bytes, ./mlruns (artifacts), mlflow_spool/, run and trial folders (logs,
    MLflow files, Hydra files of the trials), the sweep's results file."""
    assert (tracked_runs / "mlflow.db").is_file() and (tracked_runs / "multirun/secrets/optimization_results.yaml").is_file()
    found = files_holding_secrets(tracked_runs)
    leaks = {path: hits for path, hits in found.items() if not path.endswith(CLI_FILES[0])
             and not (CLI_FILES[1] in path and path.startswith("outputs/"))}
    assert leaks == {}


def test_the_records_keep_the_redacted_urls(tracked_runs):
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tracked_runs / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("secrets").experiment_id])
    assert len(runs) == 3  # the training, the sweep's parent and its trial
    for run in runs:
        if run.data.tags.get("medkit_exp.sweep") == "parent":
            assert "https://u:***@" in run.data.tags["best.params.tracking.tags.mirror"]
            assert "https://u:***@" in run.data.params["search_space.tracking.tags.mirror"]
            continue
        assert run.data.tags["source"] == "https://alice:***@git.example.org/repo"
        assert run.data.tags["database"] == "postgresql://optuna:***@db-host:5432/optuna"  # tracking.*: tags, not params
        assert not [key for key in run.data.params if key.startswith("tracking.")]
        assert "https://alice:***@git.example.org/repo" in run.data.tags["command"]


def test_no_secret_in_the_files_cli_py_writes(tracked_runs):
    found = files_holding_secrets(tracked_runs)
    assert {path: hits for path, hits in found.items() if any(name in path for name in CLI_FILES)} == {}
