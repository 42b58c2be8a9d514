"""MLflow unreachable: training goes on, data waits in the spool, replay loses and duplicates nothing."""

from __future__ import annotations

import json
import logging
import signal
import time

import pytest
import requests

from medkit_exp.tracking import replay_spool
from medkit_exp.tracking.messages import LogMetrics, SetTags, from_record, to_record
from medkit_exp.tracking.ops import get_or_create_experiment
from medkit_exp.tracking.uris import HTTP_ENV_DEFAULTS
from medkit_exp.tracking.sink import AsyncRunLogger
from medkit_exp.tracking.spool import RunSpool, main as spool_main, run_spools
from tests.tracking.helpers import SignalAt, free_port, metric_steps


@pytest.fixture(autouse=True)
def _restore_http_env(monkeypatch):
    """The callback sets MLflow's HTTP retry variables when unset: undo that after each test."""
    for name in HTTP_ENV_DEFAULTS:
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)


def _history_steps(output_dir, kind="log"):
    lines = [json.loads(line) for line in (output_dir / "history.jsonl").read_text().splitlines()]
    return [record["step"] for record in lines if record["type"] == kind]


@pytest.mark.parametrize("worker", [False, True], ids=["inline", "worker"])
def test_unreachable_server_training_goes_on_then_replays(make_trainer, make_callback, client, tracking_uri, tmp_path, caplog, worker):
    from medkit_exp.tracking import describe_dataset

    unreachable = f"http://127.0.0.1:{free_port()}"
    callback = make_callback(worker=worker, tracking_uri=unreachable, params={"lr": 0.01}, retry_interval=0.1,
                             datasets=[describe_dataset("toy", [1, 2, 3], "toy:src")])
    trainer = make_trainer(callback=[callback])
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="medkit_exp.tracking"):
        trainer.train()
    assert time.perf_counter() - started < 30  # no minutes of HTTP retries
    assert trainer.state.global_step == 16
    assert "unreachable" in caplog.text and "mlflow_spool" in caplog.text
    assert callback.run_id is None
    [spool] = run_spools(tmp_path / "run")
    assert (spool.directory / "ops.jsonl").exists() and spool.has_pending()
    assert spool.read_spec()["tracking_uri"] == unreachable

    replayed = replay_spool(tmp_path / "run", tracking_uri=tracking_uri)  # the server is back
    run_id = replayed[spool.directory.name]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params == {"lr": "0.01"}
    assert run.info.experiment_id == client.get_experiment_by_name(callback.experiment_name).experiment_id
    output_dir = tmp_path / "run"
    assert metric_steps(client, run_id, "train/loss") == _history_steps(output_dir)
    assert metric_steps(client, run_id, "eval/accuracy") == _history_steps(output_dir, "eval")
    assert {a.path for a in client.list_artifacts(run_id)} >= {"history", "plots", "checkpoints"}
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["toy"]
    assert not spool.has_pending() and spool.read_spec()["run_id"] == run_id

    assert replay_spool(tmp_path / "run", tracking_uri=tracking_uri) == {}  # nothing left: nothing twice
    assert metric_steps(client, run_id, "train/loss") == _history_steps(output_dir)


def test_spooled_data_is_sent_at_the_next_start(make_trainer, make_callback, client, tracking_uri, tmp_path):
    unreachable = f"http://127.0.0.1:{free_port()}"
    first = make_callback(tracking_uri=unreachable, plots=False, log_checkpoints=False)
    make_trainer(callback=[SignalAt(6, signal.SIGTERM), first], logging_steps=1).train()
    [spool] = run_spools(tmp_path / "run")
    spec = spool.read_spec()
    spec["tracking_uri"] = tracking_uri  # the server is back at the address the spool recorded
    spool.write_spec(spec)

    second = make_callback(plots=False, log_checkpoints=False)
    resumed = make_trainer(callback=[second], logging_steps=1)
    resumed.train(resume_from_checkpoint="last")
    assert second.run_id is not None and not spool.has_pending()
    run = client.get_run(second.run_id)
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(second.run_id, "train/loss")]
    assert sorted(steps) == list(range(1, resumed.state.global_step + 1))
    assert len(client.search_runs([run.info.experiment_id])) == 1


