"""PNG plots of a study: optimisation history, parameter importances, parallel coordinates.

Each plot is named by the optimised metric (``metric``, e.g. ``f1``: each trial's objective is
the best eval value of that metric during its run), never "Objective Value", and says how many
trials were pruned. The history and the importances are Optuna's (``target_name=``), the
history with the pruned trials added at their last reported value; the parallel coordinates
are drawn here: Optuna's overlap their tick labels, cut long parameter names and draw a trial
at the bottom of its colour scale in white.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PLOTS = ("optimization_history", "param_importances", "parallel_coordinate")
#: Sizes in inches at 100 dpi: what MLflow's artifact view shows without scaling much.
HISTORY_SIZE = (9.0, 5.0)
NAME_WIDTH = 14  # characters per line of a parameter's name under its axis


def target_name(metric: str | None) -> str:
    """The objective's name in the plots: ``best eval/f1`` (each trial's best evaluation)."""
    return f"best eval/{metric}" if metric else "best tracked eval metric"


def draw_study_plots(study: Any, folder: str | Path, metric: str | None = None) -> list[Path]:
    """Draw each plot of :data:`PLOTS` into ``folder``; a plot the study cannot have yet (no
    completed trial; fewer than 2, or no parameter, for the importances and the parallel
    coordinates) is skipped with a log line. ``metric``: the sweep's ``optimized_metric``."""
    from optuna.trial import TrialState

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    drawn = []
    for name in PLOTS:
        if not completed or (name != "optimization_history" and (len(completed) < 2 or not completed[0].params)):
            logger.info("Plot %s skipped: the study has %d completed trial(s)", name, len(completed))
            continue
        try:
            figure = _DRAW[name](study, target_name(metric))
            path = folder / f"{name}.png"
            figure.savefig(path, dpi=100)
            _close(figure)
            drawn.append(path)
        except Exception as error:  # noqa: BLE001 - a plot is never worth a failed sweep
            logger.warning("Plot %s not drawn: %s", name, error)
    return drawn


def trial_counts(study: Any) -> dict[str, int]:
    """``{"complete": n, "pruned": n, "failed": n}`` of the study's finished trials."""
    from optuna.trial import TrialState

    states = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "failed": TrialState.FAIL}
    return {name: len(study.get_trials(deepcopy=False, states=(state,))) for name, state in states.items()}


def _counts_text(study: Any) -> str:
    counts = trial_counts(study)
    return ", ".join(f"{number} {name}" for name, number in counts.items() if number or name == "complete")


def history_figure(study: Any, name: str) -> Any:
    """Optuna's optimisation history of ``name``, the pruned trials added (grey crosses at their
    last reported value) and counted in the title."""
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as optuna_plots

    _use_agg()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning on every call
        axis = optuna_plots.plot_optimization_history(study, target_name=name)
    pruned = [(t.number, t.intermediate_values[t.last_step]) for t in
              study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)) if t.last_step is not None]
    if pruned:
        numbers, values = zip(*pruned)
        axis.scatter(numbers, values, marker="x", color="0.45", s=28, zorder=3,
                     label=f"pruned trial: last reported value ({len(pruned)})")
    _name_history_series(axis, name)
    from matplotlib.ticker import MaxNLocator

    axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # trial numbers: never a tick at 0.5
    for location in ("left", "right"):
        axis.set_title("", loc=location)
    axis.set_title(f"Optimization history of {name} ({_counts_text(study)})", fontsize=11)
    axis.set_facecolor("white")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="best")
    figure = axis.figure
    figure.set_size_inches(*HISTORY_SIZE)
    figure.set_layout_engine("constrained")
    return figure


def _name_history_series(axis: Any, name: str) -> None:
    """One naming in the legend: Optuna labels its points with ``name`` and its line "Best Value";
    both say which value they show of ``name``."""
    for artist in [*axis.get_lines(), *axis.collections]:
        if artist.get_label() == name:
            artist.set_label(f"{name} of each trial")
        elif artist.get_label() == "Best Value":
            artist.set_label(f"{name}: best so far")


def importances_figure(study: Any, name: str) -> Any:
    """Optuna's parameter importances (fANOVA) for ``name``, over the completed trials."""
    from optuna.visualization import matplotlib as optuna_plots

    _use_agg()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axis = optuna_plots.plot_param_importances(study, target_name=name)
    for location in ("left", "right"):
        axis.set_title("", loc=location)  # Optuna's own title, on the left, would overlap ours
    axis.set_title(f"Parameter importances for {name} (over {trial_counts(study)['complete']} completed trials)",
                   fontsize=11)
    axis.set_facecolor("white")
    figure = axis.figure
    figure.set_size_inches(*HISTORY_SIZE)
    figure.set_layout_engine("constrained")
    return figure


def short_param_names(names: list[str]) -> dict[str, str]:
    """Each parameter's name under its axis: its last dotted part (its group too where two
    would read the same or where the part alone says little, as ``name``), wrapped at
    underscores and dots into lines of at most :data:`NAME_WIDTH`.

    >>> short_param_names(["optimizer.weight_decay", "trainer.gradient_accumulation_steps"]).values()
    dict_values(['weight_decay', 'gradient_\\naccumulation_\\nsteps'])
    """
    last = {name: name.rsplit(".", 1)[-1] for name in names}
    clashes = {short for short in last.values() if list(last.values()).count(short) > 1}
    shown = {name: name.rsplit(".", 2)[-2] + "." + short if (short in clashes or len(short) <= 5) and "." in name
             else short for name, short in last.items()}
    return {name: _wrap(short) for name, short in shown.items()}


