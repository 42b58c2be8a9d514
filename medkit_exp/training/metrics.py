"""The MetricsComputer protocol (medkit-compatible)."""

from __future__ import annotations

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
