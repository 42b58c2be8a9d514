"""The ``tracking`` config entry: the factory of a run's MLflow callbacks, completed with the run.

An adapter over :func:`medkit_exp.tracking.app.tracking_callbacks_from_config` until the tracking
package offers its own factory of this shape; then ``conf/tracking/mlflow.yaml``'s ``_target_``
names that one and this module goes. Every setting is required: its default is the schema's
(:class:`medkit_exp.schema.TrackingConfig`) and ``conf/tracking/mlflow.yaml``'s, nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medkit_exp.run_context import RunContext


def mlflow_callbacks(
    run: RunContext, *, tracking_uri: str | None, experiment_name: str, run_name: str | None,
    log_every_n_steps: int, log_checkpoints: bool, log_model: bool, validate_model: bool,
    register_model_name: str | None, model_alias: str | None, dev_report: bool, prediction_sample_size: int,
    plots: bool, system_metrics: bool, tags: Mapping[str, str], worker: bool,
) -> list[Any]:
    """The MLflow callback of the run (and the recorder of its evaluations' predictions, which
    its dev report reuses); ``run.tracking_run_id`` then returns the MLflow run's id."""
    from medkit_exp.tracking.app import tracking_callbacks_from_config

    settings = dict(
        tracking_uri=tracking_uri, experiment_name=experiment_name, run_name=run_name,
        log_every_n_steps=log_every_n_steps, log_checkpoints=log_checkpoints, log_model=log_model,
        validate_model=validate_model, register_model_name=register_model_name, model_alias=model_alias,
        dev_report=dev_report, prediction_sample_size=prediction_sample_size, plots=plots,
        system_metrics=system_metrics, tags=dict(tags), worker=worker,
    )
    callbacks = tracking_callbacks_from_config(
        settings, run.params, run.config_yaml, run.overrides, run.splits, data_source=run.data_source,
        data_name=run.data_name, parent_run_id=run.parent_run_id, extra_tags=dict(run.extra_tags),
        component=run.component, metrics_computer=run.metrics_computer,
    )
    tracker = callbacks[0]
    run.tracking_run_id = lambda: tracker.run_id
    return callbacks
