"""The Optuna sweeper running the application (``debug=fast``: tiny random encoder, 4 steps):
a whole sweep from the command line, pruning, failures, resume, dead workers, bad input."""

from __future__ import annotations

import json
import time

import optuna
import pytest
import yaml
from omegaconf import OmegaConf
from optuna.trial import TrialState

from medkit_exp.sweeps.factories import make_storage
from medkit_exp.sweeps.heartbeat import HEARTBEAT_ATTR
from medkit_exp.training.history import HISTORY_FILE
from tests.sweeps.conftest import FAST, load_study, run_cli, run_sweep, sweep_runs

SWEEP = [*FAST, "hparams_search=ner_optuna"]


def _history_f1(run_dir) -> dict[int, float]:
    """``{step: eval F1}`` of a trial's training, from its own history file."""
    records = [json.loads(line) for line in (run_dir / HISTORY_FILE).read_text().splitlines()]
    return {r["step"]: r["eval"]["f1"] for r in records if r["type"] == "eval"}


def test_four_trial_sweep_from_the_command_line(tmp_path, mlflow_uri):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    result = run_cli(
        tmp_path, *SWEEP, "hydra/sweeper/pruner=none", "hydra.sweeper.n_trials=4", f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=demo", f"tracking.tracking_uri={mlflow_uri}", "hydra.sweep.dir=sweep",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    study = load_study(storage, "demo")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    best = max(study.trials, key=lambda t: t.value)
    assert results["best_value"] == best.value and results["best_trial"] == best.number
    assert results["best_params"] == best.params and results["trials"] == {"COMPLETE": 4}
    assert f"best value (f1): {best.value:.4f} (trial {best.number})" in result.stdout
    assert "best params:" in result.stdout
    # the terminal: the config once, then one line per trial; a trial's own log is in its folder
    assert result.stdout.count("Configuration:") == 1 and "Run summary" not in result.stdout
    lines = [line for line in result.stdout.splitlines() if "] Trial " in line]
    assert [line.split("] ", 1)[1].split(" |")[0] for line in lines] == [f"Trial {n} COMPLETE" for n in range(4)]
    assert all("| MLflow run " in line and " FINISHED |" in line for line in lines), lines
    assert "Running training" not in result.stdout + result.stderr and "Launching 1 jobs" not in result.stdout
    assert "Running training" in (tmp_path / "sweep" / "0" / "cli.log").read_text()
    for trial in study.trials:
        run_dir = tmp_path / "sweep" / str(trial.number)  # one job folder per trial, named by its number
        config = OmegaConf.load(run_dir / "config_resolved.yaml")
        assert config.optimizer.lr == trial.params["optimizer.lr"] and config.scheduler.name == trial.params["scheduler"]
        evaluations = _history_f1(run_dir)
        assert trial.value == max(evaluations.values())  # the objective is the best tracked value, not the last
        assert list(trial.intermediate_values.values()) == list(evaluations.values())  # each evaluation reported
        assert list(trial.intermediate_values) == list(range(1, len(evaluations) + 1))  # at its number

    (parent,), children = sweep_runs(mlflow_uri)
    assert results["mlflow_parent_run_id"] == parent.info.run_id
    assert sorted(int(c.data.tags["optuna.trial_number"]) for c in children) == [0, 1, 2, 3]
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["optuna.trial_state"] == "COMPLETE" and child.info.status == "FINISHED"
        assert child.data.tags["optuna.study_name"] == "demo"
    params = parent.data.params
    assert params["study_name"] == "demo" and params["storage"] == storage and params["pruner"] == "none()"
    assert params["sampler"] == "tpe(seed=42)"
    assert params["search_space.optimizer.lr"] == "float[1e-05, 0.0005] log"
    assert params["search_space.scheduler"] == "choice(linear, cosine, constant)"
    assert parent.data.tags["best.trial_number"] == str(best.number)
    assert parent.data.tags["best.params.scheduler"] == best.params["scheduler"]
    assert parent.data.metrics["best_value"] == best.value and parent.info.status == "FINISHED"
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_uri)
    history = client.get_metric_history(parent.info.run_id, "best_value")
    assert sorted(m.step for m in history) == [0, 1, 2, 3]
    artifacts = {a.path for folder in ("", "plots", "best_trial") for a in client.list_artifacts(parent.info.run_id, folder)}
    assert {"optimization_results.yaml", "best_trial/config.yaml", "plots/optimization_history.png",
            "plots/param_importances.png", "plots/parallel_coordinate.png"} <= artifacts


