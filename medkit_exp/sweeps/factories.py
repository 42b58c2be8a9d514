"""Optuna samplers, pruners and storages from the sweeper's config, with clear errors.

A sampler or pruner is a mapping with a ``name`` (``tpe``, ``median``...; see
:data:`medkit_exp.sweeps.config.SAMPLERS` and ``PRUNERS``) or, as in Hydra's Optuna sweeper,
a ``_target_`` class path; every other key is a keyword argument of the class, checked against
its signature. A storage is ``None`` (in memory), ``journal:PATH`` (Optuna's journal file: one
machine, several processes), or a database URL (``sqlite:///optuna.db``,
``postgresql://user:password@host:5432/db``: several machines).

>>> make_pruner({"name": "threshold", "lower": 0.5})                          # doctest: +ELLIPSIS
<optuna.pruners._threshold.ThresholdPruner object at ...>
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import random
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medkit_exp.errors import ConfigError, MedkitExpError
from medkit_exp.redaction import redact_url as _redact_url
from medkit_exp.tracking.store import with_store_lock
from medkit_exp.sweeps.config import PRUNERS, SAMPLERS

logger = logging.getLogger(__name__)

SAMPLER_KEY = "hydra.sweeper.sampler"
PRUNER_KEY = "hydra.sweeper.pruner"
STORAGE_KEY = "hydra.sweeper.storage"
JOURNAL_PREFIX = "journal:"


def make_sampler(settings: Mapping[str, Any] | None, grid: dict[str, list[Any]] | None = None) -> Any:
    """The sampler ``settings`` describe (TPE when None); ``grid`` feeds the grid sampler's space."""
    settings = dict(settings or {"name": "tpe"})
    cls = _resolve_class(settings, SAMPLERS, "optuna.samplers", SAMPLER_KEY)
    if cls.__name__ == "GridSampler":
        from medkit_exp.sweeps.grid import AskTellGridSampler

        if grid is None:
            raise ConfigError(SAMPLER_KEY, "the grid sampler needs a search space")
        settings.setdefault("search_space", grid)
        cls = AskTellGridSampler
    return _instantiate(cls, settings, SAMPLER_KEY)


def make_pruner(settings: Mapping[str, Any] | None) -> Any:
    """The pruner ``settings`` describe (``{"name": "none"}`` or None: never prune)."""
    settings = dict(settings or {"name": "none"})
    cls = _resolve_class(settings, PRUNERS, "optuna.pruners", PRUNER_KEY)
    return _instantiate(cls, settings, PRUNER_KEY)


def describe(settings: Mapping[str, Any] | None, default: str) -> str:
    """``name(key=value, ...)`` of a sampler or pruner config, for logs and MLflow params."""
    settings = dict(settings or {"name": default})
    name = settings.pop("name", None) or str(settings.pop("_target_", default)).rsplit(".", 1)[-1]
    settings.pop("_target_", None)
    arguments = ", ".join(f"{key}={value}" for key, value in settings.items() if value is not None)
    return f"{name}({arguments})"


def _resolve_class(settings: dict[str, Any], names: Mapping[str, str], module: str, key: str) -> type:
    target, name = settings.pop("_target_", None), settings.pop("name", None)
    if target:
        module_name, _, class_name = str(target).rpartition(".")
        try:
            return getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError, ValueError) as error:
            raise ConfigError(f"{key}._target_", f"cannot import {target!r}: {error}") from error
    if name is None or str(name).lower() not in names:
        raise ConfigError(f"{key}.name", f"unknown {key.rsplit('.', 1)[-1]} {name!r}; valid: {', '.join(names)}")
    return getattr(importlib.import_module(module), names[str(name).lower()])


def _instantiate(cls: type, settings: dict[str, Any], key: str) -> Any:
    parameters = inspect.signature(cls).parameters
    unknown = [name for name in settings if name not in parameters]
    if unknown:
        valid = ", ".join(p for p in parameters if p not in ("self", "args", "kwargs"))
        raise ConfigError(f"{key}.{unknown[0]}", f"not a parameter of {cls.__name__}; valid: {valid}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning on some arguments
            return cls(**settings)
    except ImportError as error:
        raise ConfigError(key, f"{cls.__name__} needs a package that is not installed: {error}") from error
    except (TypeError, ValueError) as error:
        raise ConfigError(key, f"{cls.__name__}({settings}): {error}") from error


# ----------------------------------------------------------------------------- storages
def make_storage(url: str | None) -> Any:
    """The Optuna storage at ``url``, reached now: an unreachable one fails before any trial."""
    if url is None or str(url).strip() == "":
        return None
    url = str(url).strip()
    if url.startswith(JOURNAL_PREFIX):
        return _journal_storage(url[len(JOURNAL_PREFIX):])
    if "://" not in url:
        raise ConfigError(
            STORAGE_KEY,
            f"{url!r} is not a storage; use null (in memory), journal:PATH, sqlite:///PATH or a database URL "
            "such as postgresql://user:password@host:5432/db",
        )
    return _rdb_storage(url)


def _journal_storage(path: str) -> Any:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if not path:
        raise ConfigError(STORAGE_KEY, "journal: needs a file path, e.g. journal:./optuna.journal")
    file = Path(path).expanduser()
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(file)))
    except OSError as error:
        raise ConfigError(STORAGE_KEY, f"cannot open the journal file {file}: {error}") from error


def _rdb_storage(url: str) -> Any:
    from optuna.storages import RDBStorage

    shown = redact_url(url)
    url = _with_installed_driver(url)

    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith(("postgresql", "mysql")):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    if url.startswith("sqlite:///"):
        database = Path(url[len("sqlite:///"):]).expanduser()
        if str(database) not in ("", ":memory:") and not database.parent.is_dir():
            raise ConfigError(STORAGE_KEY, f"folder of the SQLite file not found: {database.parent}")
    try:
        # one process creates the tables while the others wait (same machine); the retries
        # cover workers on other machines and a transient "database is locked"
        return with_store_lock(url, lambda: _create_tables_once(lambda: RDBStorage(url, engine_kwargs=engine_kwargs)),
                               f"Optuna storage {shown}")
    except MedkitExpError:
        raise
    except ImportError as error:
        raise ConfigError(STORAGE_KEY, f"the driver of {shown} is not installed: {error}") from error
    except Exception as error:  # noqa: BLE001 - SQLAlchemy's connection errors have many types
        message = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigError(STORAGE_KEY, f"cannot reach the storage {shown}: {redact_url(message)}") from error


def _create_tables_once(open_storage: Any, attempts: int = 4) -> Any:
    """Open an RDB storage; workers starting together on a new database race to create Optuna's
    tables, and the losers see "already exists" errors: they try again once the tables exist."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return open_storage()
        except (IntegrityError, ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


def _with_installed_driver(url: str) -> str:
    """``postgresql://`` names SQLAlchemy's default driver (psycopg 3 since SQLAlchemy 2.1); use
    psycopg2 (the ``postgres`` extra) when only that one is installed."""
    if not url.startswith("postgresql://"):
        return url
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def redact_url(url: str | None) -> str | None:
    """The storage URL without its password, for logs and MLflow (see :mod:`medkit_exp.redaction`)."""
    return None if url is None else _redact_url(str(url))
