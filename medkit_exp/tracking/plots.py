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
MAX_COLUMNS = 3


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
    eval metrics; the summary ones first, then per label), learning rate; empty panels are left out."""
    losses = [name for name in ("train/loss", "train/loss_avg", "eval/loss") if name in series]
    eval_metrics = sorted((name for name in series if name.startswith("eval/") and name != "eval/loss"),
                          key=lambda name: ("/labels/" in name, name))
    f1_like = [name for name in eval_metrics if is_f1_like(name)]
    shown = (f1_like or eval_metrics)[:MAX_LINES_PER_PANEL]
    panels = [("loss", losses), ("eval F1" if f1_like else "eval metrics", shown)]
    if "train/learning_rate" in series:
        panels.append(("learning rate", ["train/learning_rate"]))
    return [(title, names) for title, names in panels if names]


#: The y-axis label of each panel of :func:`learning_curve_panels`.
Y_LABELS = {"loss": "loss", "eval F1": "F1 (entity level)", "eval metrics": "value", "learning rate": "learning rate"}


def short_name(name: str) -> str:
    """A series' legend name: ``eval/labels/DISO/f1`` -> ``label 'DISO': f1`` (a label named
    ``test`` is not read as the test split), ``eval/f1`` -> ``f1 (micro)``.

    >>> [short_name(n) for n in ("eval/labels/test/f1", "eval/macro_f1", "train/loss", "eval/loss")]
    ["label 'test': f1", 'macro f1', 'train loss (per step)', 'eval loss']
    """
    if "/labels/" in name:
        label, _, metric = name.split("/labels/", 1)[1].rpartition("/")
        return f"label '{label}': {metric}"
    known = {"train/loss": "train loss (per step)", "train/loss_avg": "train loss (mean since last eval)",
             "eval/loss": "eval loss", "eval/f1": "f1 (micro)", "train/learning_rate": "learning rate"}
    if name in known:
        return known[name]
    return name.split("/", 1)[1].replace("_", " ") if name.startswith("eval/") else name


def best_evaluation(
    series: dict[str, Series], history_path: Path, metric: str | None = None, minimize: bool | None = None
) -> tuple[str, int, float] | None:
    """``(series name, step, value)`` of the best evaluation of the tracked metric.

    ``metric`` (an eval metric's name, e.g. ``f1``) is the Trainer's ``checkpoint_metric``;
    without it, the metric whose value is the best checkpoint's in ``checkpoints/state.json``
    beside the history. The best is taken over the whole history: the last evaluation's
    checkpoint may not be written yet when the curves are drawn."""
    state = _checkpoint_state(history_path.parent / "checkpoints" / "state.json") if metric is None else None
    if state is not None:
        metric = _metric_of_checkpoint(series, state)
        minimize = state.get("minimize") if minimize is None else minimize
    points = series.get(f"eval/{metric}") if metric else None
    if not points:
        return None
    minimize = lower_is_better(str(metric)) if minimize is None else bool(minimize)
    # the earliest of equal values, as the checkpoint manager ranks them
    step, value = min(points, key=lambda point: (point[1] if minimize else -point[1], point[0]))
    return f"eval/{metric}", step, value


def lower_is_better(metric: str) -> bool:
    return "loss" in metric.lower() or "error" in metric.lower()


def _checkpoint_state(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _metric_of_checkpoint(series: dict[str, Series], state: dict[str, Any]) -> str | None:
    """The eval metric whose value at the best checkpoint's step is the checkpoint's metric."""
    record = next((r for r in state.get("checkpoints", []) if r.get("name") == state.get("best")), None)
    if record is None or record.get("metric") is None:
        return None
    names = [name for name, points in series.items() if name.startswith("eval/")
             and any(step == record["step"] and value == record["metric"] for step, value in points)]
    names.sort(key=lambda name: (name != "eval/f1", "/labels/" in name, not is_f1_like(name), name))
    return names[0][len("eval/"):] if names else None


def plot_learning_curves(
    history_path: str | Path, output_path: str | Path, title: str | None = None,
    metric: str | None = None, minimize: bool | None = None,
) -> Path | None:
    """Draw a run's learning curves (:func:`learning_curves_figure`) to a PNG; None when the
    history has nothing to draw."""
    figure = learning_curves_figure(history_path, title, metric, minimize)
    return None if figure is None else _save(figure, output_path)


def learning_curves_figure(
    history_path: str | Path, title: str | None = None, metric: str | None = None, minimize: bool | None = None,
) -> Any:
    """A run's learning curves: one panel per kind (loss, eval F1, learning rate), labelled
    axes, the best evaluation of the tracked metric (see :func:`best_evaluation`) marked in
    every panel; None when the history has nothing to draw."""
    history_path = Path(history_path)
    series = history_series(read_history(history_path))
    panels = learning_curve_panels(series)
    if not panels:
        return None
    best = best_evaluation(series, history_path, metric, minimize)
    figure, axes = _figure(len(panels), title)
    for axis, (panel_title, names) in zip(axes, panels):
        for index, name in enumerate(names):
            steps, values = zip(*series[name])
            main = name in ("eval/f1", "train/loss_avg", "eval/loss") or (best is not None and name == best[0])
            axis.plot(steps, values, label=short_name(name), **_line_style(name, index, main))
        if best is not None:
            axis.axvline(best[1], color="0.35", linestyle=":", linewidth=1.2,
                         label=f"best {short_name(best[0])} (step {best[1]})")
            if best[0] in names:
                axis.plot([best[1]], [best[2]], marker="*", markersize=12, color="gold", markeredgecolor="black",
                          linestyle="none", label=f"best value {best[2]:.4f}")
        _label_axis(axis, panel_title, Y_LABELS.get(panel_title, "value"))
        if panel_title == "learning rate":
            axis.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2, frameon=False)
    return figure


#: Markers and dash patterns given in turn to a panel's curves: two curves on the same points
#: (two labels both at F1 0) stay both visible, the later one's hollow marker beside the
#: earlier one's and its thinner line inside the earlier one's thicker line.
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">", "h")
DASHES = ("--", "-.", ":", (0, (6, 2, 1, 2)))  # the first curve (the main one) is solid


def _line_style(name: str, index: int, main: bool) -> dict[str, Any]:
    """How a panel's ``index``-th curve is drawn (see :data:`MARKERS`)."""
    evaluated = name.startswith("eval/") or name.endswith("_avg")
    return {
        "marker": MARKERS[index % len(MARKERS)] if evaluated else None,
        "markersize": max(7.0 - 0.7 * index, 4.0), "markerfacecolor": "none" if index else None,
        "linewidth": max(2.8 - 0.45 * index, 0.8), "alpha": 1.0 if main else 0.85,
        "linestyle": DASHES[(index - 1) % len(DASHES)] if index else "-",
    }


def log_learning_curves(run: Any, history: str, png: str, title: str | None = None,
                        metric: str | None = None, minimize: bool | None = None) -> None:
    """An MLflow task (see :meth:`~medkit_exp.tracking.run_handle.RunHandle.run_task`): draw the
    learning curves of ``history`` to ``png`` and upload it under ``plots/``. A plot is never
    worth a failed run: a drawing error is logged."""
    try:
        drawn = plot_learning_curves(history, png, title=title, metric=metric, minimize=minimize)
    except Exception:  # noqa: BLE001
        logger.exception("Could not draw the learning curves")
        return
    if drawn is not None and run is not None:
        run.log_artifacts(drawn, "plots")


def run_colors(nb_runs: int) -> list[Any]:
    """``nb_runs`` distinct colours: tab10, then tab20, then evenly spaced hues of ``turbo``."""
    from matplotlib import colormaps

    if nb_runs <= 10:
        return [colormaps["tab10"](i) for i in range(nb_runs)]
    if nb_runs <= 20:
        return [colormaps["tab20"](i) for i in range(nb_runs)]
    return [colormaps["turbo"](0.05 + 0.9 * i / (nb_runs - 1)) for i in range(nb_runs)]


def plot_runs(
    curves: dict[str, dict[str, Series]], metrics: list[str], output_path: str | Path, title: str | None = None
) -> Path | None:
    """Draw :func:`runs_figure` to a PNG; None when no run has any of ``metrics``."""
    figure = runs_figure(curves, metrics, title)
    return None if figure is None else _save(figure, output_path)


def runs_figure(curves: dict[str, dict[str, Series]], metrics: list[str], title: str | None = None) -> Any:
    """One panel per metric, one line per run: ``curves[run_label][metric] = [(step, value)]``.

    A run keeps its colour in every panel; one legend for the figure, right of the panels, in
    the order of ``curves``; steps on integer ticks. None when no run has any of ``metrics``."""
    metrics = [m for m in metrics if any(run.get(m) for run in curves.values())]
    if not metrics:
        return None
    colors = dict(zip(curves, run_colors(len(curves))))
    nb_columns = 1 if len(curves) <= 16 else 2 if len(curves) <= 40 else 3
    figure, axes = _figure(len(metrics), title, legend_columns=nb_columns)
    handles: dict[str, Any] = {}
    for axis, metric in zip(axes, metrics):
        for label, run_curves in curves.items():
            points = sorted(run_curves.get(metric) or [])
            if points:
                steps, values = zip(*points)
                (line,) = axis.plot(steps, values, marker="o" if len(points) < 30 else None, markersize=3,
                                    linewidth=1.2, color=colors[label], label=label)
                handles.setdefault(label, line)
        _label_axis(axis, metric, metric.rsplit("/", 1)[-1])
    ordered = [label for label in curves if label in handles]
    runs = f"{len(ordered)} run{'s' if len(ordered) > 1 else ''}"
    figure.legend([handles[label] for label in ordered], ordered, loc="outside right upper", fontsize=8,
                  ncols=nb_columns, title=runs, title_fontsize=8, frameon=False)
    return figure


def _label_axis(axis: Any, title: str, y_label: str) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole: never a tick at 2.5
    low, high = axis.dataLim.intervalx
    if high - low < 2:  # a single step or two: room for whole-step ticks around them
        axis.set_xlim(low - 1, high + 1)
    axis.set_title(title, fontsize=10)
    axis.set_xlabel("optimizer step")
    axis.set_ylabel(y_label)
    axis.grid(alpha=0.3)


def _figure(nb_panels: int, title: str | None, legend_columns: int = 0) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure

    # The constrained layout fits titles, axis labels and legends inside the figure (its cost,
    # ~0.1 s, is paid in the tracking worker, beside the training).
    # At most MAX_COLUMNS panels a row: MLflow shows an artifact about 1400 pixels wide at most.
    columns = min(nb_panels, MAX_COLUMNS)
    rows = math.ceil(nb_panels / columns)
    figure = Figure(figsize=(4.6 * columns + 1.9 * legend_columns, 4.2 * rows), dpi=100, layout="constrained")
    axes = list(figure.subplots(rows, columns, squeeze=False).flat)
    for unused in axes[nb_panels:]:
        figure.delaxes(unused)
    if title:
        figure.suptitle(title, fontsize=11)
    return figure, axes[:nb_panels]


def _save(figure: Any, output_path: str | Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(output_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path)
    return path


def plot_label_scores(
    scores: dict[str, dict[str, float]], output_path: str | Path, title: str | None = None
) -> Path | None:
    """Grouped bars of precision, recall and F1 per label: ``scores[label] = {"precision": ..,
    "recall": .., "f1": .., "support": ..}`` (support, when given, is written under the label)."""
    if not scores:
        return None
    import numpy as np

    labels = list(scores)
    figure, axes = _figure(1, title)
    figure.set_size_inches(max(4.5, 1.2 * len(labels) + 2), 3.6)
    axis = axes[0]
    positions = np.arange(len(labels))
    width = 0.26
    for offset, metric in zip((-width, 0.0, width), ("precision", "recall", "f1")):
        values = [scores[label].get(metric, 0.0) for label in labels]
        bars = axis.bar(positions + offset, values, width, label=metric)
        axis.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
    names = [f"{label}\n(n={int(scores[label]['support'])})" if "support" in scores[label] else label
             for label in labels]
    axis.set_xticks(positions, names, fontsize=8)
    axis.set_ylim(0, 1.1)
    axis.set_ylabel("score")
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
