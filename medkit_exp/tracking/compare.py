"""Compare the runs of an experiment, or the child runs of a sweep: a table and learning curves.

    python -m medkit_exp.compare --experiment ner-demo --metric eval/f1 --format markdown
    python -m medkit_exp.compare --parent-run-id 3f2a... --format html --output sweep.html --plot curves.png

The table has one row per run: its name, id, status, the params whose values differ between
the runs, and for each metric its best value (max, or min for a metric named like a loss; see
``--goal``), the step of the best value, and its last value. Rows are sorted by the first
metric's best value. Per-label metrics are named ``eval/labels/<label>/<precision|recall|f1>``.

MLflow has no PRUNED status: a pruned sweep trial's run ends KILLED with the tag
``optuna.trial_state=PRUNED``, and its status shows as ``KILLED (pruned)`` (a failed trial stays
``FAILED``). A sweep's parent run, when compared with its children (``--experiment``), keeps its
row, but its params (the sweep's base config, not a trial's) are left out of the decision of
which params differ: only the runs that are no other compared run's parent decide it.

``--plot`` draws one panel per metric (and ``train/loss``), one line per run in the same colour
in every panel, the runs listed in the table's order in a legend beside the panels; the path
written is printed on stderr.
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import logging
import sys
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

FORMATS = ("markdown", "csv", "html")
MISSING = ""
#: The tag a sweep sets on a trial's run (medkit_exp.sweeps.mlflow_parent.STATE_TAG; named here,
#: not imported, because tracking does not depend on sweeps).
TRIAL_STATE_TAG = "optuna.trial_state"
PARENT_TAG = "mlflow.parentRunId"


@dataclass
class RunSummary:
    """A run reduced to what a comparison shows."""

    run_id: str
    name: str
    status: str
    params: dict[str, str]
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    parent_run_id: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.run_id[:8]


def find_runs(client: Any, experiment: str | None = None, parent_run_id: str | None = None) -> list[Any]:
    """The runs of ``experiment`` (a name), or the child runs of ``parent_run_id``, or both."""
    if experiment is None and parent_run_id is None:
        raise ValueError("give an experiment name or a parent run id")
    if experiment is not None:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise ValueError(f"no MLflow experiment named {experiment!r} at {client.tracking_uri}")
        experiment_ids = [found.experiment_id]
    else:
        experiment_ids = [client.get_run(parent_run_id).info.experiment_id]
    filter_string = f"tags.mlflow.parentRunId = '{parent_run_id}'" if parent_run_id else ""
    runs, token = [], None
    while True:
        page = client.search_runs(experiment_ids, filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def default_metrics(runs: list[Any]) -> list[str]:
    """f1-like eval metrics if the runs have some (at most 4: the summary ones, ``eval/f1``
    first, before the per-label ``eval/labels/...``), else eval/loss (else any eval metric)."""
    keys = sorted({key for run in runs for key in run.data.metrics if key.startswith("eval/")},
                  key=lambda key: (key != "eval/f1", key.startswith("eval/labels/"), key))
    f1_like = [key for key in keys if "f1" in key.lower()]
    if f1_like:
        return f1_like[:4]
    return ["eval/loss"] if "eval/loss" in keys else keys[:1]


def summarize(client: Any, runs: list[Any], metrics: list[str]) -> list[RunSummary]:
    summaries = []
    for run in runs:
        curves = {}
        for key in metrics:
            if key in run.data.metrics:
                history = client.get_metric_history(run.info.run_id, key)
                curves[key] = sorted((m.step, m.value) for m in history)
        tags = run.data.tags
        summaries.append(RunSummary(run.info.run_id, run.info.run_name or "", run_status(run.info.status, tags),
                                    dict(run.data.params), curves, tags.get(PARENT_TAG)))
    return summaries


def run_status(status: str, tags: dict[str, str]) -> str:
    """MLflow's status, ``KILLED (pruned)`` for a sweep trial Optuna pruned."""
    if status == "KILLED" and tags.get(TRIAL_STATE_TAG) == "PRUNED":
        return "KILLED (pruned)"
    return status


def lower_is_better(metric: str, goal: str = "auto") -> bool:
    if goal == "auto":
        return "loss" in metric.lower() or "error" in metric.lower()
    return goal == "min"


def best_point(points: list[tuple[int, float]], minimize: bool) -> tuple[int, float] | None:
    """The best ``(step, value)``, the earliest of equal values; NaN never wins."""
    points = [point for point in points if point[1] == point[1]]
    if not points:
        return None
    if minimize:
        return min(points, key=lambda point: (point[1], point[0]))
    return max(points, key=lambda point: (point[1], -point[0]))


def differing_params(summaries: list[RunSummary]) -> list[str]:
    """Params whose value (or presence) is not the same in every run that has params.

    Runs without any param, and a sweep's parent run compared with its children (its params are
    the sweep's base config, which every trial overrides), are left out of the decision.
    """
    parents = {summary.parent_run_id for summary in summaries}
    with_params = [summary for summary in summaries if summary.params and summary.run_id not in parents]
    keys = sorted({key for summary in with_params for key in summary.params})
    return [key for key in keys if len({summary.params.get(key) for summary in with_params}) > 1]


