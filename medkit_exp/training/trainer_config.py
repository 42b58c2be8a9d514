"""medkit's module path ``medkit.training.trainer_config``: :class:`TrainerConfig` is defined in
:mod:`medkit_exp.training.config`."""

from medkit_exp.training.config import TrainerConfig

__all__ = ["TrainerConfig"]
