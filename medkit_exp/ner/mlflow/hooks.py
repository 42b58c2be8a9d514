"""The NER tagger's part of its tracked run (a :class:`~medkit_exp.tracking.hooks.TrackingHooks`):
its label map as run tags, its model, its report on the dev set.

>>> from functools import partial                                                        # doctest: +SKIP
>>> callbacks = mlflow_callbacks(run, model_hooks=[partial(ner_tracking_hooks, register_model_name="ner-demo")],
...                              tracking_uri="sqlite:///mlflow.db", experiment_name="ner-demo")  # doctest: +SKIP

Both the model and the report work on the run's best checkpoint (else its last) when it is a
medkit_exp tagger folder (it has ``medkit_exp_tagger.json``); for any other component they log
nothing and say so. The model is logged in a thread while the dev report is written, or in the
tracking worker when the run has one.

- :meth:`NERTrackingHooks.log_model`: the pyfunc model ``<experiment>-tagger`` (see
  :mod:`medkit_exp.ner.mlflow.model`), with a signature (and, when MLflow validates it, an input
  example made of the first dev texts); registered under ``registered_model_name`` (with
  ``model_alias``) when given.
- :meth:`NERTrackingHooks.log_artifacts`: the dev report: per-label bars, confusion matrix and a
  sample of predictions against the dev gold after the data policies, and the scores against the
  dev documents as annotated (``run.splits["dev"]`` keeps them: see
  :func:`medkit_exp.ner.data.load_corpus`) with the ceiling of the run's tagger (see
  :mod:`medkit_exp.ner.mlflow.report`). Given the Trainer's metrics
  computer, the report reuses what the evaluation at the checkpoint's step predicted (the hooks'
  :meth:`~NERTrackingHooks.callbacks` record it); else the checkpoint predicts the dev set.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medkit_exp.ner.mlflow.recorder import EvalPredictionRecorder
from medkit_exp.ner.mlflow.tasks import log_model_task
from medkit_exp.ner.tagger_files import TAGGER_CONFIG
from medkit_exp.run_context import RunContext
from medkit_exp.tracking.callback import ARTIFACTS_DIR
from medkit_exp.tracking.hooks import NoTrackingHooks
from medkit_exp.training.callbacks import TrainerCallback

logger = logging.getLogger(__name__)

REPORT_DIR = "dev_report"
SUPPORTS_TABLE = "data/label_supports.json"


def ner_tracking_hooks(
    run: RunContext, *, register_model_name: str | None = None, model_alias: str | None = None,
    prediction_sample_size: int = 20, validate_model: bool = False, dev_report: bool = True,
) -> NERTrackingHooks:
    """The hooks of a tagger run from its settings (a ``model_hooks`` factory of
    :func:`medkit_exp.tracking.factory.mlflow_callbacks`): the dev split is ``run.splits["dev"]``,
    the tagger trained ``run.component``, and with ``dev_report`` the report reuses the evaluations
    of ``run.metrics_computer``."""
    if prediction_sample_size < 0:
        from medkit_exp.errors import ConfigError

        raise ConfigError("prediction_sample_size", f"must be >= 0, got {prediction_sample_size}")
    return NERTrackingHooks(
        run.splits.get("dev"), registered_model_name=register_model_name, model_alias=model_alias,
        sample_size=prediction_sample_size, trained_component=run.component, validate_model=validate_model,
        metrics_computer=run.metrics_computer if dev_report else None, dev_report=dev_report,
        supports_from=run.metrics_computer,
    )


def component_tags(component: Any) -> dict[str, str]:
    """Run tags describing the component: a tagger's head, ``tagger.label_map`` (its tags in row
    order) and ``tagger.label_map_origin`` (new head, or the rows kept from a pretrained one)."""
    label_map = getattr(component, "label_map", None)
    mlflow_tags = getattr(label_map, "mlflow_tags", None)
    return dict(mlflow_tags()) if callable(mlflow_tags) else {}


class NERTrackingHooks(NoTrackingHooks):
    """The tracking hooks of a tagger run (one instance per run).

    Parameters
    ----------
    dev_documents: the dev split (gold documents, with their entities as annotated when loaded by
        ``load_corpus``); None or empty: no report, input example ``example_texts`` only.
    registered_model_name, model_alias: register the logged model and point the alias at it.
    sample_size: documents in the prediction sample.
    example_texts: input example of the model when there is no dev split.
    batch_size: prediction batch size.
    trained_component: the tagger being trained: its label map is the run's tags, and when its
        final weights are those of the checkpoint reported on (the last checkpoint, saved at the
        final step), it predicts the dev set instead of a copy loaded from the checkpoint folder.
    validate_model: log the model with an input example, which MLflow validates (it loads the
        logged model and predicts it); without, the model has no input example.
    metrics_computer: the Trainer's :class:`~medkit_exp.ner.metrics.EntityMetricsComputer`,
        when the Trainer evaluates on ``dev_documents``: :attr:`recorder` (one of
        :meth:`callbacks`) then keeps what each evaluation predicted, and the report takes the
        predictions of the evaluation at the reported checkpoint's step instead of predicting the
        dev set again (when they do not fit the dev documents, it predicts).
    dev_report: write and log the dev report at the end of the run.
    supports_from: the Trainer's metrics computer, whose ``supports`` ({label: count} of the dev
        split, after each evaluation) are the table ``data/label_supports.json``
        (:meth:`evaluation_tables`), logged once instead of a flat curve per label.

    When the run's MLflow work is done in a tracking worker (``run.remote``), the model is logged
    there, at once, while this process writes the dev report; the report's plots are drawn there too.
    """

    def __init__(
        self,
        dev_documents: Sequence[Any] | None = None,
        registered_model_name: str | None = None,
        model_alias: str | None = None,
        sample_size: int = 20,
        example_texts: Sequence[str] = ("Fever and cough since Monday.",),
        batch_size: int = 32,
        trained_component: Any = None,
        validate_model: bool = False,
        metrics_computer: Any = None,
        dev_report: bool = True,
        supports_from: Any = None,
    ):
        if model_alias and not registered_model_name:
            from medkit_exp.errors import ConfigError

            raise ConfigError("model_alias", "an alias needs register_model_name")
        self.dev_documents = list(dev_documents or [])
        self.registered_model_name = registered_model_name or None
        self.model_alias = model_alias or None
        self.sample_size = sample_size
        self.example_texts = list(example_texts)
        self.batch_size = batch_size
        self.trained_component = trained_component
        self.validate_model = validate_model
        self.dev_report = dev_report
        self.supports_from = supports_from
        self.recorder = (
            EvalPredictionRecorder(metrics_computer)
            if self.dev_documents and callable(getattr(metrics_computer, "start_recording", None)) else None
        )
        self._loaded: tuple[str, Any] | None = None  # (checkpoint, tagger)
        self._predicted: tuple[str, list[Any]] | None = None  # (checkpoint, dev predictions)
        # The model is logged in a thread once the dev set is predicted (two threads running torch
        # at once slow each other down), while the report is drawn and uploaded
        self._background = dev_report and bool(self.dev_documents)
        self._model_thread: threading.Thread | None = None
        self._pending_model: tuple[str, Any] | None = None  # (checkpoint, run) to log in the background

    def run_tags(self) -> Mapping[str, str]:
        return component_tags(self.trained_component)

    def callbacks(self) -> Sequence[TrainerCallback]:
        return [self.recorder] if self.recorder is not None else []

    def evaluation_tables(self) -> Mapping[str, Mapping[str, Any]]:
        """The dev split's label supports (entities per label), as the evaluations counted them."""
        supports = getattr(self.supports_from, "supports", None)
        if not supports:
            return {}
        rows = [["dev", str(label), int(count)] for label, count in sorted(supports.items())]
        return {SUPPORTS_TABLE: {"columns": ["split", "label", "support"], "data": rows}}

    # ------------------------------------------------------------------ hooks
    def log_model(self, checkpoint_dir: str, run: Any) -> None:
        """The callback's ``log_model`` hook: log the checkpoint's tagger as the run's model."""
        if not self._is_tagger(checkpoint_dir, "model"):
            return
        if getattr(run, "remote", False):  # another process: it works while this one predicts the dev set
            run.run_task(log_model_task, checkpoint_dir=str(checkpoint_dir),
                         example_texts=self._example_texts(), registered_model_name=self.registered_model_name,
                         alias=self.model_alias, validate=self.validate_model,
                         model_context=dict(getattr(run, "model_context", {}) or {}))
        elif self._background:  # started by the report hook once the dev set is predicted
            self._pending_model = (checkpoint_dir, run)
        else:
            self._log_model(checkpoint_dir, run)

    def log_artifacts(self, run: Any, state: Any) -> None:
        """The dev report: predict the dev set with the best checkpoint, log the report (and wait
        for the model logged in the background)."""
        try:
            checkpoint = state.best_checkpoint or state.last_checkpoint
            if self.dev_report and self.dev_documents and checkpoint and self._is_tagger(checkpoint, "dev report"):
                self._log_dev_report(run, state, checkpoint)
        finally:
            self._start_model_logging()
            if self._model_thread is not None:
                self._model_thread.join()
                self._model_thread = None

    def _start_model_logging(self) -> None:
        """Log the model waiting for it in a thread. Not earlier than after the dev predictions:
        two threads running torch at once on all cores each slow the other down."""
        if self._pending_model is not None:
            self._model_thread = threading.Thread(
                target=self._log_model, args=self._pending_model, name="medkit-exp-log-model", daemon=False
            )
            self._pending_model = None
            self._model_thread.start()

    def _example_texts(self) -> list[str]:
        return [doc.text for doc in self.dev_documents[:3]] or self.example_texts

    def _log_model(self, checkpoint_dir: str, run: Any) -> None:
        log_model_task(run, checkpoint_dir, self._example_texts(), self.registered_model_name, self.model_alias,
                       self.validate_model)

    def _log_dev_report(self, run: Any, state: Any, checkpoint: str) -> None:
        from medkit_exp.ner.mlflow.report import log_report, write_report_files

        self._use_trained_component(state, checkpoint)
        predictions = self.predictions(checkpoint)
        self._start_model_logging()  # file copies and MLflow calls while the report is drawn
        tagger = self._run_tagger(checkpoint)
        output_dir = Path(state.output_dir) / ARTIFACTS_DIR / REPORT_DIR
        plots = write_report_files(self.dev_documents, predictions, tagger.labels, output_dir, self.sample_size,
                                   title=Path(checkpoint).name, ceiling=self.ceiling(tagger))
        run.run_task(log_report, plots=plots)

    def ceiling(self, tagger: Any) -> dict[str, float]:
        """What ``tagger``'s representation can express of the dev documents as annotated (their
        labels, tags and decoding, not their weights: the same for every checkpoint of the run)."""
        from medkit_exp.ner.annotated_scores import ceiling

        return ceiling(tagger, self.dev_documents)

    # ------------------------------------------------------------------ cached work
    def _use_trained_component(self, state: Any, checkpoint: str) -> None:
        """Take the trained tagger as ``checkpoint``'s when it holds the same weights: the
        checkpoint is the last one and was saved at the final step."""
        from medkit_exp.ner.tagger import HFEntityMatcherTrainable
        from medkit_exp.training.checkpoint import checkpoint_name

        component = self.trained_component
        if (
            isinstance(component, HFEntityMatcherTrainable)
            and str(checkpoint) == str(state.last_checkpoint)
            and Path(checkpoint).name == checkpoint_name(state.global_step)
        ):
            self._loaded = (str(checkpoint), component)

    def _run_tagger(self, checkpoint: str) -> Any:
        """A tagger of the run, for what its weights do not change (labels, windows, decoding):
        the one trained, else ``checkpoint``'s."""
        from medkit_exp.ner.tagger import HFEntityMatcherTrainable

        if isinstance(self.trained_component, HFEntityMatcherTrainable):
            return self.trained_component
        return self.tagger(checkpoint)

    def tagger(self, checkpoint: str) -> Any:
        """The tagger saved in ``checkpoint`` (loaded once)."""
        if self._loaded is None or self._loaded[0] != str(checkpoint):
            from medkit_exp.ner.tagger import HFEntityMatcherTrainable

            self._loaded = (str(checkpoint), HFEntityMatcherTrainable.from_pretrained(checkpoint))
        return self._loaded[1]

    def predictions(self, checkpoint: str) -> list[Any]:
        """The dev documents as ``checkpoint`` predicts them (computed once): from the evaluation
        at its step when the :attr:`recorder` kept it, else predicted."""
        if self._predicted is None or self._predicted[0] != str(checkpoint):
            self._predicted = (str(checkpoint), self._recorded_predictions(checkpoint) or self._predict(checkpoint))
        return self._predicted[1]

    def _recorded_predictions(self, checkpoint: str) -> list[Any] | None:
        rows = self.recorder.rows(checkpoint) if self.recorder is not None else None
        if rows is None:
            return None
        from medkit_exp.ner.prediction import documents_from_window_tags

        documents = documents_from_window_tags(self._run_tagger(checkpoint), self.dev_documents, rows)
        if documents is None:
            logger.info("The evaluation's predictions do not fit the dev documents: predicting them again")
        else:
            logger.info("Dev report on %s: the predictions of its evaluation", Path(checkpoint).name)
        return documents

    def _predict(self, checkpoint: str) -> list[Any]:
        from medkit_exp.ner.prediction import predict

        return predict(self.tagger(checkpoint), self.dev_documents, self.batch_size)

    @staticmethod
    def _is_tagger(checkpoint_dir: str | Path, what: str) -> bool:
        if (Path(checkpoint_dir) / TAGGER_CONFIG).is_file():
            return True
        logger.info("No %s logged: %s is not a medkit_exp tagger folder (no %s)", what, checkpoint_dir, TAGGER_CONFIG)
        return False
