"""Many writers, one store: created and migrated once under a file lock; "database is locked"
retried; a half-migrated or damaged store reported in one line with its repair."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from medkit_exp.errors import TrackingError
from medkit_exp.tracking.store import forget_prepared, lock_path, prepare_store, retry_locked, sqlite_path, with_store_lock

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fresh_memory():
    forget_prepared()
    yield
    forget_prepared()


@pytest.fixture
def store_copy(tracking_uri, tmp_path) -> str:
    """A private copy of the session's migrated store."""
    database = tmp_path / "copy.db"
    shutil.copyfile(sqlite_path(tracking_uri), database)
    return f"sqlite:///{database}"


def test_uris_and_their_lock_files(tmp_path):
    assert sqlite_path("sqlite:////tmp/x.db") == Path("/tmp/x.db")
    assert sqlite_path("sqlite:///mlflow.db") == tmp_path / "mlflow.db"  # relative to the working directory
    assert sqlite_path("sqlite:///:memory:") is None and sqlite_path("file:./mlruns") is None
    assert lock_path("sqlite:///mlflow.db") == tmp_path / "mlflow.db.lock"
    assert lock_path("http://host:5000") is None and lock_path("file:./mlruns") is None
    assert lock_path("postgresql://u:p@db/x") == lock_path("postgresql://u:p@db/x") != lock_path("postgresql://u:p@db/y")


