"""Experiment tracking with MLflow: the training callback, dataset descriptions, run comparison.

Names are imported on first use (``from medkit_exp.tracking import MLflowCallback``), so that
importing this package pulls in neither torch nor mlflow.

- :class:`MLflowCallback` mirrors a run into MLflow (params, metrics, tags, datasets,
  artifacts, status), asynchronously, with a local spool when the server is away.
- :func:`describe_dataset` names, counts and fingerprints training and evaluation data.
- :func:`replay_spool` sends what a training kept while MLflow was unreachable.
- :func:`compare_runs` tabulates and plots the runs of an experiment or a sweep.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MLflowCallback": "medkit_exp.tracking.callback",
    "DatasetInfo": "medkit_exp.tracking.datasets",
    "describe_dataset": "medkit_exp.tracking.datasets",
    "dataset_digest": "medkit_exp.tracking.datasets",
    "RunHandle": "medkit_exp.tracking.run_handle",
    "resolve_tracking_uri": "medkit_exp.tracking.uris",
    "replay_spool": "medkit_exp.tracking.spool",
    "compare_runs": "medkit_exp.tracking.compare",
    "plot_learning_curves": "medkit_exp.tracking.plots",
    "mlflow_params": "medkit_exp.tracking.params",
    "redact_config": "medkit_exp.tracking.params",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
