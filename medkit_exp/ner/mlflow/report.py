"""A NER run's report on the dev set: per-label scores, confusion of entity labels, predictions.

:func:`write_dev_report` compares gold documents with the documents a model predicted and writes
into a folder::

    plots/label_scores.png         precision, recall, F1 per label (bars; gold after the data policies)
    plots/confusion_matrix.png     gold label x predicted label of entities (gold after the data policies)
    predictions/dev_scores.json    exact-span micro, macro and per-label scores against the gold after
                                   the data policies (top-level names, as evaluate_documents), and
                                   "annotated": the same against the documents as annotated,
                                   "ceiling": what the run's tagger can express of those (when given)
    predictions/dev_scores.md      the same scores as one table per label, saying which gold each uses
    predictions/dev_sample.jsonl   the first N documents: text, gold (after the data policies),
                                   gold as annotated (when it differs) and predicted entities
    predictions/dev_sample.md      the same as tables, each entity marked ok/missed/spurious/label
                                   against the gold after the data policies

Two golds: the documents *after the data policies* (``data.nested``, ``data.discontinuous``: what
the tagger learns, ``TextDocument.entities``) and the documents *as annotated* (every entity,
nesting, overlaps and discontinuity intact: ``TextDocument.annotated_entities``, see
:mod:`medkit_exp.ner.annotated_scores`). Scores are exact-match (same label, same character
spans), as :func:`medkit_exp.ner.metrics.evaluate_documents`. The confusion matrix pairs a gold
entity with a predicted one when their character spans are equal: such a pair counts in (gold
label, predicted label), on the diagonal when the labels agree. A gold entity with no prediction
on the same spans counts in the "(missed)" column, a prediction with no gold entity on its spans in
the "(spurious)" row. A boundary error (overlapping but different spans) is thus one missed and
one spurious entity, as in the strict scores.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
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
    """The first ``size`` documents with their gold (after the data policies) and predicted
    entities, and ``gold_annotated``, the entities as annotated, when the policies changed them."""
    records = []
    for gold, pred in list(zip(gold_docs, pred_docs))[:size]:
        record = {"doc_id": gold.doc_id, "text": gold.text, "gold": [entity_record(e) for e in gold.entities]}
        annotated = [entity_record(e) for e in getattr(gold, "annotated_entities", gold.entities)]
        if annotated != record["gold"]:
            record["gold_annotated"] = annotated
        record["predicted"] = [entity_record(e) for e in pred.entities]
        records.append(record)
    return records


def sample_markdown(gold_docs: Sequence[Any], pred_docs: Sequence[Any], size: int) -> str:
    """The first ``size`` documents as Markdown: the text, then one table row per entity."""
    lines = [f"# Predictions on the first {min(size, len(gold_docs))} dev documents", "",
             "Each entity is marked against the gold after the data policies (what the tagger learns); "
             "the scores against the documents as annotated are in dev_scores.md.", ""]
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
    sample_size: int = 20, title: str | None = None, ceiling: Mapping[str, float] | None = None,
) -> list[Path]:
    """Write the report files (see the module doc) under ``folder``; returns the subfolders written."""
    plots = write_report_files(gold_docs, pred_docs, labels, folder, sample_size, title, ceiling)
    draw_report_plots(**plots)
    return report_folders(folder)


def write_report_files(
    gold_docs: Sequence[Any], pred_docs: Sequence[Any], labels: Sequence[str], folder: str | Path,
    sample_size: int = 20, title: str | None = None, ceiling: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The ``predictions/`` files of the report; returns :func:`draw_report_plots`' arguments
    (JSON data, so that the plots can be drawn in another process). ``ceiling``: what
    :func:`medkit_exp.ner.annotated_scores.ceiling` gives for the run's tagger on ``gold_docs``."""
    from medkit_exp.ner.annotated_scores import annotated_scores
    from medkit_exp.ner.metrics import evaluate_documents

    folder = Path(folder)
    predictions = folder / "predictions"
    predictions.mkdir(parents=True, exist_ok=True)
    scores = evaluate_documents(gold_docs, pred_docs)
    annotated = annotated_scores(gold_docs, pred_docs)
    # the flattened scores at the top level (as before), the honest ones beside them in their own objects
    written: dict[str, Any] = {**scores, "annotated": annotated}
    if ceiling is not None:
        written["ceiling"] = dict(ceiling)
    (predictions / "dev_scores.json").write_text(json.dumps(written, indent=2, sort_keys=True), encoding="utf-8")
    (predictions / "dev_scores.md").write_text(scores_markdown(scores, annotated, ceiling, labels), encoding="utf-8")
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


