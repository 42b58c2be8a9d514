"""The sweeper's settings, checked, and the Optuna study they name (created or continued)."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from medkit_exp.errors import ConfigError

logger = logging.getLogger(__name__)

KEY = "hydra.sweeper"


@dataclass
class SweepSettings:
    """``hydra.sweeper`` as the sweeper gets it (see :class:`medkit_exp.sweeps.config.MedkitOptunaSweeperConf`)."""

    sampler: dict[str, Any] = field(default_factory=lambda: {"name": "tpe"})
    direction: str | None = None
    storage: str | None = None
    study_name: str | None = None
    n_trials: int = 20
    n_jobs: int = 1
    params: dict[str, str] | None = None
    pruner: dict[str, Any] = field(default_factory=lambda: {"name": "median"})
    max_failure_rate: float = 0.25
    heartbeat_interval: int = 30
    grace_period: int | None = None
    stale_trial_retries: int = 1

    def __post_init__(self) -> None:
        if self.n_trials < 1:
            raise ConfigError(f"{KEY}.n_trials", f"must be >= 1, got {self.n_trials}")
        if not 0.0 <= self.max_failure_rate <= 1.0:
            raise ConfigError(f"{KEY}.max_failure_rate", f"must be in [0, 1], got {self.max_failure_rate}")
        if self.heartbeat_interval < 1:
            raise ConfigError(f"{KEY}.heartbeat_interval", f"must be >= 1 second, got {self.heartbeat_interval}")
        if self.grace_period is not None and self.grace_period <= self.heartbeat_interval:
            raise ConfigError(f"{KEY}.grace_period", f"must exceed heartbeat_interval ({self.heartbeat_interval} s)")
        if self.stale_trial_retries < 0:
            raise ConfigError(f"{KEY}.stale_trial_retries", f"must be >= 0, got {self.stale_trial_retries}")
        if self.direction is not None and self.direction not in ("maximize", "minimize"):
            raise ConfigError(f"{KEY}.direction", f"must be maximize or minimize, got {self.direction!r}")
        if self.n_jobs != 1:
            logger.warning(
                "hydra.sweeper.n_jobs=%s is ignored: each worker runs one trial at a time; start several workers "
                "with the same storage and study_name to run trials in parallel", self.n_jobs,
            )

    @property
    def stale_after(self) -> int:
        """Seconds without a heartbeat after which a RUNNING trial is stale."""
        return self.grace_period or 4 * self.heartbeat_interval


def resolve_direction(direction: str | None, task_minimizes: bool) -> str:
    """The study's direction: the task's own unless set, and then it must agree with the task."""
    task_direction = "minimize" if task_minimizes else "maximize"
    if direction is not None and direction != task_direction:
        raise ConfigError(
            f"{KEY}.direction",
            f"{direction} disagrees with trainer.minimize_checkpoint_metric={task_minimizes}: the task returns the "
            f"{'lowest' if task_minimizes else 'highest'} value of optimized_metric; set both the same way",
        )
    return task_direction


def default_study_name(experiment_name: str) -> str:
    """A new study name per sweep when none is set (set one to continue or share a study)."""
    return f"{experiment_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def worker_seed(seed: int | None, created: bool) -> int | None:
    """The sampler seed of this worker.

    The configured seed when this worker created the study: a sweep run by one worker from
    start to end is reproducible. A worker that joins or continues a study gets a seed of its
    own, derived from the configured one, its host, process and start time: with the same seed
    as another worker (or as the run it continues) its sampler would propose the same parameters
    again.
    """
    if seed is None or created:
        return seed
    text = f"{seed}:{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def open_study(storage: Any, study_name: str, direction: str, sampler: Any, pruner: Any) -> tuple[Any, bool]:
    """``(study, created)``: a new study, or the existing one of that name (same direction)."""
    import optuna

    try:
        study = optuna.create_study(
            storage=storage, study_name=study_name, direction=direction, sampler=sampler, pruner=pruner
        )
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner)
    existing = study.direction.name.lower()
    if existing != direction:
        raise ConfigError(f"{KEY}.direction", f"study {study_name!r} exists with direction {existing}, not {direction}")
    return study, False


def state_counts(study: Any) -> dict[str, int]:
    """``{state name: number of trials}`` of the whole study."""
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def best_trial(study: Any) -> Any | None:
    """The best COMPLETE trial, or None while there is none."""
    try:
        return study.best_trial
    except ValueError:
        return None
