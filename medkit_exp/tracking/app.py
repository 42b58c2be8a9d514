"""TRANSITIONAL: the application's call of before issue 15, over :func:`~medkit_exp.tracking.factory.mlflow_callbacks`.

The application calls this until it builds its callbacks from config (``conf/tracking/mlflow.yaml``
naming ``medkit_exp.tracking.factory.mlflow_callbacks`` and the tagger's hooks entry
``medkit_exp.ner.mlflow.hooks.ner_tracking_hooks``); then this module goes, and with it the only
import of :mod:`medkit_exp.ner` left in :mod:`medkit_exp.tracking`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from medkit_exp.run_context import RunContext
from medkit_exp.tracking.factory import mlflow_callbacks

NER_HOOK_KEYS = ("register_model_name", "model_alias", "prediction_sample_size", "validate_model", "dev_report")


def tracking_callbacks_from_config(
    tracking: Mapping[str, Any], params: Mapping[str, Any], config_yaml: str, overrides: Sequence[str],
    splits: Mapping[str, Sequence[Any]], data_source: str, data_name: str, parent_run_id: str | None = None,
    extra_tags: Mapping[str, str] | None = None, component: Any = None, metrics_computer: Any = None,
) -> list[Any]:
    """:func:`mlflow_callbacks` with the tagger's hooks, from the ``tracking`` config as it was
    (the tagger's settings beside the tracker's)."""
    from medkit_exp.ner.mlflow.hooks import ner_tracking_hooks

    run = RunContext(
        config={}, params=params, config_yaml=config_yaml, overrides=tuple(overrides), splits=splits,
        data_name=data_name, data_source=data_source, component=component, metrics_computer=metrics_computer,
        parent_run_id=parent_run_id, extra_tags=dict(extra_tags or {}),
    )
    settings = {key: value for key, value in tracking.items() if key not in (*NER_HOOK_KEYS, "enabled")}
    ner_settings = {key: tracking[key] for key in NER_HOOK_KEYS if key in tracking}
    return mlflow_callbacks(run, model_hooks=[partial(ner_tracking_hooks, **ner_settings)], **settings)