def test_a_pruned_trial_is_pruned_in_optuna_and_mlflow_and_the_sweep_goes_on(tmp_path, mlflow_uri):
    results = run_sweep(
        tmp_path / "sweep", *SWEEP, "hydra/sweeper/pruner=threshold", "+hydra.sweeper.pruner.lower=2.0",
        "hydra.sweeper.n_trials=2", f"tracking.tracking_uri={mlflow_uri}", "trainer.batch_size=4",  # 4 steps
    )
    assert results["trials"] == {"PRUNED": 2} and results["best_value"] is None
    for number in (0, 1):  # each stopped at its first evaluation (F1 < 2.0), not at step 4
        assert list(_history_f1(tmp_path / "sweep" / str(number))) == [2]
    _, children = sweep_runs(mlflow_uri)
    assert len(children) == 2
    for child in children:  # MLflow has no PRUNED status: KILLED plus the trial state tag
        assert child.data.tags["optuna.trial_state"] == "PRUNED" and child.info.status == "KILLED"
        assert child.data.tags["stop_reason"] == "pruned by Optuna at evaluation 1 (step 2)"


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path, mlflow_uri):
    results = run_sweep(
        tmp_path / "sweep", *SWEEP, "hydra/sweeper/sampler=grid", "hydra/sweeper/pruner=none",
        "hydra.sweeper.params=null", "trainer.batch_size=choice(-1,4)", "hydra.sweeper.n_trials=2",
        "hydra.sweeper.max_failure_rate=0.5", f"tracking.tracking_uri={mlflow_uri}",
        "hydra.sweeper.storage=sqlite:///optuna.db", "hydra.sweeper.study_name=failing",
    )
    assert results["trials"] == {"FAIL": 1, "COMPLETE": 1} or results["trials"] == {"COMPLETE": 1, "FAIL": 1}
    study = load_study("sqlite:///optuna.db", "failing")
    failed = next(t for t in study.trials if t.state == TrialState.FAIL)
    assert failed.params == {"trainer.batch_size": -1}
    assert "config key 'trainer.batch_size': must be >= 1" in failed.user_attrs["error"]
    assert results["best_params"] == {"trainer.batch_size": 4}
    (parent,), children = sweep_runs(mlflow_uri)
    states = {c.data.tags["optuna.trial_state"]: c for c in children}
    assert set(states) == {"FAIL", "COMPLETE"}  # the trial that failed before training still has its run
    assert states["FAIL"].info.status == "FAILED" and "must be >= 1" in states["FAIL"].data.tags["error"]
    assert parent.data.tags["trials.FAIL"] == "1"


def test_too_many_failures_stop_the_sweep_with_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        run_sweep(
            tmp_path / "sweep", *SWEEP, "tracking=none", "hydra.sweeper.params=null", "trainer.batch_size=choice(-1,-2)",
            "hydra.sweeper.n_trials=4", "hydra.sweeper.max_failure_rate=0.25",
            "hydra.sweeper.storage=sqlite:///optuna.db", "hydra.sweeper.study_name=broken",
        )
    assert exited.value.code == 2
    assert "2 trials failed, more than max_failure_rate=0.25 x n_trials=4: sweep stopped" in capsys.readouterr().err
    assert [t.state for t in load_study("sqlite:///optuna.db", "broken").trials] == [TrialState.FAIL] * 2
    assert (tmp_path / "sweep" / "optimization_results.yaml").exists()


def test_rerunning_continues_the_study_up_to_n_trials(tmp_path, mlflow_uri):
    common = [*SWEEP, "hydra.sweeper.storage=sqlite:///optuna.db", "hydra.sweeper.study_name=resumed",
              f"tracking.tracking_uri={mlflow_uri}", "hydra/sweeper/pruner=none"]
    first = run_sweep(tmp_path / "first", *common, "hydra.sweeper.n_trials=2")
    second = run_sweep(tmp_path / "second", *common, "hydra.sweeper.n_trials=3")
    again = run_sweep(tmp_path / "again", *common, "hydra.sweeper.n_trials=3")
    assert first["trials_this_run"] == {"COMPLETE": 2}
    assert second["trials_this_run"] == {"COMPLETE": 1} and second["trials"] == {"COMPLETE": 3}
    assert again["trials_this_run"] == {}  # n_trials counts the whole study: it already holds 3
    assert (tmp_path / "second" / "2" / "config_resolved.yaml").exists()  # the new trial is number 2
    trials = load_study("sqlite:///optuna.db", "resumed").trials
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 3  # the seeded sampler does not repeat itself
    (parent,), children = sweep_runs(mlflow_uri)  # one parent for the whole study, reused
    assert first["mlflow_parent_run_id"] == second["mlflow_parent_run_id"] == parent.info.run_id
    assert sorted(int(c.data.tags["optuna.trial_number"]) for c in children) == [0, 1, 2]
    assert parent.data.tags["n_trials"] == "3"


