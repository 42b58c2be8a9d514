"""medkit's module path ``medkit.training.trainable_component``: the protocol is defined in
:mod:`medkit_exp.training.component`."""

from medkit_exp.training.component import TrainableComponent

__all__ = ["TrainableComponent"]