def _wrap(text: str) -> str:
    lines, line = [], ""
    for part in text.replace("_", "_\0").replace(".", ".\0").split("\0"):
        if line and len(line) + len(part) > NAME_WIDTH:
            lines.append(line)
            line = ""
        line += part
    return "\n".join([*lines, line])


def _param_scale(trials: list[Any], name: str) -> tuple[Any, list[tuple[float, str]]]:
    """A function putting the parameter's values on [0, 1] and its ticks ``(position, text)``:
    categories evenly spaced; numbers linearly, or on a log scale when sampled so."""
    distribution = next(t.distributions[name] for t in trials if name in t.distributions)
    if hasattr(distribution, "choices"):
        choices = list(distribution.choices)
        spread = max(len(choices) - 1, 1)
        ticks = [(i / spread, _cut(str(c))) for i, c in enumerate(choices)]
        return (lambda value: choices.index(value) / spread), ticks
    log = bool(getattr(distribution, "log", False))
    values = [float(t.params[name]) for t in trials if name in t.params]
    low, high = min(values), max(values)
    forward = math.log10 if log else float
    span = (forward(high) - forward(low)) or 1.0

    def scale(value: Any) -> float:
        return (forward(float(value)) - forward(low)) / span

    middle = 10 ** ((math.log10(low) + math.log10(high)) / 2) if log else (low + high) / 2
    if type(distribution).__name__ == "IntDistribution":
        middle = round(middle)  # an integer parameter never takes 4.5
    return scale, [(scale(v), f"{v:.3g}") for v in ((low, middle, high) if high > low else (low,))]


def _cut(text: str, width: int = 16) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def parallel_figure(study: Any, name: str) -> Any:
    """Parallel coordinates: the objective then each parameter on a vertical axis; one line per
    completed trial coloured by its objective (viridis: the lowest is dark, never white), the
    best on top; pruned trials as thin grey dashes behind, counted in the title."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from optuna.trial import TrialState

    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    pruned = [t for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)) if t.params]
    params = sorted({key for trial in completed for key in trial.params})
    labels = short_param_names(params)
    scales = {key: _param_scale(completed + pruned, key) for key in params}
    values = [trial.value for trial in completed]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    figure = Figure(figsize=(max(7.0, 1.45 * (len(params) + 1) + 1.5), 5.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)  # drawn off pyplot: no display, no global state
    axis = figure.subplots()
    _draw_lines(axis, completed, pruned, params, scales, low, span, study)
    _draw_axes(axis, params, labels, scales, name, low, high)
    minimize = study.direction.name == "MINIMIZE"
    colours = figure.colorbar(_mappable(low, high), ax=axis, pad=0.01, fraction=0.03)
    colours.set_label(f"{name} ({'lower' if minimize else 'higher'} is better)")
    title = f"Parallel coordinates of {len(completed)} completed trials"
    axis.set_title(title + (f", {len(pruned)} pruned (grey dashes)" if pruned else ""), fontsize=11)
    return figure


def _mappable(low: float, high: float) -> Any:
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    return ScalarMappable(Normalize(low, high if high > low else low + 1e-9), colormaps["viridis"])


def _draw_lines(axis: Any, completed: list[Any], pruned: list[Any], params: list[str], scales: dict[str, Any],
                low: float, span: float, study: Any) -> None:
    positions = list(range(len(params) + 1))
    for trial in pruned:
        ys = [math.nan] + [scales[k][0](trial.params[k]) if k in trial.params else math.nan for k in params]
        axis.plot(positions, ys, color="0.6", linewidth=0.8, linestyle="--", alpha=0.6, zorder=1)
    mappable = _mappable(low, low + span)
    minimize = study.direction.name == "MINIMIZE"
    ordered = sorted(completed, key=lambda t: -t.value if minimize else t.value)  # the best drawn last
    for rank, trial in enumerate(ordered):
        best = rank == len(ordered) - 1
        ys = [(trial.value - low) / span] + [scales[k][0](trial.params[k]) if k in trial.params else math.nan
                                              for k in params]
        axis.plot(positions, ys, color=mappable.to_rgba(trial.value), linewidth=2.4 if best else 1.0,
                  alpha=1.0 if best else 0.8, zorder=3 if best else 2)


def _draw_axes(axis: Any, params: list[str], labels: dict[str, str], scales: dict[str, Any], name: str,
               low: float, high: float) -> None:
    """Each vertical axis with its own few ticks written beside it, its name below."""
    columns = [(name, [(0.0, f"{low:.3g}"), (0.5, f"{(low + high) / 2:.3g}"), (1.0, f"{high:.3g}")])]
    columns += [(labels[key], scales[key][1]) for key in params]
    for x, (_, ticks) in enumerate(columns):
        axis.axvline(x, color="0.2", linewidth=1.0, zorder=4)
        for y, text in ticks:
            axis.text(x + 0.04, y, text, fontsize=7, va="center", ha="left", zorder=5,
                      bbox={"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})
    axis.set_xticks(range(len(columns)), [_wrap(name)] + [column[0] for column in columns[1:]], fontsize=8)
    axis.set_xlim(-0.1, len(columns) - 0.45)
    axis.set_ylim(-0.04, 1.04)
    axis.set_yticks([])
    axis.set_facecolor("white")  # Optuna's pyplot style may be active: a trial line must not vanish in grey
    for side in ("top", "right", "left"):
        axis.spines[side].set_visible(False)


_DRAW = {"optimization_history": history_figure, "param_importances": importances_figure,
         "parallel_coordinate": parallel_figure}


def _use_agg() -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)  # Optuna draws through pyplot: never ask for a display


def _close(figure: Any) -> None:
    import matplotlib.pyplot as plt

    plt.close(figure)  # a pyplot figure (Optuna's) is freed; ours, never registered, is a no-op
