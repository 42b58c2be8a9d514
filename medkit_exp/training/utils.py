"""medkit's module path ``medkit.training.utils``: :class:`BatchData` is defined in
:mod:`medkit_exp.training.batch`, :class:`MetricsComputer` in :mod:`medkit_exp.training.metrics`."""

from medkit_exp.training.batch import BatchData
from medkit_exp.training.metrics import MetricsComputer

__all__ = ["BatchData", "MetricsComputer"]