@pytest.mark.slow  # three processes importing MLflow: 30 s on 2 busy cores (the README sweep test covers it too)
def test_workers_opening_a_new_store_together_all_get_it(tmp_path):
    """Three processes open one new store at the same instant: MLflow alone races on its migration
    (``table ... already exists``, ``duplicate column``); with the lock each finds it ready."""
    database = tmp_path / "mlflow.db"
    script = (
        "import sys; from medkit_exp.tracking.store import prepare_store; prepare_store(sys.argv[1]);"
        "from mlflow import MlflowClient; print(len(MlflowClient(sys.argv[1]).search_experiments()))"
    )
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    processes = [
        subprocess.Popen([sys.executable, "-c", script, f"sqlite:///{database}"], cwd=tmp_path, env=environment,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=300)
            outputs.append((process.returncode, out.strip(), err[-2000:]))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert [(code, out) for code, out, _ in outputs] == [(0, "1")] * 3, outputs
    tables = {name for (name,) in sqlite3.connect(database).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "experiments" in tables and not any(name.startswith("_alembic_tmp_") for name in tables)


def test_a_half_migrated_store_is_reported_in_one_line_with_its_repair(store_copy):
    database = sqlite_path(store_copy)
    with sqlite3.connect(database) as connection:  # what an interrupted batch migration leaves
        connection.execute("CREATE TABLE _alembic_tmp_experiments (experiment_id INTEGER)")
    with pytest.raises(TrackingError) as caught:
        prepare_store(store_copy)
    message = str(caught.value)
    assert "\n" not in message and "half-migrated" in message and str(database) in message
    assert "DROP TABLE _alembic_tmp_experiments" in message and f"mlflow db upgrade {store_copy}" in message
    # the repair it gives works
    with sqlite3.connect(database) as connection:
        connection.execute("DROP TABLE _alembic_tmp_experiments")
    prepare_store(store_copy)


@pytest.mark.parametrize("content", [b"not a database at all" * 100, b"SQLite format 3\x00" + b"\xff" * 4000])
def test_a_file_that_is_not_a_store_is_one_line(tmp_path, content):
    database = tmp_path / "mlflow.db"
    database.write_bytes(content)
    with pytest.raises(TrackingError) as caught:
        prepare_store(f"sqlite:///{database}")
    assert "\n" not in str(caught.value) and str(database) in str(caught.value)


def test_database_is_locked_is_retried_with_backoff_and_logged(caplog):
    calls = []

    def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")
        return "done"

    with caplog.at_level(logging.WARNING, logger="medkit_exp.tracking.store"):
        assert retry_locked(flaky, "test store") == "done"
    assert len(calls) == 3 and calls[1] - calls[0] >= 0.25 and calls[2] - calls[1] >= 0.5  # backoff
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["test store"] * 2
    assert "try 1 of" in caplog.records[0].getMessage()

    def always_locked() -> None:
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(sqlite3.OperationalError):
        retry_locked(always_locked, "test store", attempts=2)

    def other_error() -> None:
        calls.append(0)
        raise sqlite3.OperationalError("no such table: runs")

    count = len(calls)
    with pytest.raises(sqlite3.OperationalError):
        retry_locked(other_error, "test store")
    assert len(calls) == count + 1  # not retried: no wait would fix it


def test_the_lock_serialises_openers(tmp_path):
    """While one process holds the store's lock (migrating), another opener waits for it."""
    from filelock import FileLock

    uri = f"sqlite:///{tmp_path / 'x.db'}"
    order: list[str] = []
    holder = FileLock(str(lock_path(uri)))
    holder.acquire()
    thread = threading.Thread(target=lambda: order.append(with_store_lock(uri, lambda: "opened", "x")))
    thread.start()
    time.sleep(0.5)
    order.append("released")
    holder.release()
    thread.join(timeout=30)
    assert order == ["released", "opened"]


@pytest.mark.slow  # holds a real SQLite write lock longer than SQLite's own 5 s wait
def test_a_store_locked_by_another_writer_opens_once_the_writer_is_done(store_copy):
    database = sqlite_path(store_copy)
    writer = sqlite3.connect(database, check_same_thread=False)
    writer.execute("BEGIN EXCLUSIVE")
    threading.Timer(7.0, writer.rollback).start()
    started = time.monotonic()
    prepare_store(store_copy)  # waits (and retries) instead of failing with "database is locked"
    assert time.monotonic() - started >= 6.5


def run_app(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    for name in ("HYDRA_FULL_ERROR", "MLFLOW_TRACKING_URI"):
        environment.pop(name, None)
    return subprocess.run([sys.executable, "-m", "medkit_exp", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=environment)


@pytest.mark.parametrize("sweep", [False, True], ids=["training", "sweep"])
def test_the_application_on_a_half_migrated_store_exits_2_with_one_line(store_copy, tmp_path, sweep):
    """The issue's broken folder: one Error line with the repair, exit 2, no SQL traceback; a
    sweep stops before its study or any trial."""
    with sqlite3.connect(sqlite_path(store_copy)) as connection:
        connection.execute("CREATE TABLE _alembic_tmp_experiments (experiment_id INTEGER)")
    arguments = ["+experiment=ner", "debug=fast", f"tracking.tracking_uri={store_copy}"]
    if sweep:
        arguments += ["hparams_search=ner_optuna", "hydra.sweeper.n_trials=1", "hydra.sweep.dir=sweep",
                      f"hydra.sweeper.storage=journal:{tmp_path / 'optuna.journal'}"]
    done = run_app(tmp_path, *arguments)
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert done.returncode == 2, done.stderr[-3000:]
    assert len(errors) == 1 and "half-migrated" in errors[0] and "DROP TABLE _alembic_tmp_experiments" in errors[0]
    assert "Traceback" not in done.stderr and "sqlalchemy" not in done.stderr.lower()
    if sweep:
        assert not (tmp_path / "optuna.journal").exists() and not (tmp_path / "sweep" / "0").exists()


@pytest.mark.parametrize(("error", "expected"), [
    ("(sqlite3.OperationalError) table _alembic_tmp_experiments already exists [SQL: CREATE TABLE ...]",
     "DROP TABLE _alembic_tmp_experiments"),
    ("(sqlite3.OperationalError) duplicate column name: step\n[SQL: ALTER TABLE metrics ADD COLUMN step]",
     "half-migrated (an interrupted schema upgrade): move it aside"),
    ("Detected out-of-date database schema (found version 1, but expected 2). Take a backup of your database, "
     "then run 'mlflow db upgrade <database_uri>'", "has an older schema: run `mlflow db upgrade"),
    ("(sqlite3.OperationalError) unable to open database file", "could not be opened: (sqlite3.OperationalError)"),
])
def test_mlflow_errors_on_open_become_one_line_with_what_to_do(tmp_path, error, expected):
    from medkit_exp.tracking.store import store_error

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    message = str(store_error(uri, RuntimeError(error)))
    assert "\n" not in message and expected in message and str(tmp_path / "mlflow.db") in message
    assert "[SQL:" not in message


def test_link_or_copy_leaves_out_excluded_names(tmp_path):
    from medkit_exp.tracking.files import link_or_copy

    source = tmp_path / "checkpoint"
    source.mkdir()
    (source / "model.bin").write_bytes(b"weights")
    (source / "optimizer.pt").write_bytes(b"state")
    target = link_or_copy(source, tmp_path / "model" / "tagger", exclude={"optimizer.pt"})
    assert sorted(p.name for p in target.iterdir()) == ["model.bin"]
    assert (target / "model.bin").stat().st_ino == (source / "model.bin").stat().st_ino
