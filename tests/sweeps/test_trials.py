"""Trial bookkeeping without the application: the pruning callback on a real Trainer, the
whole-study budget, and the heartbeat that fails and requeues the trials of a dead worker."""

from __future__ import annotations

import time

import optuna
from optuna.trial import TrialState

from medkit_exp.sweeps.budget import close_surplus, counted, has_room, is_surplus
from medkit_exp.sweeps.trial_context import TrialContext, active_trial, current_trial
from medkit_exp.sweeps.factories import make_storage
from medkit_exp.sweeps.heartbeat import HEARTBEAT_ATTR, HeartbeatThread, fail_stale_trials
from medkit_exp.sweeps.pruning import OptunaPruningCallback
from tests.training.toy import toy_trainer_builder

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _trainer(tmp_path, callback):
    build = toy_trainer_builder(
        tmp_path / "run", eval_strategy="steps", eval_steps=2, max_steps=8, logging_steps=2,
        checkpoint_metric="accuracy", minimize_checkpoint_metric=False,
    )
    return build(callback=[callback])


def test_pruning_callback_reports_each_evaluation_and_stops_a_pruned_trial(tmp_path):
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    context = TrialContext(study.ask(), study.study_name)
    trainer = _trainer(tmp_path, OptunaPruningCallback(context, "accuracy", run_id_of=lambda: "run-1"))
    trainer.train()
    assert context.pruned_at_step == 2  # accuracy < 2.0 at the first evaluation (step 2)
    assert trainer.state.global_step == 2
    assert trainer.state.stop_reason == "pruned by Optuna at evaluation 1 (step 2)"
    assert list(context.reported) == [1] and context.child_run_id == "run-1"
    study.tell(context.trial, state=TrialState.PRUNED)
    (trial,) = study.trials
    assert trial.state == TrialState.PRUNED and trial.value == context.reported[1]


def test_without_pruning_the_trial_reports_every_evaluation_and_runs_to_the_end(tmp_path):
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    context = TrialContext(study.ask(), study.study_name, pruning=False)
    trainer = _trainer(tmp_path, OptunaPruningCallback(context, "accuracy"))
    trainer.train()
    assert not context.pruned and trainer.state.global_step == 8
    assert list(context.reported) == [1, 2, 3, 4]  # evaluations at steps 2, 4, 6, 8
    assert study.trials[0].intermediate_values == context.reported


def test_context_is_published_only_while_the_job_runs():
    study = optuna.create_study()
    context = TrialContext(study.ask(), "s", parent_run_id="p")
    assert current_trial() is None
    with active_trial(context):
        assert current_trial() is context
        assert context.child_tags() == {"optuna.study_name": "s", "optuna.trial_number": "0"}
    assert current_trial() is None


def test_budget_counts_the_whole_study_and_closes_a_surplus_trial():
    study = optuna.create_study()
    for _ in range(2):
        trial = study.ask()
        study.tell(trial, 1.0)
    assert has_room(study, 3) and not has_room(study, 2)
    first, second = study.ask(), study.ask()  # two workers asking for the last slot at once
    assert not is_surplus(study, first.number, 3)
    assert is_surplus(study, second.number, 3)
    close_surplus(study, second)
    study.tell(first, 1.0)
    assert counted(study.trials) == 3 and not has_room(study, 3)
    assert study.trials[second.number].state == TrialState.FAIL


def test_stale_trials_of_a_dead_worker_fail_and_run_again(tmp_path):
    storage = make_storage(f"journal:{tmp_path / 'optuna.journal'}")
    study = optuna.create_study(storage=storage, study_name="s")
    dead = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    dead.set_user_attr(HEARTBEAT_ATTR, time.time() - 1000)  # its worker was killed long ago
    alive = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    with HeartbeatThread(alive, interval=1):
        other_worker = optuna.load_study(study_name="s", storage=make_storage(f"journal:{tmp_path / 'optuna.journal'}"))
        assert fail_stale_trials(other_worker, grace_period=60, retries=1) == [dead.number]
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING]
    retry = study.trials[2]
    assert retry.params == study.trials[0].params and retry.user_attrs["retry_of"] == 0
    assert counted(study.trials) == 2  # the stale attempt no longer counts, its retry does
    assert study.ask().number == 2  # the next ask of any worker picks the retry up
    assert fail_stale_trials(study, grace_period=60, retries=1) == []  # the live trial is left alone


def test_a_stale_trial_is_retried_at_most_stale_trial_retries_times():
    study = optuna.create_study()
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.set_user_attr(HEARTBEAT_ATTR, 0.0)
    assert fail_stale_trials(study, grace_period=60, retries=0) == [0]
    assert [t.state for t in study.trials] == [TrialState.FAIL]
    assert counted(study.trials) == 1  # not retried: the failed attempt keeps its slot


def test_heartbeat_stamps_a_running_trial():
    study = optuna.create_study()
    trial = study.ask()
    with HeartbeatThread(trial, interval=1):
        first = study.trials[0].user_attrs[HEARTBEAT_ATTR]
        time.sleep(1.5)
        assert study.trials[0].user_attrs[HEARTBEAT_ATTR] > first
