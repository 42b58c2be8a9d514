"""What a component adds to its tracked run: tags, a model, artifacts, callbacks of its own.

Tracking knows no component. A component that wants more in its MLflow run than the generic
record (params, metrics, checkpoints, learning curves) gives the :class:`MLflowCallback` an
object implementing :class:`TrackingHooks` (``MLflowCallback(hooks=[...])``, or a ``model_hooks``
factory of :func:`medkit_exp.tracking.factory.mlflow_callbacks`). Subclass :class:`NoTrackingHooks`
and override what you need:

>>> class WeightsAsModel(NoTrackingHooks):                                   # doctest: +SKIP
...     def log_model(self, checkpoint_dir, run):
...         with run.activate():
...             info = mlflow.pyfunc.log_model(name=run.model_name(), tags=run.model_tags(),
...                                            python_model=..., artifacts=...)
...         run.link_model_metrics(info.model_id)  # the best evaluation, on the model's page

The NER tagger's hooks (model flavour, dev report) are the NER package's ``mlflow`` plug-in;
``tests/tracking/test_component_hooks.py`` gives the toy classifier its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # runtime imports would pull in torch (training) and the run handle's helpers
    from medkit_exp.tracking.run_handle import RunHandle
    from medkit_exp.training.callbacks import ReadOnlyState, TrainerCallback

ModelLogger = Callable[[str, "RunHandle"], None]
ArtifactHook = Callable[["RunHandle", "ReadOnlyState"], None]


@runtime_checkable
class TrackingHooks(Protocol):
    """A component's part of its tracked run. The callback calls, in this order:

    - :meth:`run_tags` once, when the run starts: tags describing the component (a tagger's labels);
    - :meth:`callbacks` once, when the callbacks are built: Trainer callbacks the hooks need
      (e.g. one recording what the evaluations predicted), given to the Trainer beside the tracker;
    - :meth:`log_model` at the end of a FINISHED run, with the best checkpoint (else the last),
      unless model logging is off (``MLflowCallback(log_model=False)``);
    - :meth:`log_artifacts` at the end of a FINISHED or interrupted (KILLED) run.

    Optional: ``evaluation_tables()`` after each evaluation, ``{artifact file: {"columns": [...],
    "data": [[...]]}}``: facts of an evaluation that are not curves (a split's label supports),
    logged once as table artifacts (:mod:`medkit_exp.tracking.tables`); a later evaluation whose
    table differs is reported by a warning.

    The last two run in the training process with a :class:`~medkit_exp.tracking.run_handle.RunHandle`
    (``run.client``, ``run.activate()``, ``run.log_artifacts``, ``run.run_task``), only when MLflow
    is reachable; an exception is logged and the run's other data is kept.
    """

    def run_tags(self) -> Mapping[str, str]: ...

    def callbacks(self) -> Sequence[TrainerCallback]: ...

    def log_model(self, checkpoint_dir: str, run: RunHandle) -> None: ...

    def log_artifacts(self, run: RunHandle, state: ReadOnlyState) -> None: ...


class NoTrackingHooks:
    """Hooks that add nothing: a base to override what a component needs."""

    def run_tags(self) -> Mapping[str, str]:
        return {}

    def callbacks(self) -> Sequence[TrainerCallback]:
        return ()

    def log_model(self, checkpoint_dir: str, run: RunHandle) -> None:
        return None

    def log_artifacts(self, run: RunHandle, state: ReadOnlyState) -> None:
        return None

    def evaluation_tables(self) -> Mapping[str, Mapping[str, Any]]:
        return {}


class FunctionHooks(NoTrackingHooks):
    """Plain functions as hooks: ``model_logger(checkpoint_dir, run)`` and ``hook(run, state)``
    for each of ``artifact_hooks`` (the MLflowCallback's ``log_model`` and ``extra_artifacts``)."""

    def __init__(self, model_logger: ModelLogger | None = None, artifact_hooks: Sequence[ArtifactHook] = ()):
        self.model_logger = model_logger
        self.artifact_hooks = list(artifact_hooks)

    def log_model(self, checkpoint_dir: str, run: RunHandle) -> None:
        if self.model_logger is not None:
            self.model_logger(checkpoint_dir, run)

    def log_artifacts(self, run: RunHandle, state: ReadOnlyState) -> None:
        for hook in self.artifact_hooks:
            hook(run, state)
