"""The README's parallel sweep, run as the README shows it: workers started together in a new
folder, Optuna's journal file, the default MLflow store (``sqlite:///mlflow.db`` there). Every
trial ends tracked under one parent run; the store is created once, not raced on."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.sweeps.conftest import FAST, ROOT, load_study

README = ROOT / "README.md"


def readme_parallel_example() -> tuple[list[str], list[str]]:
    """``(worker ids, command words with $i)`` of the README's one-machine parallel example."""
    text = README.read_text(encoding="utf-8")
    match = re.search(r"# one machine: Optuna's journal file\n(for i in ([^;]+); do\n(.*?)\ndone; wait)", text, re.S)
    assert match, "README.md: the one-machine parallel example ('for i in ...; do ... done; wait') is gone"
    body = match.group(3).replace("\\\n", " ").strip()
    assert body.endswith("&"), body
    words = shlex.split(body[:-1])
    assert words[:3] == ["python", "-m", "medkit_exp"], words
    return match.group(2).split(), words


def start_workers(cwd: Path, ids: list[str], words: list[str], extra: list[str]) -> list[subprocess.Popen]:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    for name in ("HYDRA_FULL_ERROR", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
        environment.pop(name, None)
    processes = []
    for worker in ids:
        argv = [sys.executable, *[word.replace("$i", worker) for word in words[1:]], *extra]
        log = open(cwd / f"worker{worker}.log", "w")  # noqa: SIM115 - closed with the process
        processes.append(subprocess.Popen(argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=environment))
        log.close()
    return processes


def wait_or_kill(processes: list[subprocess.Popen], timeout: float) -> list[int | None]:
    """Exit codes; a worker still running at the timeout is killed by its PID (None)."""
    codes: list[int | None] = []
    try:
        for process in processes:
            try:
                codes.append(process.wait(timeout=timeout))
            except subprocess.TimeoutExpired:
                codes.append(None)
    finally:
        for process in processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
    return codes


def check_parallel_sweep(tmp_path: Path, extra: list[str], ids: list[str] | None = None, timeout: float = 900) -> None:
    from mlflow import MlflowClient

    readme_ids, words = readme_parallel_example()
    ids = ids or readme_ids
    codes = wait_or_kill(start_workers(tmp_path, ids, words, extra), timeout)
    logs = "\n".join((tmp_path / f"worker{i}.log").read_text()[-3000:] for i in ids)
    assert codes == [0] * len(ids), logs

    storage = next(w for w in words if w.startswith("hydra.sweeper.storage=")).split("=", 1)[1]
    study_name = next(w for w in words if w.startswith("hydra.sweeper.study_name=")).split("=", 1)[1]
    n_trials = int([w for w in [*words, *extra] if w.startswith("hydra.sweeper.n_trials=")][-1].split("=", 1)[1])
    previous = os.getcwd()
    os.chdir(tmp_path)  # the journal path is relative to the workers' folder
    try:
        trials = load_study(storage, study_name).trials
    finally:
        os.chdir(previous)
    surplus = [t for t in trials if t.user_attrs.get("surplus")]  # asked at the same instant as the last slot
    ran = [t for t in trials if not t.user_attrs.get("surplus")]
    assert all(t.state == TrialState.FAIL for t in surplus)
    assert len(ran) == n_trials and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in ran), [
        (t.number, t.state.name, t.user_attrs.get("error")) for t in ran]

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")  # MLflow's default store, in that folder
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("medkit_exp.sweep") == "parent"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert sorted(c.info.run_id for c in children) == sorted(t.user_attrs["mlflow_run_id"] for t in ran)
    assert sorted(int(c.data.tags["optuna.trial_number"]) for c in children) == sorted(t.number for t in ran)
    assert "already exists" not in logs and "database is locked" not in logs.replace("trying again", "")


def test_the_readme_parallel_example_is_what_this_file_runs():
    ids, words = readme_parallel_example()
    assert ids == ["1", "2", "3"]
    assert "hydra.sweeper.storage=journal:./optuna.journal" in words and "hydra.sweep.dir=multirun/worker$i" in words
    assert not any(w.startswith("tracking.tracking_uri") for w in words)  # MLflow's default store


def test_workers_started_together_in_a_new_folder_track_every_trial_under_one_parent(tmp_path):
    """The README's command, two of its workers, a tiny model and 2 trials (the later n_trials
    wins). Without the store's lock, workers started together failed on MLflow's migration."""
    extra = [word for word in FAST if word != "+experiment=ner"]  # the README names the experiment
    check_parallel_sweep(tmp_path, [*extra, "hydra.sweeper.n_trials=2"], ids=["1", "2"], timeout=600)


@pytest.mark.slow  # three application processes at once: about 90 s on 2 busy cores
def test_three_workers_started_together_in_a_new_folder_track_every_trial_under_one_parent(tmp_path):
    """The README's three workers, a tiny model and 3 trials (without the lock: 2 of 3 exited 2)."""
    extra = [word for word in FAST if word != "+experiment=ner"]
    check_parallel_sweep(tmp_path, [*extra, "hydra.sweeper.n_trials=3"], timeout=900)


@pytest.mark.slow  # the README's 30 trials over 3 workers on the tiny model: minutes on 2 cores
def test_the_readme_parallel_example_exactly_with_debug_fast(tmp_path):
    check_parallel_sweep(tmp_path, ["debug=fast"], timeout=1800)
