"""The MLflow tracking of a run, built from its config entry and the run (:class:`RunContext`).

``conf/tracking/mlflow.yaml`` names :func:`mlflow_callbacks` with ``_partial_: true``; the
application completes it with ``run=``. Its ``model_hooks`` are the components' factories of
:class:`~medkit_exp.tracking.hooks.TrackingHooks` (the tagger's: ``ner_tracking_hooks`` of the
NER package's ``mlflow`` plug-in), each called as ``factory(run=run)``.

>>> from functools import partial                                                          # doctest: +SKIP
>>> callbacks = mlflow_callbacks(run, model_hooks=[partial(my_hooks, weights_name="model")],
...                              tracking_uri="sqlite:///mlflow.db", experiment_name="demo")  # doctest: +SKIP
>>> Trainer(component, config, train, dev, callback=callbacks).train()                        # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from medkit_exp.errors import ConfigError
from medkit_exp.run_context import RunContext
from medkit_exp.training.callbacks import TrainerCallback
from medkit_exp.tracking.callback import MLflowCallback
from medkit_exp.tracking.datasets import describe_dataset
from medkit_exp.tracking.hooks import TrackingHooks


def mlflow_callbacks(
    run: RunContext, *, model_hooks: Sequence[Callable[..., TrackingHooks]] = (), **settings: Any
) -> list[TrainerCallback]:
    """The callbacks that track ``run``: an :class:`MLflowCallback`, then the callbacks the hooks need.

    The callback records ``run.params`` (params), ``run.config_yaml`` and ``run.overrides``
    (artifacts), each of ``run.splits`` as a dataset input (``<data_name>-<split>``, context
    ``training`` for ``train``, else ``eval``), and a sweep trial's ``run.parent_run_id`` and
    ``run.extra_tags``. ``settings`` are :class:`MLflowCallback`'s arguments (the keys of
    ``conf/tracking/mlflow.yaml``: tracking_uri, experiment_name, run_name, log_every_n_steps,
    plots, system_metrics, tags, log_model, worker...), except ``log_checkpoints``, a bool here:
    true uploads the best checkpoint. ``run.tracking_run_id`` then returns the MLflow run's id.
    A hooks factory's :class:`ConfigError` is named ``model_hooks.<index>.<its key>``.
    """
    hooks = [_hooks(index, factory, run) for index, factory in enumerate(model_hooks)]
    if "log_checkpoints" in settings:
        settings["log_checkpoints"] = "best" if settings["log_checkpoints"] else None
    datasets = [
        describe_dataset(f"{run.data_name}-{split}", documents, run.data_source,
                         context="training" if split == "train" else "eval")
        for split, documents in run.splits.items()
    ]
    tags = {**(settings.pop("tags", None) or {}), **run.extra_tags}
    callback = MLflowCallback(
        params=run.params, config_yaml=run.config_yaml, overrides=list(run.overrides), datasets=datasets,
        tags=tags, parent_run_id=run.parent_run_id, hooks=hooks, **settings,
    )
    run.tracking_run_id = lambda: callback.run_id
    run.tracking_experiment_id = lambda: callback.experiment_id
    run.tracking_uri = lambda: callback.resolved_tracking_uri
    return [callback, *(c for h in hooks for c in h.callbacks())]


def _hooks(index: int, factory: Callable[..., TrackingHooks], run: RunContext) -> TrackingHooks:
    """``factory(run=run)``; its ConfigError named as the ``model_hooks`` entry's key."""
    try:
        return factory(run=run)
    except ConfigError as error:
        raise ConfigError(f"model_hooks.{index}.{error.key}", error.message, lead=error.lead) from error
