"""``python -m medkit_exp.evaluate checkpoint=PATH [split=dev|test|train] [+experiment=...] [data=...]``

Evaluates a saved tagger on a split of the configured corpus (``conf/evaluate.yaml``: the same
groups as training, so an experiment overlay picks the same corpus and policies). Three sets of
strict entity-level metrics (micro, macro, per label) and a ceiling:

- ``words``: entities decoded from word tags, exactly as the training evaluation computes them
  (``eval/*`` in MLflow; equal to seqeval's strict mode), plus the loss, against the gold after
  the data policies (``data.nested``, ``data.discontinuous``);
- ``spans``: entities of the predicted documents against the gold documents after the data
  policies, matched on label and exact character spans;
- ``annotated``: the same predicted entities against the documents as annotated (every entity,
  nesting, overlaps and discontinuity intact; a discontinuous entity is found only with all its
  fragments): what a user of the predictions sees, see :mod:`medkit_exp.ner.annotated_scores`;
- ``ceiling``: the share of those annotated entities the tagger's representation can express on
  the split (overall, ``expressible`` of ``annotated``, and ``labels/<label>/ceiling``): the
  recall a perfect model of this tagger would reach in ``annotated``.

They are printed as two tables (policy-flattened gold; gold as annotated with the ceiling) and
written to ``metrics.json`` and ``metrics.yaml`` in the run folder (with
``predictions_<split>.jsonl``); with ``tracking=mlflow`` they are also logged to MLflow (names in
:func:`flat_metrics`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from medkit_exp.conf_location import config_dir
from medkit_exp.errors import ConfigError
from medkit_exp.schema import EvaluateConfig

logger = logging.getLogger("medkit_exp.evaluate")

SPLITS = ("dev", "test", "train")
#: predict's precision for the training's: predict has no fp16 (a CUDA-only training setting): fp32
PREDICT_PRECISION = {"32": "fp32", "bf16": "bf16", "fp16": "fp32"}
METRICS_FILE = "metrics.json"

ConfigStore.instance().store(name="medkit_exp_evaluate_schema", node=EvaluateConfig)


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="evaluate")
def main(cfg: DictConfig) -> float | None:
    """Evaluate ``checkpoint`` on ``split``; return the word-level ``optimized_metric``."""
    from medkit_exp.app_setup import quiet_third_party
    from medkit_exp.cli import report_errors  # here: --help need not register the training schema

    quiet_third_party()  # no third-party progress bars or load report

    return report_errors(lambda: evaluate(cfg))


def evaluate(cfg: DictConfig) -> float | None:
    from medkit_exp.config_check import check_config

    check_config(cfg, EvaluateConfig)  # unknown keys (with +) and misused options, before any work
    from medkit_exp.inference import check_batch_size, find_model_folder, load_tagger, predict_documents
    from medkit_exp.ner.data import load_corpus
    from medkit_exp.training.precision import resolve_precision

    if cfg.split not in SPLITS:
        raise ConfigError("split", f"must be one of {', '.join(SPLITS)}, got {cfg.split!r}")
    folder = find_model_folder(cfg.checkpoint, "checkpoint", cfg.which)
    default_batch_size = cfg.trainer.eval_batch_size or cfg.trainer.batch_size
    batch_size = check_batch_size(cfg.batch_size if cfg.batch_size is not None else default_batch_size)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # digests verified by find_model_folder; non-finite weights refused here, before the corpus loads
    tagger = load_tagger(folder, "checkpoint", cfg.device, verify=False)
    # The training evaluation's precision (trainer.precision, "auto" resolved on this device), so
    # that the word-level scores and loss recompute what the run logged.
    precision = resolve_precision(str(cfg.trainer.precision), tagger.device)
    gold = load_corpus(OmegaConf.to_object(cfg.data), only=[cfg.split])[cfg.split]
    logger.info("Evaluating %s on %s/%s (%d documents, precision %s)", folder, cfg.data.name, cfg.split, len(gold),
                precision)
    words = word_level_metrics(tagger, gold, batch_size, cfg.metrics.name, precision)
    predicted = predict_documents(tagger, gold, batch_size, PREDICT_PRECISION[precision])
    from medkit_exp.ner.annotated_scores import annotated_scores, ceiling
    from medkit_exp.ner.metrics import evaluate_documents

    report = {
        "checkpoint": str(folder.resolve()), "data": cfg.data.name, "split": cfg.split, "documents": len(gold),
        "precision": precision, "prediction_precision": PREDICT_PRECISION[precision],
        "entities": sum(len(doc.entities) for doc in gold),
        "annotated_entities": sum(len(doc.annotated_entities) for doc in gold),
        "words": words, "spans": evaluate_documents(gold, predicted),
        "annotated": annotated_scores(gold, predicted), "ceiling": ceiling(tagger, gold),
    }
    files = write_report(report, output_dir)
    if cfg.save_predictions:
        from medkit_exp.ner.formats import write_jsonl

        files.append(write_jsonl(predicted, output_dir / f"predictions_{cfg.split}.jsonl"))
    print(format_report(report, tagger.labels), flush=True)
    print(f"\nMetrics written to {files[0]}", flush=True)
    from medkit_exp.tracking.options import tracking_on

    if tracking_on(cfg):
        log_to_mlflow(OmegaConf.to_container(cfg.tracking, resolve=True), report, files)
    return words.get(cfg.optimized_metric)


def word_level_metrics(
    tagger: Any, documents: list[Any], batch_size: int, metrics_name: str = "entity", precision: str = "32"
) -> dict[str, float]:
    """Loss and strict entity metrics on word tags, computed as the Trainer's evaluation does
    (same windows, batches in order, forward passes under the Trainer's autocast for
    ``precision``, loss averaged over batches in float32), by the computer ``metrics.name`` names
    (ours, or seqeval's)."""
    import torch
    from tqdm.auto import tqdm

    from medkit_exp.ner.metrics import label_metric
    from medkit_exp.ner.seqeval_metrics import make_metrics_computer
    from medkit_exp.training.precision import autocast

    started = time.perf_counter()
    computer = make_metrics_computer(metrics_name, tagger)
    items = [tagger.preprocess(doc) for doc in documents]
    total_loss, nb_batches = torch.zeros(()), 0
    data: dict[str, list[Any]] = defaultdict(list)
    starts = range(0, len(items), batch_size)
    with torch.inference_mode():
        for start in tqdm(starts, desc="evaluate", unit="batch", leave=False, disable=not sys.stderr.isatty()):
            batch = tagger.collate(items[start : start + batch_size]).to_device(tagger.device)
            with autocast(precision, tagger.device):
                output, loss = tagger.forward(batch, return_loss=True, eval_mode=True)
            total_loss += loss.detach().float().cpu()
            nb_batches += 1
            for key, values in computer.prepare_batch(output, batch).items():
                data[key].extend(values)
    metrics = {"loss": (total_loss / max(nb_batches, 1)).item(), **computer.compute(dict(data))}
    # a one-off evaluation shows each label's gold count in its table (the Trainer's evaluation
    # keeps supports out of its curves: the computer holds them apart)
    metrics.update({label_metric(label, "support"): float(n) for label, n in computer.supports.items()})
    logger.info("Word-level evaluation of %d documents in %.1fs", len(documents), time.perf_counter() - started)
    return metrics


def write_report(report: dict[str, Any], output_dir: Path) -> list[Path]:
    import yaml

    json_path, yaml_path = output_dir / METRICS_FILE, output_dir / "metrics.yaml"
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    yaml_path.write_text(yaml.safe_dump(report, sort_keys=False), encoding="utf-8")
    return [json_path, yaml_path]


def format_report(report: dict[str, Any], labels: list[str]) -> str:
    """Two tables: the word and span metric sets side by side against the gold after the data
    policies (micro, macro, then one row per label), then the span metrics against the documents
    as annotated with each label's ceiling."""
    from medkit_exp.ner.metrics import label_table

    words, spans = report["words"], report["spans"]
    tables = (label_table(words), label_table(spans))
    seen = sorted({*labels, *tables[0], *tables[1]})
    columns = ("precision", "recall", "f1", "support")
    header = f"{'':<16}" + "".join(f"{c:>10}" for c in columns) + "   |" + "".join(f"{c:>10}" for c in columns)
    lines = [
        f"Evaluation of {report['checkpoint']}",
        f"on {report['data']}/{report['split']}: {report['documents']} documents, {report['entities']} gold entities "
        f"after the data policies, {report.get('annotated_entities', report['entities'])} as annotated",
        "",
        "Against the gold after the data policies (data.nested, data.discontinuous):",
        f"{'':<16}{'entities on words (= training eval)':^40}   |{'entities on exact character spans':^40}",
        header,
        "-" * len(header),
    ]
    for name in ("micro", "macro", *seen):
        cells = [_row(metrics, table, name, columns) for metrics, table in zip((words, spans), tables)]
        lines.append(f"{name:<16}" + cells[0] + "   |" + cells[1])
    if "annotated" in report:
        lines += ["", *_annotated_table(report, labels)]
    lines.append(f"\nword-level loss: {words['loss']:.4f}")
    return "\n".join(lines)


def _row(metrics: dict[str, float], table: dict[str, dict[str, float]], name: str, columns: tuple[str, ...]) -> str:
    """The cells of one row (micro, macro or a label) of one metric set."""
    if name in ("micro", "macro"):
        prefix = "" if name == "micro" else "macro_"
        values = [metrics.get(prefix + column) for column in columns[:3]]
        # the micro support is every gold entity; a macro average has none
        values.append(sum(row.get("support", 0) for row in table.values()) if name == "micro" else None)
    else:
        values = [table.get(name, {}).get(column) for column in columns]
    return "".join(_cell(value, column) for value, column in zip(values, columns))


def _annotated_table(report: dict[str, Any], labels: list[str]) -> list[str]:
    """The span metrics against the documents as annotated, with the ceiling of each row."""
    from medkit_exp.ner.metrics import label_table

    annotated, limits = report["annotated"], report["ceiling"]
    table, ceilings = label_table(annotated), label_table(limits)
    columns = ("precision", "recall", "f1", "support")
    header = f"{'':<16}" + "".join(f"{c:>10}" for c in columns) + f"{'ceiling':>10}"
    lines = [
        "Against the documents as annotated (nesting, overlaps, discontinuity intact; exact spans):",
        f"{'':<16}{'entities on exact character spans (as annotated)':^50}",
        header,
        "-" * len(header),
    ]
    for name in ("micro", "macro", *sorted({*labels, *table})):
        limit = limits.get("ceiling") if name == "micro" else ceilings.get(name, {}).get("ceiling")
        lines.append(f"{name:<16}" + _row(annotated, table, name, columns) + _cell(limit, "ceiling"))
    lines.append(
        f"ceiling: the share of the gold entities as annotated that this tagger's representation can "
        f"express ({int(limits['expressible'])} of {int(limits['annotated'])}): its highest possible recall here"
    )
    words = report["words"]
    if "annotated/f1" in words:  # the word level's own, as the training evaluation computes them
        values = ", ".join(f"{name} {words[f'annotated/{name}']:.4f}"
                           for name in ("precision", "recall", "f1", "ceiling") if f"annotated/{name}" in words)
        lines.append(f"on words (= training eval, eval/annotated/*): {values}")
    return lines


def _cell(value: float | None, column: str) -> str:
    if value is None:
        return f"{'':>10}"
    return f"{int(value):>10d}" if column == "support" else f"{value:>10.4f}"


def flat_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The MLflow names: ``<split>/<metric>`` for the word level (as ``eval/<metric>``),
    ``<split>/spans_<metric>`` for the spans against the gold after the data policies, and
    ``<split>/spans_annotated/<metric>`` for the spans against the documents as annotated and the
    ceiling (``<split>/spans_annotated/ceiling``, ``.../expressible``, ``.../annotated``,
    ``.../labels/<label>/ceiling``). ``spans_annotated``, not ``annotated``: the word level of a
    tagger that computes them has its own window-level ``annotated/*`` metrics (as in training)."""
    split = report["split"]
    flat = {f"{split}/{key}": value for key, value in report["words"].items()}
    flat.update({f"{split}/spans_{key}": value for key, value in report["spans"].items()})
    for part in ("annotated", "ceiling"):  # distinct names: ceiling, expressible, annotated, labels/<L>/ceiling
        flat.update({f"{split}/spans_annotated/{key}": value for key, value in report.get(part, {}).items()})
    return flat


def log_to_mlflow(tracking: dict[str, Any], report: dict[str, Any], files: list[Path]) -> str:
    """Log the metrics and files to ``$MLFLOW_RUN_ID``'s run when it exists in the store (under
    ``mlflow run``), else to a new run ``evaluate-<split>``; returns the run id."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    from medkit_exp.redaction import redact_url, redact_value
    from medkit_exp.tracking.messages import now_ms
    from medkit_exp.tracking.ops import get_or_create_experiment
    from medkit_exp.tracking.store import prepare_store
    from medkit_exp.tracking.uris import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking.get("tracking_uri"))
    prepare_store(uri)  # created and migrated once, under its lock (parallel evaluations)
    client = MlflowClient(uri)
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if run_id:
        try:
            client.get_run(run_id)
        except Exception:  # noqa: BLE001 - not in this store: a run of its own
            logger.warning("MLFLOW_RUN_ID %s is not a run of %s: logging to a new run", run_id, uri)
            run_id = None
    if not run_id:
        name = tracking.get("experiment_name") or "medkit_exp"
        experiment_id = get_or_create_experiment(client, name)  # tagged as one of model training
        run_name = tracking.get("run_name") or f"evaluate-{report['split']}"
        run_id = client.create_run(experiment_id, run_name=run_name).info.run_id
    timestamp = now_ms()
    # Own names: `mlflow run` logs its entry point's parameters (checkpoint, split) as given.
    params = [Param(f"evaluate.{key}", redact_value(str(report[key])))
              for key in ("checkpoint", "data", "split", "precision", "prediction_precision")]
    metrics = [Metric(key, float(value), timestamp, 0) for key, value in flat_metrics(report).items()]
    client.log_batch(run_id, metrics=metrics, params=params, tags=[])
    client.set_tag(run_id, "task", "evaluate")
    for path in files:
        client.log_artifact(run_id, str(path), artifact_path="evaluation")
    if not os.environ.get("MLFLOW_RUN_ID") == run_id:  # `mlflow run` ends its own run
        client.set_terminated(run_id, "FINISHED")
    logger.info("Evaluation logged to MLflow run %s (%s)", run_id, redact_url(uri))
    print(f"MLflow run: {run_id} ({redact_url(uri)})", flush=True)
    return run_id


if __name__ == "__main__":
    from medkit_exp.config_compose import check_command_line_or_exit

    check_command_line_or_exit(EvaluateConfig)  # one line and exit code 2 for an unknown key, before Hydra
    main()
