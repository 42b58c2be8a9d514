"""A sweep under torchrun (2 processes on CPU, gloo): rank 0 runs the study, both ranks train each
trial together, a pruned trial stops both ranks at one step, the end reaches every rank."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from medkit_exp.sweeps.ranks import TrialChannel, TrialOrder
from tests.sweeps.conftest import FAST, ROOT, load_study, sweep_runs

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "medkit_exp"]
SWEEP = ["-m", *FAST, "hparams_search=ner_optuna", "hydra.sweeper.n_trials=3", "hydra.sweep.dir=sweep"]


def run_torchrun(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """One thread per process (2 processes on a shared 2-core machine); MLflow's telemetry off
    (offline tests; its thread's environment writes race with the tracking code's reads)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT),
                   "MLFLOW_DISABLE_TELEMETRY": "true"}
    environment.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([*TORCHRUN, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=environment)


def _checkpoint_and_evaluations(trial_dir: Path) -> tuple[str, list[int]]:
    state = json.loads((trial_dir / "checkpoints" / "state.json").read_text())
    records = [json.loads(line) for line in (trial_dir / "history.jsonl").read_text().splitlines()]
    return state["last"], [r["step"] for r in records if r["type"] == "eval"]


@pytest.mark.slow  # torchrun processes: CI's slow run
def test_a_sweep_under_torchrun_runs_each_trial_once_on_both_processes(tmp_path, mlflow_uri):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    # a known verdict: the threshold pruner (F1 < 2: always) acts from the second evaluation (step 4)
    # on, so the trial of max_steps=2 completes and those of 6 and 8 steps are pruned at step 4
    grid = ["hydra/sweeper/sampler=grid", "hydra.sweeper.params=null", "trainer.max_steps=choice(2,6,8)",
            "trainer.nb_training_epochs=20", "hydra/sweeper/pruner=threshold", "+hydra.sweeper.pruner.lower=2.0",
            "+hydra.sweeper.pruner.n_warmup_steps=2"]
    result = run_torchrun(tmp_path, *SWEEP, *grid, f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=ddp",
                          f"tracking.tracking_uri={mlflow_uri}")
    assert result.returncode == 0, result.stderr[-4000:]
    study = load_study(storage, "ddp")  # 3 trials, not 3 per process
    states = {t.params["trainer.max_steps"]: t.state for t in study.trials}
    assert states == {2: TrialState.COMPLETE, 6: TrialState.PRUNED, 8: TrialState.PRUNED}
    assert result.stdout.count(" PRUNED at step 4 ") == 2 and result.stdout.count("Sweep summary") == 1
    # a pruned trial stopped at step 4 with one final checkpoint there: had rank 1 gone on, it would
    # have waited for rank 0 in a collective and the sweep would not have ended
    for trial in study.trials:
        expected = ("checkpoint-0000002", [2]) if trial.state == TrialState.COMPLETE else ("checkpoint-0000004", [2, 4])
        assert _checkpoint_and_evaluations(tmp_path / "sweep" / str(trial.number)) == expected
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir()) == ["0", "1", "2", "plots"]
    (parent,), children = sweep_runs(mlflow_uri)
    assert len(children) == 3 and {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    for child in children:  # one MLflow run per trial, rank 0's, trained by both processes
        assert child.data.params["trainer.world_size"] == "2"
        assert child.data.params["trainer.global_batch_size"] == str(2 * int(child.data.params["trainer.batch_size"]))
    runs = sorted((c.data.tags["optuna.trial_state"], c.info.status) for c in children)
    assert runs == [("COMPLETE", "FINISHED"), ("PRUNED", "KILLED"), ("PRUNED", "KILLED")]


@pytest.mark.slow  # torchrun processes: CI's slow run
def test_an_error_before_any_trial_ends_every_process(tmp_path):
    started = time.monotonic()
    result = run_torchrun(tmp_path, *SWEEP, "tracking=none", "hydra/sweeper/pruner=none",
                          "hydra.sweeper.pruner.name=mediane", timeout=120)
    assert result.returncode != 0 and "exitcode  : 2" in result.stderr  # rank 0's code, not a timeout
    assert result.stderr.count("config key 'hydra.sweeper.pruner.name': unknown pruner 'mediane'") == 1
    assert not (tmp_path / "sweep" / "0").exists() and time.monotonic() - started < 110


def test_without_torchrun_the_channel_does_nothing():
    channel = TrialChannel.open()
    assert not channel.is_distributed and not channel.is_follower
    channel.announce(TrialOrder(0, ("optimizer.lr=0.1",), "study"))  # no collective: nothing to wait for
    with pytest.raises(KeyError), channel.ending():
        raise KeyError("the sweep's own error goes through")


def test_in_a_trial_another_ranks_failure_fails_the_job_not_the_process():
    from medkit_exp.cli import report_errors
    from medkit_exp.sweeps.ranks import RemoteTrial
    from medkit_exp.sweeps.trial_context import TrialContext, active_trial
    from medkit_exp.training.distributed import OtherRankError

    def fail() -> None:
        raise OtherRankError("rank 0 failed: OSError: disk full")

    with active_trial(TrialContext(RemoteTrial(1), "study")), pytest.raises(OtherRankError):
        report_errors(fail)  # Hydra's launcher records the job as failed; this rank waits for the next trial
    with pytest.raises(SystemExit):  # outside a sweep: the process ends, as before
        report_errors(fail)
