"""A NER run's report on the dev set: per-label scores, confusion of entity labels, predictions.

:func:`write_dev_report` compares gold documents with the documents a model predicted and writes
into a folder::

    plots/label_scores.png         precision, recall, F1 per label (bars)
    plots/confusion_matrix.png     gold label x predicted label of entities
    predictions/dev_scores.json    exact-span micro, macro and per-label scores
    predictions/dev_sample.jsonl   the first N documents: text, gold and predicted entities
    predictions/dev_sample.md      the same as tables, each entity marked ok/missed/spurious/label

Scores are exact-match (same label, same character spans), as
:func:`medkit_exp.ner.metrics.evaluate_documents`. The confusion matrix pairs a gold entity with a
predicted one when their character spans are equal: such a pair counts in (gold label, predicted
label), on the diagonal when the labels agree. A gold entity with no prediction on the same spans
counts in the "(missed)" column, a prediction with no gold entity on its spans in the
"(spurious)" row. A boundary error (overlapping but different spans) is thus one missed and one
spurious entity, as in the strict scores.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MISSED = "(missed)"
SPURIOUS = "(spurious)"


def pair_by_spans(gold: Sequence[Any], predicted: Sequence[Any]) -> tuple[list[tuple[Any, Any]], list[Any], list[Any]]:
    """Pairs of (gold, predicted) entities of one document with equal spans, the gold entities
    left alone (missed) and the predicted ones left alone (spurious). Among entities sharing
    spans, equal labels pair first."""
    predicted_by_spans: dict[tuple, list[Any]] = defaultdict(list)
    for entity in predicted:
        predicted_by_spans[tuple(entity.spans)].append(entity)
    pairs, missed, waiting = [], [], []
    for entity in gold:  # same spans and label first
        candidates = predicted_by_spans.get(tuple(entity.spans), [])
        same = next((p for p in candidates if p.label == entity.label), None)
        if same is not None:
            candidates.remove(same)
            pairs.append((entity, same))
        else:
            waiting.append(entity)
    for entity in waiting:  # then same spans, another label
        candidates = predicted_by_spans.get(tuple(entity.spans), [])
        if candidates:
            pairs.append((entity, candidates.pop(0)))
        else:
            missed.append(entity)
    spurious = [entity for candidates in predicted_by_spans.values() for entity in candidates]
    return pairs, missed, spurious


def entity_confusion(gold_docs: Sequence[Any], pred_docs: Sequence[Any]) -> Counter[tuple[str, str]]:
    """Counts of (gold label, predicted label) over paired documents (see the module doc)."""
    counts: Counter[tuple[str, str]] = Counter()
    for gold, pred in zip(gold_docs, pred_docs, strict=True):
        pairs, missed, spurious = pair_by_spans(gold.entities, pred.entities)
        counts.update((g.label, p.label) for g, p in pairs)
        counts.update((g.label, MISSED) for g in missed)
        counts.update((SPURIOUS, p.label) for p in spurious)
    return counts


def label_scores(scores: dict[str, float], labels: Sequence[str]) -> dict[str, dict[str, float]]:
    """``{label: {"precision", "recall", "f1", "support"}}`` of ``labels`` (in their order) from
    evaluate_documents' per-label names (``labels/<label>/<metric>``)."""
    from medkit_exp.ner.metrics import label_table

    table = label_table(scores)
    return {label: table[label] for label in labels if label in table}


def entity_record(entity: Any) -> dict[str, Any]:
    record = {"label": entity.label, "spans": [list(span) for span in entity.spans], "text": entity.text}
    if entity.score is not None:
        record["score"] = round(float(entity.score), 4)
    return record


def sample_records(gold_docs: Sequence[Any], pred_docs: Sequence[Any], size: int) -> list[dict[str, Any]]:
    """The first ``size`` documents with their gold and predicted entities."""
    return [
        {"doc_id": gold.doc_id, "text": gold.text,
         "gold": [entity_record(e) for e in gold.entities], "predicted": [entity_record(e) for e in pred.entities]}
        for gold, pred in list(zip(gold_docs, pred_docs))[:size]
    ]


