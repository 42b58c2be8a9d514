"""A real MLflow tracking server that goes away mid-run and comes back (slow: starts servers)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from medkit_exp.training import TrainerCallback
from tests.tracking.helpers import free_port, metric_steps

pytestmark = pytest.mark.slow


class MlflowServer:
    """``mlflow server`` on a sqlite store, in its own process group (its workers stop with it)."""

    def __init__(self, folder: Path, port: int):
        self.folder, self.port = folder, port
        self.uri = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> None:
        command = [
            str(Path(sys.executable).with_name("mlflow")), "server",
            "--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}",
            "--artifacts-destination", str(self.folder / "server-artifacts"),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
        ]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        log = open(self.folder / "server.log", "a")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.folder / 'server.log').read_text()[-2000:]}")
            try:
                if requests.get(f"{self.uri}/health", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"mlflow server not healthy after {timeout}s")

    def stop(self) -> None:
        """Terminate the server's process group (this test started it), then kill what is left."""
        if self.process is None:
            return
        pgid = self.process.pid  # start_new_session: the group id is the server's pid
        try:
            os.killpg(pgid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.process.wait(timeout=15)
        except ProcessLookupError:
            pass
        with_stragglers = True
        while with_stragglers:  # workers of the group may outlive the parent by a moment
            try:
                os.killpg(pgid, 0)
                time.sleep(0.1)
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                with_stragglers = False
        self.process = None


class ServerOutage(TrainerCallback):
    """Stops the server after step ``down_at``, restarts it after step ``up_at``."""

    def __init__(self, server: MlflowServer, down_at: int, up_at: int):
        self.server, self.down_at, self.up_at = server, down_at, up_at

    def on_log(self, logs, step):
        if step == self.down_at:
            time.sleep(0.5)  # let the logger send what came before
            self.server.stop()
        elif step == (self.down_at + self.up_at) // 2:
            time.sleep(1.0)  # the logger tries to send while the server is away
        elif step == self.up_at:
            self.server.start()


@pytest.mark.parametrize("worker", [False, True], ids=["inline", "worker"])
def test_server_goes_away_mid_run_and_every_point_arrives_once(make_trainer, make_callback, tmp_path, caplog, monkeypatch, worker):
    from mlflow import MlflowClient

    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)  # unset during the test, restored after it
    server = MlflowServer(tmp_path, free_port())
    try:
        server.start()
        callback = make_callback(tracking_uri=server.uri, flush_interval=0.2, retry_interval=0.5, log_checkpoints=True,
                                 worker=worker)
        trainer = make_trainer(callback=[ServerOutage(server, down_at=10, up_at=30), callback],
                               logging_steps=1, eval_steps=5, nb_training_epochs=6)
        with caplog.at_level(logging.WARNING, logger="medkit_exp.tracking"):
            trainer.train()
        assert "unreachable" in caplog.text and "reachable again" in caplog.text

        client = MlflowClient(server.uri)
        run = client.get_run(callback.run_id)
        assert run.info.status == "FINISHED"
        total = trainer.state.global_step
        assert total == 48
        for key in ("train/loss", "train/learning_rate", "train/grad_norm"):
            steps = [m.step for m in client.get_metric_history(callback.run_id, key)]
            assert sorted(steps) == list(range(1, total + 1)), key  # each step, once
        assert metric_steps(client, callback.run_id, "eval/accuracy") == list(range(5, total + 1, 5)) + [48]
        assert {a.path for a in client.list_artifacts(callback.run_id)} >= {"checkpoints", "history", "plots", "config"}
        spools = list((tmp_path / "run" / "mlflow_spool").glob("*/ops.jsonl"))
        assert spools == []  # everything spooled was replayed
    finally:
        server.stop()