class FlakyClient:
    """A real MlflowClient whose server can be down, or lose the answer to a log_batch it applied."""

    def __init__(self, client):
        self.client, self.mode = client, "up"

    def _fail(self):
        raise requests.exceptions.ConnectionError("connection refused (simulated)")

    def log_batch(self, *args, **kwargs):
        if self.mode == "down":
            self._fail()
        self.client.log_batch(*args, **kwargs)
        if self.mode == "lost_ack":
            self._fail()

    def __getattr__(self, name):
        method = getattr(self.client, name)

        def call(*args, **kwargs):
            if self.mode == "down":
                self._fail()
            return method(*args, **kwargs)

        return call


def test_server_away_mid_run_no_point_lost_or_duplicated(client, experiment_name, tmp_path, caplog):
    run_id = client.create_run(get_or_create_experiment(client, experiment_name)).info.run_id
    spool = RunSpool.for_run(tmp_path, "local")
    spool.write_spec({"run_id": run_id, "experiment_name": experiment_name})
    flaky = FlakyClient(client)
    # No retry right after the lost answer: a replay then would find steps 10-14 on the server,
    # skip them and be online again before the assertion below looks (it did under load).
    sink = AsyncRunLogger(flaky, run_id, spool, flush_interval=60, retry_interval=3600)

    def log(steps, mode):
        flaky.mode = mode
        for step in steps:
            sink.submit(LogMetrics.at_step({"train/loss": 1.0 / (step + 1), "train/lr": 0.1}, step))
        assert sink.flush(timeout=30)

    with caplog.at_level(logging.WARNING, logger="medkit_exp.tracking"):
        log(range(0, 10), "up")
        log(range(10, 15), "lost_ack")  # arrived, but the client saw an error: spooled anyway
        assert not sink.online and spool.has_pending()
        sink.retry_interval = 0  # from now on every send first tries to replay the spool
        log(range(15, 20), "down")
        assert not sink.online
        log(range(20, 25), "up")  # replays the spool (skipping 10-14, already there), then goes on
        assert sink.online and not spool.has_pending()
        assert sink.close(timeout=30)
    assert "unreachable" in caplog.text and "reachable again" in caplog.text
    for key in ("train/loss", "train/lr"):
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        assert sorted(steps) == list(range(25)), key  # every point, once


def test_a_spool_cut_mid_line_still_replays(client, experiment_name, tmp_path):
    spool = RunSpool.for_run(tmp_path, "cut")
    spool.write_spec({"run_id": None, "experiment_name": experiment_name, "run_name": "cut", "start_time": None})
    spool.append([LogMetrics((("m", 1.0, 1000, step),)) for step in range(3)])
    with open(spool.directory / "ops.jsonl", "a") as handle:
        handle.write('{"op": "metrics", "metr')  # the process died while writing
    assert spool_main([str(tmp_path), "--tracking-uri", client.tracking_uri]) == 0
    run_id = spool.read_spec()["run_id"]
    assert metric_steps(client, run_id, "m") == [0, 1, 2]
    assert client.get_run(run_id).info.run_name == "cut"


def test_http_defaults_only_when_unset(monkeypatch):
    import os

    from medkit_exp.tracking.uris import configure_http_env

    configure_http_env("sqlite:///x.db")
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "42")
    configure_http_env("http://server:5000")
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "42"


def test_a_spool_written_before_typed_operations_still_replays(client, experiment_name, tmp_path):
    """ops.jsonl keeps its record format: lines an older version spooled are read as operations."""
    spool = RunSpool.for_run(tmp_path, "older")
    spool.write_spec({"run_id": None, "experiment_name": experiment_name, "run_name": "older", "start_time": None})
    spool.directory.joinpath("ops.jsonl").write_text(
        '{"op": "metrics", "metrics": [["m", 2.0, 1000, 4]]}\n{"op": "tags", "tags": {"stage": "old"}}\n'
        '{"op": "artifact", "local_path": "/nonexistent", "artifact_path": null}\n')
    assert [to_record(op) for op in spool.pending()][:2] == [
        {"op": "metrics", "metrics": [["m", 2.0, 1000, 4]]}, {"op": "tags", "tags": {"stage": "old"}}]
    assert from_record(to_record(SetTags({"a": "1"}))) == SetTags({"a": "1"})
    assert spool_main([str(tmp_path), "--tracking-uri", client.tracking_uri]) == 0
    run = client.get_run(spool.read_spec()["run_id"])
    assert run.data.tags["stage"] == "old" and metric_steps(client, run.info.run_id, "m") == [4]