def scores_markdown(
    scores: Mapping[str, float], annotated: Mapping[str, float], ceiling: Mapping[str, float] | None,
    labels: Sequence[str],
) -> str:
    """The dev scores as Markdown: one row per summary and label, the scores against the gold after
    the data policies, against the documents as annotated, and the ceiling (when known)."""
    from medkit_exp.ner.metrics import label_table

    flat_table, annotated_table = label_table(scores), label_table(annotated)
    ceilings = label_table(ceiling or {})
    lines = [
        "# Scores on the dev set (exact spans)", "",
        "- *after the data policies*: against the gold the tagger learns (data.nested, data.discontinuous "
        "applied); the plots, the confusion matrix and the prediction sample use this gold;",
        "- *as annotated*: against the documents as annotated (nesting, overlaps and discontinuity intact; "
        "a discontinuous entity is found only with all its fragments);",
        "- *ceiling*: the share of the gold as annotated that the run's tagger can express, its highest possible "
        "recall as annotated" + ("" if ceiling is not None else " (not computed: no tagger given)") + ".", "",
        "| | P (policies) | R (policies) | F1 (policies) | support (policies) "
        "| P (annotated) | R (annotated) | F1 (annotated) | support (annotated) | ceiling |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("micro", "macro", *sorted({*labels, *flat_table, *annotated_table})):
        cells = [*_markdown_cells(scores, flat_table, name), *_markdown_cells(annotated, annotated_table, name)]
        limit = (ceiling or {}).get("ceiling") if name == "micro" else ceilings.get(name, {}).get("ceiling")
        cells.append("" if limit is None or name == "macro" else f"{limit:.4f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if ceiling is not None:
        lines += ["", f"Expressible: {int(ceiling['expressible'])} of {int(ceiling['annotated'])} gold entities as annotated."]
    return "\n".join(lines) + "\n"


def _markdown_cells(scores: Mapping[str, float], table: dict[str, dict[str, float]], name: str) -> list[str]:
    if name in ("micro", "macro"):
        prefix = "" if name == "micro" else "macro_"
        values = [scores.get(prefix + metric) for metric in ("precision", "recall", "f1")]
        support = sum(row.get("support", 0) for row in table.values()) if name == "micro" else None
    else:
        values = [table.get(name, {}).get(metric) for metric in ("precision", "recall", "f1")]
        support = table.get(name, {}).get("support")
    return [*("" if v is None else f"{v:.4f}" for v in values), "" if support is None else str(int(support))]


def draw_report_plots(
    folder: str, label_table: dict[str, dict[str, float]], confusion: list[list[Any]], rows: list[str],
    columns: list[str], title: str | None = None,
) -> None:
    """``plots/label_scores.png`` and ``plots/confusion_matrix.png`` of the report in ``folder``."""
    from medkit_exp.tracking.plots import plot_confusion_matrix, plot_label_scores

    plots = Path(folder) / "plots"
    prefix = f"{title}: " if title else ""
    plot_label_scores(label_table, plots / "label_scores.png", title=f"{prefix}dev scores per label (exact spans, gold after the data policies)")
    plot_confusion_matrix({(gold, predicted): count for gold, predicted, count in confusion}, rows, columns,
                          plots / "confusion_matrix.png", title=f"{prefix}entity labels on dev (same spans, gold after the policies)",
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
