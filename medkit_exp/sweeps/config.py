"""The sweeper's config, as Hydra composes it under ``hydra.sweeper`` (``hydra/sweeper=medkit_optuna``).

Keys shared with Hydra's own Optuna sweeper keep its names (``sampler``, ``direction``,
``storage``, ``study_name``, ``n_trials``, ``n_jobs``, ``params``), so a config written for it
works after ``override hydra/sweeper: medkit_optuna``. Samplers and pruners are config groups
(``hydra/sweeper/sampler``, ``hydra/sweeper/pruner``) holding a ``name`` (or Hydra's
``_target_``) and the class's keyword arguments::

    defaults:
      - override /hydra/sweeper: medkit_optuna
      - override /hydra/sweeper/sampler: tpe
      - override /hydra/sweeper/pruner: median
    hydra:
      sweeper:
        sampler: {seed: 123, n_startup_trials: 5}
        pruner: {n_warmup_steps: 20}
        direction: maximize
        n_trials: 20
        params:
          optimizer.lr: tag(log, interval(1e-5, 1e-3))
          scheduler: choice(linear, cosine)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

SWEEPER_TARGET = "hydra_plugins.medkit_exp_sweeper.medkit_optuna_sweeper.MedkitOptunaSweeper"

#: Options of the ``hydra/sweeper/sampler`` group (name -> Optuna class in ``optuna.samplers``).
SAMPLERS = {
    "tpe": "TPESampler",
    "random": "RandomSampler",
    "grid": "GridSampler",
    "bruteforce": "BruteForceSampler",
    "cmaes": "CmaEsSampler",
    "qmc": "QMCSampler",
    "gp": "GPSampler",
    "nsgaii": "NSGAIISampler",
    "nsgaiii": "NSGAIIISampler",
}

#: Options of the ``hydra/sweeper/pruner`` group (name -> Optuna class in ``optuna.pruners``).
PRUNERS = {
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "hyperband": "HyperbandPruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "threshold": "ThresholdPruner",
    "wilcoxon": "WilcoxonPruner",
    "none": "NopPruner",
}


@dataclass
class MedkitOptunaSweeperConf:
    """``hydra.sweeper`` of ``hydra/sweeper=medkit_optuna`` (see the README, "Hyperparameter sweeps")."""

    _target_: str = SWEEPER_TARGET
    # The sampler and pruner reach the sweeper as written: with a `_target_` (Hydra's Optuna sweeper's
    # form) Hydra would build the class itself, with our `name` key among its arguments.
    _recursive_: bool = False
    defaults: List[Any] = field(default_factory=lambda: ["_self_", {"sampler": "tpe"}, {"pruner": "median"}])

    # --- the names of Hydra's Optuna sweeper
    sampler: Any = None  # from the hydra/sweeper/sampler group: {name: tpe, seed: null, ...}
    # maximize | minimize; null follows trainer.minimize_checkpoint_metric (the task's own direction)
    direction: Optional[str] = None
    # null (in memory) | sqlite:///optuna.db | journal:./optuna.journal | postgresql://user@host/db
    storage: Optional[str] = None
    study_name: Optional[str] = None  # null: a new, unique name (set one to resume or share a study)
    n_trials: int = 20  # trials the whole study should hold, over every run and worker
    n_jobs: int = 1  # kept for configs written for Hydra's sweeper; run workers for parallel trials
    params: Optional[Dict[str, str]] = None  # search space: config path -> override grammar

    # --- ours
    pruner: Any = None  # from the hydra/sweeper/pruner group: {name: median, ...}
    # the sweep stops once more than max_failure_rate * n_trials trials of this run have failed
    max_failure_rate: float = 0.25
    heartbeat_interval: int = 30  # seconds between two "still alive" marks of a running trial
    grace_period: Optional[int] = None  # a running trial silent this long is stale (null: 4 x interval)
    stale_trial_retries: int = 1  # how often a trial whose worker died is run again


def register_configs() -> None:
    """Store the sweeper, sampler and pruner configs in Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(group="hydra/sweeper", name="medkit_optuna", node=MedkitOptunaSweeperConf, provider="medkit_exp")
    for name in SAMPLERS:
        store.store(group="hydra/sweeper/sampler", name=name, node={"name": name, "seed": None}, provider="medkit_exp")
    for name in PRUNERS:
        store.store(group="hydra/sweeper/pruner", name=name, node={"name": name}, provider="medkit_exp")
