"""The MetricsComputer protocol (medkit-compatible) and the inputs it accumulates."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Protocol, runtime_checkable

from medkit_exp.training.batch import BatchData


@runtime_checkable
class MetricsComputer(Protocol):
    """Computes evaluation metrics from the outputs of every batch.

    ``prepare_batch`` is called per batch and its lists are concatenated across batches;
    ``compute`` receives them all. A computer may also define ``metric_names`` (a list of the
    names ``compute`` returns), which lets the Trainer check tracked metrics before training.
    """

    def prepare_batch(self, model_output: BatchData, input_batch: BatchData) -> dict[str, list[Any]]:
        """Return the per-batch data needed by ``compute`` (e.g. references and predictions)."""

    def compute(self, all_data: dict[str, list[Any]]) -> dict[str, float]:
        """Return the metrics computed on the concatenated data of all batches."""


def declared_metric_names(computer: MetricsComputer | None) -> list[str] | None:
    """The names ``computer`` declares it computes; [] without a computer (only the loss), None
    when it does not say (known once it has run)."""
    return [] if computer is None else getattr(computer, "metric_names", None)


class MetricInputs:
    """What ``prepare_batch`` returned for each batch since the last reset, concatenated per key.

    >>> inputs = MetricInputs()
    >>> inputs.add({"predictions": [1, 0]}); inputs.add({"predictions": [1]})
    >>> inputs.state_dict()
    {'predictions': [1, 0, 1]}
    """

    def __init__(self) -> None:
        self.lists: defaultdict[str, list[Any]] = defaultdict(list)

    def add(self, prepared: dict[str, list[Any]]) -> None:
        for key, values in prepared.items():
            self.lists[key].extend(values)

    def __bool__(self) -> bool:
        return bool(self.lists)

    def compute(self, computer: MetricsComputer) -> dict[str, float]:
        return computer.compute(dict(self.lists))

    def reset(self) -> None:
        self.lists = defaultdict(list)

    def state_dict(self) -> dict[str, list[Any]]:
        return dict(self.lists)

    def load_state_dict(self, state: dict[str, list[Any]]) -> None:
        self.lists = defaultdict(list, state)
