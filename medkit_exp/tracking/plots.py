"""Plots (PNG): learning curves of one run (from its ``history.jsonl``) and of several runs,
per-label scores as bars, a confusion matrix.

Figures are drawn with matplotlib's Agg canvas directly (no pyplot), so the process-wide
backend is left alone and nothing needs a display.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

Series = list[tuple[int, float]]
MAX_LINES_PER_PANEL = 10


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``history.jsonl`` ("log" and "eval" lines); [] if there is none."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                logger.warning("Skipping a damaged line of %s", path)
    return records


def is_f1_like(name: str) -> bool:
    return "f1" in name.lower() or "fscore" in name.lower() or "f_score" in name.lower()


def history_series(records: list[dict[str, Any]]) -> dict[str, Series]:
    """``{"train/loss": [(step, value)], "eval/<metric>": ..., "train/learning_rate": ...}``."""
    series: dict[str, Series] = {}

    def add(name: str, step: int, value: Any) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            series.setdefault(name, []).append((int(step), float(value)))

    for record in records:
        if record.get("type") == "log":
            add("train/loss", record["step"], record.get("loss"))
            add("train/learning_rate", record["step"], record.get("learning_rate"))
        elif record.get("type") == "eval":
            add("train/loss_avg", record["step"], (record.get("train") or {}).get("loss"))
            for key, value in (record.get("eval") or {}).items():
                add(f"eval/{key}", record["step"], value)
    return series


def learning_curve_panels(series: dict[str, Series]) -> list[tuple[str, list[str]]]:
    """``(title, series names)`` of each panel: losses, f1-like eval metrics (else the other
    eval metrics), learning rate; empty panels are left out."""
    losses = [name for name in ("train/loss", "train/loss_avg", "eval/loss") if name in series]
    eval_metrics = [name for name in series if name.startswith("eval/") and name != "eval/loss"]
    f1_like = [name for name in eval_metrics if is_f1_like(name)]
    panels = [("loss", losses), ("eval f1" if f1_like else "eval metrics", (f1_like or eval_metrics)[:MAX_LINES_PER_PANEL])]
    if "train/learning_rate" in series:
        panels.append(("learning rate", ["train/learning_rate"]))
    return [(title, names) for title, names in panels if names]


def plot_learning_curves(history_path: str | Path, output_path: str | Path, title: str | None = None) -> Path | None:
    """Draw a run's learning curves to a PNG; None when the history has nothing to draw."""
    series = history_series(read_history(history_path))
    panels = learning_curve_panels(series)
    if not panels:
        return None
    figure, axes = _figure(len(panels), title)
    for axis, (panel_title, names) in zip(axes, panels):
        for name in names:
            steps, values = zip(*series[name])
            marker = "o" if name.startswith("eval/") or name.endswith("_avg") else None
            axis.plot(steps, values, marker=marker, markersize=3, linewidth=1.2, label=name)
        axis.set_title(panel_title)
        axis.set_xlabel("optimizer step")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    return _save(figure, output_path)


def log_learning_curves(run: Any, history: str, png: str, title: str | None = None) -> None:
    """An MLflow task (see :meth:`~medkit_exp.tracking.runs.RunHandle.run_task`): draw the
    learning curves of ``history`` to ``png`` and upload it under ``plots/``. A plot is never
    worth a failed run: a drawing error is logged."""
    try:
        drawn = plot_learning_curves(history, png, title=title)
    except Exception:  # noqa: BLE001
        logger.exception("Could not draw the learning curves")
        return
    if drawn is not None and run is not None:
        run.log_artifacts(drawn, "plots")


def plot_runs(curves: dict[str, dict[str, Series]], metrics: list[str], output_path: str | Path, title: str | None = None) -> Path | None:
    """One panel per metric, one line per run: ``curves[run_label][metric] = [(step, value)]``."""
    metrics = [m for m in metrics if any(run.get(m) for run in curves.values())]
    if not metrics:
        return None
    figure, axes = _figure(len(metrics), title)
    for axis, metric in zip(axes, metrics):
        for label, run_curves in curves.items():
            points = sorted(run_curves.get(metric) or [])
            if points:
                steps, values = zip(*points)
                axis.plot(steps, values, marker="o" if len(points) < 30 else None, markersize=3, linewidth=1.2, label=label)
        axis.set_title(metric)
        axis.set_xlabel("optimizer step")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    return _save(figure, output_path)


def _figure(nb_panels: int, title: str | None) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure

    # Fixed margins: a constrained layout costs more than the drawing (this runs at the end of
    # every tracked run, in its wall time).
    figure = Figure(figsize=(4.5 * nb_panels, 3.6), dpi=100)
    figure.subplots_adjust(left=0.25 / nb_panels, right=0.98, bottom=0.14, top=0.86, wspace=0.28)
    axes = figure.subplots(1, nb_panels, squeeze=False)[0]
    if title:
        figure.suptitle(title, fontsize=10)
    return figure, list(axes)


def _save(figure: Any, output_path: str | Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(output_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path)
    return path


def plot_label_scores(scores: dict[str, dict[str, float]], output_path: str | Path, title: str | None = None) -> Path | None:
    """Grouped bars of precision, recall and F1 per label: ``scores[label] = {"precision": ..,
    "recall": .., "f1": .., "support": ..}`` (support, when given, is written under the label)."""
    if not scores:
        return None
    import numpy as np

    labels = list(scores)
    figure, axes = _figure(1, title)
    figure.set_size_inches(max(4.5, 1.2 * len(labels) + 2), 3.6)
    figure.subplots_adjust(left=0.1, right=0.98, bottom=0.2)
    axis = axes[0]
    positions = np.arange(len(labels))
    width = 0.26
    for offset, metric in zip((-width, 0.0, width), ("precision", "recall", "f1")):
        values = [scores[label].get(metric, 0.0) for label in labels]
        bars = axis.bar(positions + offset, values, width, label=metric)
        axis.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
    names = [f"{label}\n(n={int(scores[label]['support'])})" if "support" in scores[label] else label for label in labels]
    axis.set_xticks(positions, names, fontsize=8)
    axis.set_ylim(0, 1.1)
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=7, ncols=3, loc="upper right")
    return _save(figure, output_path)


def plot_confusion_matrix(
    counts: dict[tuple[str, str], int], rows: list[str], columns: list[str], output_path: str | Path,
    title: str | None = None, row_title: str = "gold", column_title: str = "predicted",
    blank: tuple[tuple[str, str], ...] = (),
) -> Path:
    """A count matrix as a heat map with the numbers written in: ``counts[(row, column)]``;
    ``blank`` cells (meaningless ones) are left empty."""
    import numpy as np

    matrix = np.array([[counts.get((row, column), 0) for column in columns] for row in rows])
    figure, axes = _figure(1, title)
    side = 1.0 + 0.7 * max(len(rows), len(columns))
    figure.set_size_inches(side + 1.2, side)
    figure.subplots_adjust(left=0.25, right=0.95, bottom=0.25, top=0.88)
    axis = axes[0]
    axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(columns)), columns, rotation=30, ha="right", fontsize=8)
    axis.set_yticks(range(len(rows)), rows, fontsize=8)
    axis.set_xlabel(column_title)
    axis.set_ylabel(row_title)
    threshold = matrix.max() / 2 if matrix.size else 0
    for i, row in enumerate(rows):
        for j, column in enumerate(columns):
            if (row, column) in blank:
                continue
            axis.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                      color="white" if matrix[i, j] > threshold else "black")
    return _save(figure, output_path)
