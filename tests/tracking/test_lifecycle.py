"""Run status (FINISHED / FAILED / KILLED) and resuming into the same MLflow run."""

from __future__ import annotations

import logging
import signal

import pytest

from tests.tracking.helpers import FailingToy, SignalAt, metric_steps


@pytest.mark.parametrize("worker", [False, True], ids=["inline", "worker"])
def test_an_exception_ends_the_run_failed(make_trainer, make_callback, client, tmp_path, worker):
    callback = make_callback(worker=worker, log_checkpoints=True)
    trainer = make_trainer(component=FailingToy(fail_at=7), callback=[callback])
    with pytest.raises(RuntimeError, match="boom"):
        trainer.train()
    run = client.get_run(callback.run_id)
    assert run.info.status == "FAILED" and run.info.end_time is not None
    assert run.data.tags["error"] == "RuntimeError: boom at a training batch"
    assert metric_steps(client, callback.run_id, "train/loss") == [2, 4, 6]  # what came before the failure
    files = {a.path for a in client.list_artifacts(callback.run_id)}
    assert "history" in files and "checkpoints" not in files


@pytest.mark.parametrize("worker", [False, True], ids=["inline", "worker"])
def test_sigterm_ends_the_run_killed(make_trainer, make_callback, client, worker):
    callback = make_callback(worker=worker, plots=False)
    trainer = make_trainer(callback=[SignalAt(5, signal.SIGTERM), callback])
    trainer.train()
    assert trainer.state.interrupted and trainer.state.global_step == 5
    run = client.get_run(callback.run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["stop_reason"] == "SIGTERM"
    assert "checkpoints/best" in {a.path for a in client.list_artifacts(callback.run_id, "checkpoints")}


def test_a_finished_run_is_finished(make_trainer, make_callback, client):
    callback = make_callback(plots=False, log_checkpoints=False)
    make_trainer(callback=[callback], nb_training_epochs=1).train()
    run = client.get_run(callback.run_id)
    assert run.info.status == "FINISHED" and run.info.end_time >= run.info.start_time


@pytest.mark.parametrize("worker", [False, True], ids=["inline", "worker"])
def test_resume_continues_the_same_run(make_trainer, make_callback, client, caplog, worker):
    params = {"model": {"dim": 16}, "trainer": {"lr": 0.01}}
    first = make_callback(worker=worker, params=params, plots=False, log_checkpoints=False)
    trainer = make_trainer(callback=[SignalAt(6, signal.SIGTERM), first], logging_steps=1)
    trainer.train()
    assert client.get_run(first.run_id).info.status == "KILLED"
    assert metric_steps(client, first.run_id, "train/loss") == list(range(1, 7))

    # A new process would build everything again: same config, a new callback object.
    # A changed value must not fail the resume (nor stop a new param from being logged).
    changed = {"model": {"dim": 16}, "trainer": {"lr": 0.02, "warmup": 0}}
    second = make_callback(worker=worker, params=changed, log_checkpoints=False)
    resumed = make_trainer(callback=[second], logging_steps=1)
    with caplog.at_level(logging.WARNING, logger="medkit_exp.tracking"):
        resumed.train(resume_from_checkpoint="last")
    assert second.run_id == first.run_id
    run = client.get_run(second.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"model.dim": "16", "trainer.lr": "0.01", "trainer.warmup": "0"}
    assert "already has other values for params trainer.lr" in caplog.text
    assert "rejected" not in caplog.text
    assert run.data.tags["resumed_at_step"] == "6"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert sorted(steps) == list(range(1, resumed.state.global_step + 1))  # continued, no duplicate
    assert metric_steps(client, run.info.run_id, "eval/accuracy") == [4, 8, 12, 16]
    assert len(client.search_runs([run.info.experiment_id])) == 1
    # the best so far carries over the resume (kept in the callback's checkpointed state)
    evals = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "eval/accuracy"))
    best = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "best/eval/accuracy")}
    assert [best[step] for step, _ in evals] == [max(v for s, v in evals if s <= step) for step, _ in evals]


def test_resume_after_a_hard_kill_does_not_duplicate_redone_steps(make_trainer, make_callback, client):
    """Steps between the checkpoint and the kill are redone by the resumed run: logged once."""
    first = make_callback(plots=False, log_checkpoints=False)
    trainer = make_trainer(callback=[first], logging_steps=1, max_steps=8, keep_best_k=5)
    trainer.train()
    # As if the process had died at step 8 with its last checkpoint at step 4.
    checkpoint_4 = [c for c in (trainer.output_dir / "checkpoints").iterdir() if c.name.endswith("0004")]
    assert checkpoint_4
    second = make_callback(plots=False, log_checkpoints=False)
    make_trainer(callback=[second], logging_steps=1, keep_best_k=5).train(resume_from_checkpoint=str(checkpoint_4[0]))
    assert second.run_id == first.run_id
    steps = [m.step for m in client.get_metric_history(first.run_id, "train/loss")]
    assert sorted(steps) == list(range(1, 17))