def sample_markdown(gold_docs: Sequence[Any], pred_docs: Sequence[Any], size: int) -> str:
    """The first ``size`` documents as Markdown: the text, then one table row per entity."""
    lines = [f"# Predictions on the first {min(size, len(gold_docs))} dev documents", ""]
    for index, (gold, pred) in enumerate(list(zip(gold_docs, pred_docs))[:size]):
        pairs, missed, spurious = pair_by_spans(gold.entities, pred.entities)
        rows = [(g, g.label, p.label, "ok" if g.label == p.label else "label") for g, p in pairs]
        rows += [(g, g.label, "", "missed") for g in missed] + [(p, "", p.label, "spurious") for p in spurious]
        rows.sort(key=lambda row: row[0].spans)
        lines += [f"## {gold.doc_id or index}", "", "> " + gold.text.replace("\n", " "), ""]
        if not rows:
            lines += ["(no entity)", ""]
            continue
        lines += ["| spans | text | gold | predicted | |", "|---|---|---|---|---|"]
        for entity, gold_label, pred_label, verdict in rows:
            spans = ";".join(f"{start}-{end}" for start, end in entity.spans)
            text = (entity.text or "").replace("|", "\\|")
            lines.append(f"| {spans} | {text} | {gold_label} | {pred_label} | {verdict} |")
        lines.append("")
    return "\n".join(lines)


def write_dev_report(
    gold_docs: Sequence[Any], pred_docs: Sequence[Any], labels: Sequence[str], folder: str | Path,
    sample_size: int = 20, title: str | None = None,
) -> list[Path]:
    """Write the report files (see the module doc) under ``folder``; returns the subfolders written."""
    plots = write_report_files(gold_docs, pred_docs, labels, folder, sample_size, title)
    draw_report_plots(**plots)
    return report_folders(folder)


def write_report_files(
    gold_docs: Sequence[Any], pred_docs: Sequence[Any], labels: Sequence[str], folder: str | Path,
    sample_size: int = 20, title: str | None = None,
) -> dict[str, Any]:
    """The ``predictions/`` files of the report; returns :func:`draw_report_plots`' arguments
    (JSON data, so that the plots can be drawn in another process)."""
    from medkit_exp.ner.metrics import evaluate_documents

    folder = Path(folder)
    predictions = folder / "predictions"
    predictions.mkdir(parents=True, exist_ok=True)
    scores = evaluate_documents(gold_docs, pred_docs)
    (predictions / "dev_scores.json").write_text(json.dumps(scores, indent=2, sort_keys=True), encoding="utf-8")
    with (predictions / "dev_sample.jsonl").open("w", encoding="utf-8") as stream:
        for record in sample_records(gold_docs, pred_docs, sample_size):
            stream.write(json.dumps(record, ensure_ascii=False) + "\n")
    (predictions / "dev_sample.md").write_text(sample_markdown(gold_docs, pred_docs, sample_size), encoding="utf-8")
    counts = entity_confusion(gold_docs, pred_docs)
    others = {label for pair in counts for label in pair} - set(labels) - {MISSED, SPURIOUS}
    names = list(labels) + sorted(others)
    return {
        "folder": str(folder), "label_table": label_scores(scores, labels),
        "confusion": [[gold, predicted, count] for (gold, predicted), count in counts.items()],
        "rows": names + [SPURIOUS], "columns": names + [MISSED], "title": title,
    }


def draw_report_plots(
    folder: str, label_table: dict[str, dict[str, float]], confusion: list[list[Any]], rows: list[str],
    columns: list[str], title: str | None = None,
) -> None:
    """``plots/label_scores.png`` and ``plots/confusion_matrix.png`` of the report in ``folder``."""
    from medkit_exp.tracking.plots import plot_confusion_matrix, plot_label_scores

    plots = Path(folder) / "plots"
    prefix = f"{title}: " if title else ""
    plot_label_scores(label_table, plots / "label_scores.png", title=f"{prefix}dev scores per label (exact spans)")
    plot_confusion_matrix({(gold, predicted): count for gold, predicted, count in confusion}, rows, columns,
                          plots / "confusion_matrix.png", title=f"{prefix}entity labels on dev (same spans)",
                          blank=((SPURIOUS, MISSED),))


def report_folders(folder: str | Path) -> list[Path]:
    return [path for path in (Path(folder) / "plots", Path(folder) / "predictions") if path.is_dir()]


def log_report(run: Any, plots: dict[str, Any]) -> None:
    """An MLflow task (see :meth:`~medkit_exp.tracking.run_handle.RunHandle.run_task`): draw the plots
    of a report whose files :func:`write_report_files` wrote, upload its folders."""
    try:
        draw_report_plots(**plots)
    except Exception:  # noqa: BLE001 - the scores and the sample are still worth uploading
        logger.exception("Could not draw the dev report's plots")
    for folder in report_folders(plots["folder"]):
        run.log_artifacts(folder, folder.name)
