"""Several worker processes started with the same storage and study name share one study."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.sweeps.conftest import FAST, load_study, start_cli, sweep_runs, wait_all


def check_shared_study(tmp_path: Path, storage: str, tracking_uri: str, n_trials: int, workers: int = 2) -> None:
    """Run ``workers`` sweeps of one study at once; check they split its ``n_trials`` trials."""
    arguments = [
        *FAST, "hparams_search=ner_optuna", "hydra/sweeper/pruner=none", f"hydra.sweeper.n_trials={n_trials}",
        f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=shared", f"tracking.tracking_uri={tracking_uri}",
    ]
    logs = [tmp_path / f"worker{i}.log" for i in range(workers)]
    processes = [start_cli(tmp_path, *arguments, f"hydra.sweep.dir=worker{i}", log=logs[i]) for i in range(workers)]
    codes = wait_all(processes)
    assert codes == [0] * workers, "\n".join(log.read_text()[-3000:] for log in logs)

    trials = load_study(storage, "shared").trials
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    surplus = [t for t in trials if t.user_attrs.get("surplus")]  # asked at the same instant as the last slot
    assert len(completed) == n_trials and len(trials) == n_trials + len(surplus)
    assert all(t.state == TrialState.FAIL for t in surplus)
    # every trial ran once, in one worker (its job folder is named by its number), and both worked
    ran = [sorted(int(p.name) for p in (tmp_path / f"worker{i}").iterdir() if p.name.isdigit()) for i in range(workers)]
    assert all(ran), f"a worker ran no trial: {ran}"
    assert sorted(sum(ran, [])) == sorted(t.number for t in completed)
    assert len({json.dumps(t.params, sort_keys=True) for t in completed}) == n_trials

    parents, children = sweep_runs(tracking_uri)  # one parent run for the study, shared
    assert len(parents) == 1 and len(children) == n_trials
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}


@pytest.mark.slow  # two application processes at once: about a minute on 2 busy cores
def test_two_workers_share_one_study_through_a_journal_file(tmp_path, mlflow_uri):
    check_shared_study(tmp_path, f"journal:{tmp_path / 'optuna.journal'}", mlflow_uri, n_trials=4)


@pytest.fixture
def postgres_optuna_url():
    from tests.sweeps.postgres import postgres_server, server_binaries

    binaries = server_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL server binaries (initdb, postgres) not found: apt-get install postgresql")
    with postgres_server(binaries) as urls:
        yield urls["optuna"]


@pytest.mark.slow  # starts a PostgreSQL server and two application processes
def test_two_workers_share_one_study_in_postgresql(tmp_path, mlflow_uri, postgres_optuna_url):
    check_shared_study(tmp_path, postgres_optuna_url, mlflow_uri, n_trials=4)
