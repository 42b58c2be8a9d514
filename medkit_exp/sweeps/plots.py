"""PNG plots of a study: optimisation history, parameter importances, parallel coordinates."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PLOTS = {
    "optimization_history": "plot_optimization_history",
    "param_importances": "plot_param_importances",
    "parallel_coordinate": "plot_parallel_coordinate",
}


def draw_study_plots(study: Any, folder: str | Path) -> list[Path]:
    """Draw each plot of :data:`PLOTS` into ``folder``; a plot the study cannot have yet (too few
    finished trials, a single parameter for the importances) is skipped with a log line."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as optuna_plots

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    drawn = []
    for name, function in PLOTS.items():
        if not completed or (name != "optimization_history" and (len(completed) < 2 or not completed[0].params)):
            logger.info("Plot %s skipped: the study has %d completed trial(s)", name, len(completed))
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning on every call
                axes = getattr(optuna_plots, function)(study)
            figure = _figure_of(axes)
            figure.set_size_inches(9, 6)
            figure.tight_layout()
            path = folder / f"{name}.png"
            figure.savefig(path, dpi=100)
            plt.close(figure)
            drawn.append(path)
        except Exception as error:  # noqa: BLE001 - a plot is never worth a failed sweep
            logger.warning("Plot %s not drawn: %s", name, error)
    return drawn


def _figure_of(axes: Any) -> Any:
    if hasattr(axes, "figure"):
        return axes.figure
    first = axes.flat[0] if hasattr(axes, "flat") else axes[0]
    return first.figure