def test_a_trial_left_running_by_a_killed_worker_is_failed_and_run_again(tmp_path):
    storage = f"journal:{tmp_path / 'optuna.journal'}"
    study = optuna.create_study(storage=make_storage(storage), study_name="crashed", direction="maximize")
    dead = study.ask({"optimizer.lr": optuna.distributions.FloatDistribution(1e-5, 5e-4, log=True)})
    dead.set_user_attr(HEARTBEAT_ATTR, time.time() - 3600)  # its worker died an hour ago
    results = run_sweep(
        tmp_path / "sweep", *SWEEP, "tracking=none", "hydra.sweeper.params=null", "optimizer.lr=tag(log, interval(1e-5, 5e-4))",
        f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=crashed", "hydra.sweeper.n_trials=1",
        "hydra/sweeper/pruner=none",
    )
    trials = load_study(storage, "crashed").trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[0].user_attrs["stale"] and trials[1].user_attrs["retry_of"] == 0
    assert trials[1].params == trials[0].params  # the retry runs the dead trial's parameters
    assert results["trials_this_run"] == {"COMPLETE": 1}  # the retry takes the dead trial's slot


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optimizer.lrr=interval(1e-5, 1e-3)"], "config key 'optimizer.lrr': unknown config key 'optimizer.lrr'; did you mean optimizer.lr"),
        (["optimizer.lr=interval(1e-3, 1e-5)"], "config key 'optimizer.lr': empty interval"),
        (["trainer.batch_size=interval(2.5, 8.5)"], "config key 'trainer.batch_size': the value 2.5 does not fit the config"),
        (["scheduler=choice(linear, triangle)"], "'triangle' is not an option of config group 'scheduler'"),
        (["hydra.sweeper.sampler.name=annealing"], "config key 'hydra.sweeper.sampler.name': unknown sampler 'annealing'"),
        (["hydra/sweeper/pruner=none", "hydra.sweeper.pruner.name=mediane"], "unknown pruner 'mediane'"),
        (["hydra.sweeper.storage=postgresql://me:pw@127.0.0.1:1/optuna"], "cannot reach the storage postgresql://me:***@"),
        (["hydra.sweeper.direction=minimize"], "minimize disagrees with trainer.minimize_checkpoint_metric=False"),
        (["hydra.sweeper.n_trials=0"], "config key 'hydra.sweeper.n_trials': must be >= 1"),
    ],
)
def test_bad_input_fails_before_any_trial(tmp_path, capsys, overrides, message):
    ran = []
    with pytest.raises(SystemExit) as exited:
        run_sweep(tmp_path / "sweep", *SWEEP, "tracking=none", *overrides, task=ran.append)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
    assert ran == [] and not (tmp_path / "sweep" / "0").exists()


def test_bad_input_from_the_command_line_is_one_line_without_traceback(tmp_path):
    result = run_cli(tmp_path, *SWEEP, "tracking=none", "optimizer.lrr=interval(1e-5, 1e-3)", "hydra.sweep.dir=sweep")
    assert result.returncode == 2
    assert "Error: config key 'optimizer.lrr': unknown config key 'optimizer.lrr'; did you mean optimizer.lr" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "sweep" / "0").exists()


def test_a_trial_line_says_what_mlflow_stores():
    from optuna.distributions import FloatDistribution

    from medkit_exp.sweeps.sweeper import trial_line

    space = {"optimizer.lr": FloatDistribution(1e-5, 1e-3, log=True)}
    pruned = optuna.trial.create_trial(state=TrialState.PRUNED, params={"optimizer.lr": 1e-4}, distributions=space,
                                       intermediate_values={1: 0.25})
    line = trial_line(pruned, "f1", 2, None, "0123456789abcdef")  # (create_trial numbers it -1)
    assert line == "Trial -1 PRUNED at step 2 | optimizer.lr=0.0001 | MLflow run 01234567 KILLED (pruned)"
    complete = optuna.trial.create_trial(value=0.5, params={"optimizer.lr": 1e-4}, distributions=space)
    assert trial_line(complete, "f1", None, None, None) == "Trial -1 COMPLETE | f1=0.5000 | optimizer.lr=0.0001"


def test_trial_logs_leave_the_terminal_only_where_the_job_logging_has_a_console():
    from medkit_exp.sweeps.sweeper import TRIAL_LOGGING, OptunaSweeper

    sweeper = OptunaSweeper()
    sweeper.config = OmegaConf.create({"hydra": {"job_logging": {"handlers": {"console": {}, "file": {}}}}})
    assert sweeper._trial_logging() == TRIAL_LOGGING
    for job_logging in ({"handlers": {"file": {}}}, {}, None):  # a user's own, hydra/job_logging=disabled
        sweeper.config = OmegaConf.create({"hydra": {"job_logging": job_logging}})
        assert sweeper._trial_logging() == ()
