"""The tagger's MLflow tasks, run where the run's MLflow work is done (the tracking worker, else
the training process): see :meth:`~medkit_exp.tracking.run_handle.RunHandle.run_task`. This module is
light, so that the training process can name a task without importing MLflow."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def log_model_task(
    run: Any, checkpoint_dir: str, example_texts: list[str], registered_model_name: str | None = None,
    alias: str | None = None, validate: bool = False, model_context: dict[str, Any] | None = None,
) -> None:
    """:func:`~medkit_exp.ner.mlflow.model.log_tagger_model`, its failure logged (the run's other
    data is safe). ``model_context``: the training's ``run.model_context`` (the model's name,
    source and metrics), for a handle made where the task runs (the tracking worker)."""
    from medkit_exp.ner.mlflow.model import log_tagger_model

    if model_context is not None:
        run.model_context = dict(model_context)
    try:
        info = log_tagger_model(checkpoint_dir, run, example_texts, registered_model_name, alias, validate)
    except Exception:  # noqa: BLE001
        logger.exception("Could not log the model of %s", checkpoint_dir)
        return
    logger.info("Logged the model of %s as %s", Path(checkpoint_dir).name, info.model_uri)
