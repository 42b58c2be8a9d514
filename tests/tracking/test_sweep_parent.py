"""The sweep's parent run on a real sqlite store and a real Optuna study: training experiment,
the trials' objectives as metrics, counts of complete/pruned/failed trials, pruned runs KILLED."""

from __future__ import annotations

import optuna

from medkit_exp.sweeps.mlflow_parent import SweepParentRun
from medkit_exp.tracking.ops import EXPERIMENT_KIND_TAG, TRAINING_KIND


def _trial(study, parent: SweepParentRun, client, state: str, value: float | None) -> str:
    """One trial told to the study with ``state``, its child run marked and the parent updated."""
    trial = study.ask()
    run_id = client.create_run(parent.experiment_id, tags={"mlflow.parentRunId": parent.run_id}).info.run_id
    if state == "PRUNED":
        trial.report(0.1, 1)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    elif state == "FAIL":
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    else:
        study.tell(trial, value)
    frozen = study.trials[trial.number]
    parent.mark_child(run_id, frozen.state.name, frozen.value)
    parent.trial_finished(study, frozen)
    return run_id


def test_the_parent_counts_trials_and_children_carry_their_objective(tracking_uri, client, experiment_name):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", study_name=experiment_name)
    parent = SweepParentRun.open(tracking_uri, experiment_name, study, True, {"metric": "eval/f1"}, n_trials=4)
    assert client.get_experiment(parent.experiment_id).tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND
    low = _trial(study, parent, client, "COMPLETE", 0.035)
    pruned = _trial(study, parent, client, "PRUNED", None)
    failed = _trial(study, parent, client, "FAIL", None)
    high = _trial(study, parent, client, "COMPLETE", 0.5)

    assert client.get_run(low).data.metrics["objective"] == 0.035
    assert client.get_run(pruned).info.status == "KILLED"
    assert client.get_run(failed).info.status == "FAILED"
    children = client.search_runs([parent.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.run_id}'",
                                  order_by=["metrics.objective DESC"])
    # a pruned trial's value is its last reported one, as Optuna records it
    assert [run.info.run_id for run in children if "objective" in run.data.metrics] == [high, pruned, low]
    metrics = client.get_run(parent.run_id).data.metrics
    assert (metrics["trials/complete"], metrics["trials/pruned"], metrics["trials/failed"]) == (2, 1, 1)
    assert metrics["best_value"] == 0.5
    history = sorted((m.step, m.value) for m in client.get_metric_history(parent.run_id, "trials/pruned"))
    assert history == [(0, 0.0), (1, 1.0), (2, 1.0), (3, 1.0)]  # per trial: the parent shows the state as it goes
