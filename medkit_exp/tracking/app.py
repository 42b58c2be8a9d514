"""The MLflow callback as the application's ``tracking`` config describes it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from medkit_exp.tracking.callback import MLflowCallback
from medkit_exp.tracking.datasets import describe_dataset


def mlflow_callback_from_config(
    tracking: Mapping[str, Any],
    params: Mapping[str, Any],
    config_yaml: str,
    overrides: Sequence[str],
    splits: Mapping[str, Sequence[Any]],
    data_source: str,
    data_name: str,
) -> MLflowCallback:
    """An :class:`MLflowCallback` for one application run: resolved config as params and artifact,
    command-line overrides, and each data split as a dataset input."""
    datasets = [
        describe_dataset(f"{data_name}-{split}", documents, data_source, context="training" if split == "train" else "eval")
        for split, documents in splits.items()
    ]
    return MLflowCallback(
        tracking_uri=tracking.get("tracking_uri"),
        experiment_name=tracking.get("experiment_name"),
        run_name=tracking.get("run_name"),
        params=params,
        log_every_n_steps=tracking.get("log_every_n_steps", 5),
        log_checkpoints="best" if tracking.get("log_checkpoints", True) else None,
        plots=tracking.get("plots", True),
        system_metrics=tracking.get("system_metrics", False),
        config_yaml=config_yaml,
        overrides=list(overrides),
        datasets=datasets,
    )
