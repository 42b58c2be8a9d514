"""A trial's pruning callback comes from config only (``callbacks.pruning``, which
``hparams_search=ner_optuna`` sets) and records the tracker's run id through the run context."""

from __future__ import annotations

import optuna

from medkit_exp.run_context import RunContext
from medkit_exp.sweeps.pruning import OptunaPruningCallback, pruning_callbacks
from medkit_exp.sweeps.trial_context import TrialContext, active_trial
from tests.sweeps.conftest import FAST, load_study, run_sweep, sweep_runs

SWEEP = [*FAST, "hparams_search=ner_optuna", "hydra/sweeper/pruner=none", "hydra.sweeper.n_trials=1",
         "hydra.sweeper.storage=sqlite:///optuna.db", "hydra.sweeper.study_name=entry"]


def a_run() -> RunContext:
    return RunContext(config={}, params={}, config_yaml="", overrides=(), splits={}, data_name="d", data_source="s")


def test_the_factory_reads_the_run_id_the_tracking_factory_sets_later(caplog):
    run = a_run()
    assert pruning_callbacks(run, metric="f1") == []  # no trial: none, and a warning says so
    assert "no trial of the medkit_optuna sweeper" in caplog.text
    context = TrialContext(optuna.create_study().ask(), "s")
    with active_trial(context):
        (callback,) = pruning_callbacks(run, metric="f1")
    assert isinstance(callback, OptunaPruningCallback) and callback.context is context
    run.tracking_run_id = lambda: "abc123"  # what a tracking factory does when it builds its callback
    callback.on_train_begin(None)  # where the callback records it (and again at the end)
    assert context.child_run_id == "abc123"


def test_a_trial_gets_the_pruning_callback_through_config_and_reports_the_trackers_run_id(tmp_path, mlflow_uri):
    run_sweep(tmp_path / "sweep", *SWEEP, f"tracking.tracking_uri={mlflow_uri}")
    (trial,) = load_study("sqlite:///optuna.db", "entry").trials
    (_, ), (child,) = sweep_runs(mlflow_uri)
    assert trial.user_attrs["mlflow_run_id"] == child.info.run_id  # recorded by the pruning callback
    assert list(trial.intermediate_values) == [1, 2]  # debug=fast: two evaluations, each reported
    # The wiring is not the experiment: no entry's _target_ among the params (the intermediate values
    # and the run id above are what the entry did).
    assert not [key for key in child.data.params if key.endswith(("._target_", "._partial_"))]


def test_without_the_entry_a_trial_has_no_pruning_callback(tmp_path, mlflow_uri, caplog):
    run_sweep(tmp_path / "sweep", *SWEEP, f"tracking.tracking_uri={mlflow_uri}", "callbacks.pruning=null")
    (trial,) = load_study("sqlite:///optuna.db", "entry").trials
    assert trial.intermediate_values == {} and "mlflow_run_id" not in trial.user_attrs
    assert trial.value is not None  # the trial itself ran
    assert "No callbacks.pruning entry: the trials report no evaluation to Optuna" in caplog.text  # said, not silent
