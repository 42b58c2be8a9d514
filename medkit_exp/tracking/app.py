"""The MLflow callback as the application's ``tracking`` config describes it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from medkit_exp.tracking.callback import MLflowCallback
from medkit_exp.tracking.datasets import describe_dataset
from medkit_exp.tracking.ner_hooks import NERTrackingHooks


def tracking_callbacks_from_config(
    tracking: Mapping[str, Any],
    params: Mapping[str, Any],
    config_yaml: str,
    overrides: Sequence[str],
    splits: Mapping[str, Sequence[Any]],
    data_source: str,
    data_name: str,
    parent_run_id: str | None = None,
    extra_tags: Mapping[str, str] | None = None,
    component: Any = None,
    metrics_computer: Any = None,
) -> list[Any]:
    """The callbacks that track one application run: an :class:`MLflowCallback` (resolved config
    as params and artifact, command-line overrides, each data split as a dataset input, and for
    a tagger the best checkpoint as a pyfunc model and a report on the dev split) and, given the
    Trainer's ``metrics_computer`` (which evaluates on the dev split), the recorder of the
    evaluations' predictions, which the dev report reuses. A sweep trial passes its sweep's
    ``parent_run_id`` and ``extra_tags`` (study name, trial number). ``component``, the one being
    trained, predicts the dev report when its final weights are the best checkpoint's and no
    evaluation was recorded; a tagger's label map is recorded as run tags (:func:`component_tags`)."""
    datasets = [
        describe_dataset(f"{data_name}-{split}", documents, data_source, context="training" if split == "train" else "eval")
        for split, documents in splits.items()
    ]
    dev_report = tracking.get("dev_report", True)
    hooks = ner_hooks_from_config(tracking, splits.get("dev"), component, metrics_computer if dev_report else None)
    model_logger, artifact_hooks = hooks.callback_hooks(tracking.get("log_model", True), dev_report)
    callback = MLflowCallback(
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
        tags={**(tracking.get("tags") or {}), **component_tags(component), **(extra_tags or {})},
        parent_run_id=parent_run_id,  # a sweep trial: child of the sweep's run
        log_model=model_logger,
        extra_artifacts=artifact_hooks,
        worker=tracking.get("worker", True),
    )
    return [callback] + ([hooks.recorder] if hooks.recorder is not None else [])


def ner_hooks_from_config(
    tracking: Mapping[str, Any], dev_documents: Sequence[Any] | None, component: Any = None,
    metrics_computer: Any = None,
) -> NERTrackingHooks:
    """The model and dev-report hooks (they act only when the run's checkpoints are taggers)."""
    sample_size = tracking.get("prediction_sample_size", 20)
    if sample_size < 0:
        from medkit_exp.errors import ConfigError

        raise ConfigError("tracking.prediction_sample_size", f"must be >= 0, got {sample_size}")
    return NERTrackingHooks(
        dev_documents, registered_model_name=tracking.get("register_model_name"),
        model_alias=tracking.get("model_alias"), sample_size=sample_size, trained_component=component,
        validate_model=tracking.get("validate_model", False), metrics_computer=metrics_computer,
    )


def component_tags(component: Any) -> dict[str, str]:
    """Run tags describing the component: a tagger's head, ``tagger.label_map`` (its tags in row
    order) and ``tagger.label_map_origin`` (new head, or the rows kept from a pretrained one)."""
    label_map = getattr(component, "label_map", None)
    mlflow_tags = getattr(label_map, "mlflow_tags", None)
    return dict(mlflow_tags()) if callable(mlflow_tags) else {}