def ranked(summaries: list[RunSummary], metric: str | None, goal: str = "auto") -> list[RunSummary]:
    """The runs best first by ``metric``'s best value; runs without it last, in their order."""
    if metric is None:
        return list(summaries)
    minimize = lower_is_better(metric, goal)

    def key(summary: RunSummary) -> tuple[bool, float]:
        best = best_point(summary.curves.get(metric, []), minimize)
        return (best is None, 0.0 if best is None else best[1] if minimize else -best[1])

    return sorted(summaries, key=key)


def comparison_table(
    summaries: list[RunSummary], metrics: list[str], goal: str = "auto"
) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the comparison, best run first."""
    params = differing_params(summaries)
    headers = ["run", "run_id", "status", *params]
    for metric in metrics:
        headers += [f"best {metric}", f"best {metric} step", f"last {metric}"]
    rows = []
    for summary in ranked(summaries, metrics[0] if metrics else None, goal):
        row = [summary.label, summary.run_id[:8], summary.status, *(summary.params.get(key, MISSING) for key in params)]
        for metric in metrics:
            points = summary.curves.get(metric, [])
            best = best_point(points, lower_is_better(metric, goal))
            row += [_number(best[1]), str(best[0])] if best else [MISSING, MISSING]
            row.append(_number(points[-1][1]) if points else MISSING)
        rows.append(row)
    return headers, rows


def render(headers: list[str], rows: list[list[str]], fmt: str = "markdown") -> str:
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows(rows)
        return buffer.getvalue()
    if fmt == "html":
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>\n" for row in rows)
        return f'<table class="medkit-exp-runs">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n'
    if fmt != "markdown":
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(headers), line(["---"] * len(headers)), *(line(row) for row in rows)]) + "\n"


def plot_comparison(
    client: Any, summaries: list[RunSummary], metrics: list[str], path: str, title: str | None = None,
    goal: str = "auto",
) -> Any:
    """Learning curves of the runs (the metrics and train/loss), one panel per metric, as a PNG;
    the runs in the table's order (best first). The path written, or None (nothing to draw)."""
    from medkit_exp.tracking.plots import plot_runs

    keys = [*metrics, *(["train/loss"] if "train/loss" not in metrics else [])]
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for summary in ranked(summaries, metrics[0] if metrics else None, goal):
        run_curves = dict(summary.curves)
        for key in keys:
            if key not in run_curves:
                run_curves[key] = sorted((m.step, m.value) for m in client.get_metric_history(summary.run_id, key))
        label = summary.label if summary.label not in curves else f"{summary.label} ({summary.run_id[:8]})"
        curves[label] = run_curves
    return plot_runs(curves, keys, path, title=title)


def compare_runs(
    tracking_uri: str | None = None,
    experiment: str | None = None,
    parent_run_id: str | None = None,
    metrics: list[str] | None = None,
    fmt: str = "markdown",
    plot: str | None = None,
    goal: str = "auto",
) -> str:
    """The comparison table as text (and the learning curves written to ``plot``)."""
    return run_comparison(tracking_uri, experiment, parent_run_id, metrics, fmt, plot, goal)[0]


def run_comparison(tracking_uri: str | None, experiment: str | None, parent_run_id: str | None,
                   metrics: list[str] | None, fmt: str, plot: str | None, goal: str) -> tuple[str, Any]:
    """:func:`compare_runs`'s table and the path of the plot it wrote (None: none written)."""
    from mlflow import MlflowClient

    from medkit_exp.tracking.uris import resolve_tracking_uri
    from medkit_exp.tracking.store import prepare_store

    uri = resolve_tracking_uri(tracking_uri)
    prepare_store(uri)  # a store being created by a training beside: wait for it, never half-migrate
    client = MlflowClient(uri)
    runs = find_runs(client, experiment, parent_run_id)
    metrics = list(metrics) if metrics else default_metrics(runs)
    summaries = summarize(client, runs, metrics)
    headers, rows = comparison_table(summaries, metrics, goal)
    written = None
    if plot:
        title = experiment or f"children of {parent_run_id}"
        written = plot_comparison(client, summaries, metrics, plot, title=title, goal=goal)
        if written is None:
            logger.warning("No metric history to plot for %s: %s not written", title, plot)
    return render(headers, rows, fmt), written


def _number(value: float) -> str:
    return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medkit_exp.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", default=None, help="default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db")
    parser.add_argument("--experiment", default=None, help="experiment name")
    parser.add_argument("--parent-run-id", default=None, help="compare the child runs of this (sweep) run")
    parser.add_argument("--metric", action="append", default=None, help="metric key, e.g. eval/f1 (repeatable)")
    parser.add_argument("--goal", choices=("auto", "max", "min"), default="auto", help="auto: min for losses")
    parser.add_argument("--format", choices=FORMATS, default="markdown")
    parser.add_argument("--output", default=None, help="write the table here (default: stdout)")
    parser.add_argument("--plot", default=None, metavar="PATH", help="write the learning curves to this PNG")
    args = parser.parse_args(argv)
    if args.experiment is None and args.parent_run_id is None:
        parser.error("give --experiment or --parent-run-id")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        text, written = run_comparison(args.tracking_uri, args.experiment, args.parent_run_id, args.metric,
                                       args.format, args.plot, args.goal)
    except ValueError as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
        sys.stderr.write(f"table written to {args.output}\n")
    else:
        sys.stdout.write(text)
    if written is not None:  # on stderr: stdout may be the table, piped somewhere
        sys.stderr.write(f"learning curves written to {written}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
