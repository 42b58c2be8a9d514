"""What makes a run's logged model a first-class MLflow 3 model: a name that says what it is,
the command that made it, and its evaluation metrics linked to it.

The callback gathers it as plain data (:func:`model_context`: it travels to the tracking worker
with a task) and gives it to the hooks on their :class:`~medkit_exp.tracking.run_handle.RunHandle`
(``run.model_context``); a component's ``log_model`` hook uses it through the handle:

>>> with run.activate():                                                       # doctest: +SKIP
...     info = mlflow.pyfunc.log_model(name=run.model_name("tagger"), tags=run.model_tags(), ...)
>>> run.link_model_metrics(info.model_id)                                      # doctest: +SKIP

- the name: ``<experiment>-<kind>`` (``ner-demo-tagger``), not ``model`` in every run;
- the tags ``mlflow.source.name`` / ``mlflow.source.type``: the training's command (MLflow would
  otherwise read the process that logs, the tracking worker: ``-c``);
- the metrics: the ``eval/*`` values of the best evaluation (the checkpoint the model holds), at
  its step, with ``model_id`` and the evaluation dataset, so that the model's page lists them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from medkit_exp.tracking.best import BestValues
from medkit_exp.tracking.datasets import DatasetInfo

_NAME_CHARS = re.compile(r"[^\w.\-]+")
DEFAULT_KIND = "model"


def model_context(experiment_name: str, argv: Sequence[str], best: BestValues,
                  datasets: Sequence[DatasetInfo]) -> dict[str, Any]:
    """Plain data: the experiment's name, the source tags and the best evaluation (its metrics,
    step and dataset) of the run."""
    dataset = eval_dataset(datasets)
    return {
        "experiment_name": experiment_name,
        "source_tags": {"mlflow.source.name": str(argv[0]) if argv else "", "mlflow.source.type": "LOCAL"},
        "evaluation": {
            "metrics": dict(best.values), "step": best.step, "timestamp": best.timestamp,
            "dataset_name": dataset.name if dataset else None, "dataset_digest": dataset.digest if dataset else None,
        },
    }


def eval_dataset(datasets: Sequence[DatasetInfo]) -> DatasetInfo | None:
    """The dataset the evaluations scored: the eval dataset named ``*-dev``, else the first eval one."""
    evaluated = [info for info in datasets if info.context == "eval"]
    dev = [info for info in evaluated if info.name.endswith("-dev")]
    return (dev or evaluated or [None])[0]


def model_name(context: Mapping[str, Any], kind: str = DEFAULT_KIND) -> str:
    """``<experiment>-<kind>`` in the characters MLflow accepts in a model's name."""
    experiment = str(context.get("experiment_name") or "")
    name = f"{experiment}-{kind}" if experiment else kind
    return _NAME_CHARS.sub("-", name).strip("-") or DEFAULT_KIND


def link_model_metrics(client: Any, run_id: str, model_id: str, context: Mapping[str, Any]) -> int:
    """Log the best evaluation's metrics for ``model_id`` (with its dataset, at its step); their count."""
    from mlflow.entities import Metric

    evaluation = context.get("evaluation") or {}
    metrics, step = evaluation.get("metrics") or {}, evaluation.get("step")
    if not metrics or step is None:
        return 0
    # the evaluation's own timestamp: the run already has these points, MLflow keeps them once
    timestamp = evaluation.get("timestamp") or int(time.time() * 1000)
    dataset = {"dataset_name": evaluation.get("dataset_name"), "dataset_digest": evaluation.get("dataset_digest")}
    if None in dataset.values():
        dataset = {}
    client.log_batch(run_id, metrics=[
        Metric(key, float(value), int(timestamp), int(step), model_id=model_id, run_id=run_id, **dataset)
        for key, value in metrics.items()
    ])
    return len(metrics)
