"""Hydra's entry point to the medkit_exp Optuna sweeper (``hydra/sweeper=medkit_optuna``).

Hydra accepts sweeper classes only from the ``hydra_plugins`` namespace; the implementation
lives in :mod:`medkit_exp.sweeps.sweeper`.
"""

from __future__ import annotations

from medkit_exp.sweeps import sweeper as _implementation
from medkit_exp.sweeps.config import register_configs

register_configs()


class MedkitOptunaSweeper(_implementation.OptunaSweeper):
    """Optuna ask/tell sweeper with pruning, MLflow parent/child runs, resume and shared studies."""
