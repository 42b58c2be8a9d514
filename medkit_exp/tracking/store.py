"""Many writers, one store: a local MLflow store is created and migrated once, under a file lock.

MLflow creates and migrates a database store the first time a process opens it. Processes that
open a new store at the same instant (the workers of a sweep started together, each trial's
tracking worker) run the same migrations at once and break each other's (``table
_alembic_tmp_experiments already exists``, ``duplicate column name``), leaving a store that every
later run fails to open. :func:`prepare_store` opens the store with MLflow's public API while it
holds a file lock, so the first process migrates and the others wait, then find it ready. A
transient ``database is locked`` is retried a few times with backoff; a store left half-migrated
is reported in one line that says how to repair it.

>>> prepare_store("sqlite:///mlflow.db")                                      # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlsplit

from medkit_exp.errors import TrackingError
from medkit_exp.redaction import redact_url

logger = logging.getLogger(__name__)

T = TypeVar("T")

LOCK_TIMEOUT_S = 600.0  # a migration takes seconds; a lock held this long is a stuck process
ATTEMPTS = 6  # tries against "database is locked": about 30 s of backoff in all
_LEFTOVER_TABLE_PREFIX = "_alembic_tmp_"
_MIGRATION_RACE_MARKERS = ("already exists", "duplicate column", _LEFTOVER_TABLE_PREFIX)
_prepared: set[str] = set()  # stores this process made ready (once per process is enough)


def sqlite_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` URI (None for any other URI, or an in-memory database)."""
    if not uri.startswith("sqlite:"):
        return None
    path = unquote(urlsplit(uri).path)
    if uri.startswith("sqlite:////"):  # sqlite:////abs/path: the path keeps its leading slash
        path = "/" + path.lstrip("/")
    elif uri.startswith("sqlite:///"):
        path = path[1:]
    if path in ("", ":memory:"):
        return None
    return Path(path).expanduser().absolute()


def lock_path(uri: str) -> Path | None:
    """The lock file for a store: beside a SQLite file, else one per URI in the temporary
    folder (processes of one machine); None for stores that need no migration (``file:``, servers)."""
    database = sqlite_path(uri)
    if database is not None:
        return database.with_name(database.name + ".lock")
    if uri.startswith(("http://", "https://", "databricks", "file:", "sqlite:")) or "://" not in uri:
        return None
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"medkit_exp-store-{digest}.lock"


def with_store_lock(uri: str, action: Callable[[], T], what: str) -> T:
    """Run ``action`` while holding the store's file lock (no lock for stores that need none),
    retrying a transient ``database is locked`` with backoff."""
    path = lock_path(uri)
    if path is None:
        return retry_locked(action, what)
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(path), timeout=LOCK_TIMEOUT_S):
            return retry_locked(action, what)
    except Timeout as error:
        raise TrackingError(
            f"{what}: the lock {path} was held for more than {LOCK_TIMEOUT_S:.0f} s by another process; "
            "if no other run is starting, remove that file"
        ) from error


def retry_locked(action: Callable[[], T], what: str, attempts: int = ATTEMPTS) -> T:
    """``action()``, tried again when SQLite answers ``database is locked`` (another writer held
    the file longer than SQLite's own wait); each retry is logged, the last failure raised."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as error:  # noqa: BLE001 - SQLAlchemy and MLflow wrap the SQLite error
            if "database is locked" not in str(error) or attempt == attempts:
                raise
            delay = min(0.5 * 2 ** (attempt - 1), 8.0) * (0.5 + random.random())
            logger.warning("%s: database is locked (try %d of %d); trying again in %.1f s", what, attempt, attempts, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def prepare_store(tracking_uri: str) -> None:
    """Create and migrate the MLflow store at ``tracking_uri`` once, under its file lock.

    A no-op for a tracking server (it migrates its own store) and for a store this process
    already prepared. A half-migrated store raises :class:`TrackingError` with the repair."""
    if tracking_uri in _prepared or tracking_uri.startswith(("http://", "https://", "databricks")):
        return

    def open_store() -> None:
        from mlflow import MlflowClient

        check_leftover_tables(tracking_uri)  # under the lock: a migration in progress has such tables too
        MlflowClient(tracking_uri).search_experiments(max_results=1)  # creates and migrates

    try:
        with_store_lock(tracking_uri, open_store, f"MLflow store {redact_url(tracking_uri)}")
    except TrackingError:
        raise
    except Exception as error:  # noqa: BLE001 - SQLAlchemy and MLflow raise many types here
        raise store_error(tracking_uri, error) from error
    _prepared.add(tracking_uri)


def check_leftover_tables(uri: str) -> None:
    """A SQLite store holding ``_alembic_tmp_*`` tables was left mid-migration: say how to repair it."""
    database = sqlite_path(uri)
    if database is None or not database.is_file():
        return
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as connection:
            rows = connection.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name LIKE '\\_alembic\\_tmp\\_%' ESCAPE '\\'"
            ).fetchall()
    except sqlite3.Error as error:
        if "not a database" in str(error) or "malformed" in str(error):
            raise TrackingError(
                f"MLflow store {database} is not a readable SQLite database ({error}): move it aside "
                f"(mv {database} {database}.broken) to start a new store"
            ) from error
        return  # locked or unreadable now: MLflow's own open reports it
    if rows:
        raise TrackingError(half_migrated_message(uri, [name for (name,) in rows]))


def half_migrated_message(uri: str, tables: list[str]) -> str:
    """One line: which store is half-migrated and the two ways out."""
    database = sqlite_path(uri)
    shown = redact_url(uri)
    if database is None:
        return (f"MLflow store {shown} is half-migrated (an interrupted schema upgrade); repair it with "
                f"`mlflow db upgrade {shown}`")
    if not tables:  # a migration step half done (a column added, its version not recorded)
        return (f"MLflow store {database} is half-migrated (an interrupted schema upgrade): move it aside "
                f"(mv {database} {database}.broken) to start a new store, or restore a backup and run "
                f"`mlflow db upgrade {shown}`")
    drops = "; ".join(f"DROP TABLE {name}" for name in tables)
    return (
        f"MLflow store {database} is half-migrated (leftover table {', '.join(tables)}): repair it with "
        f"sqlite3 {database} '{drops}' then `mlflow db upgrade {shown}`, or move {database} aside to start a new store"
    )


def store_error(uri: str, error: BaseException) -> TrackingError:
    """Our one-line error for a store MLflow could not open (raw SQL errors stay underneath)."""
    text = str(error)
    first = (text.strip().splitlines() or [type(error).__name__])[0].split("[SQL:")[0].strip()[:300]
    if any(marker in text for marker in _MIGRATION_RACE_MARKERS):
        tables = sorted({word.strip("\"'`,") for word in text.split() if word.startswith(_LEFTOVER_TABLE_PREFIX)})
        return TrackingError(half_migrated_message(uri, tables) + f" ({redact_url(first)})")
    if "out-of-date database schema" in text or "mlflow db upgrade" in text:
        return TrackingError(f"MLflow store {redact_url(uri)} has an older schema: run `mlflow db upgrade {redact_url(uri)}`")
    return TrackingError(f"MLflow store {redact_url(uri)} could not be opened: {redact_url(first)}")


def forget_prepared() -> None:
    """Forget which stores were prepared (tests)."""
    _prepared.clear()
