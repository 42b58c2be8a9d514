"""The study's plots checked as images on a real Optuna study (50 trials, 7 parameters with long
names, pruned trials, a trial at F1 = 0): named by the metric, pruned trials shown and counted,
parallel coordinates with no overlapping text, nothing cut, no trial drawn in the background's colour."""

from __future__ import annotations

import math

import pytest

optuna = pytest.importorskip("optuna")

from medkit_exp.sweeps.plots import (  # noqa: E402
    draw_study_plots,
    history_figure,
    parallel_figure,
    short_param_names,
    trial_counts,
)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def study():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial):
        lr = trial.suggest_float("optimizer.learning_rate", 1e-6, 1e-3, log=True)
        decay = trial.suggest_float("optimizer.weight_decay", 0.0, 0.3)
        trial.suggest_categorical("trainer.batch_size", [8, 16, 32])
        trial.suggest_float("scheduler.warmup_ratio", 0.0, 0.2)
        trial.suggest_float("component.classifier_dropout", 0.0, 0.5)
        trial.suggest_int("trainer.gradient_accumulation_steps", 1, 8)
        trial.suggest_categorical("scheduler.name", ["linear", "cosine", "constant_with_warmup"])
        value = 0.0 if trial.number == 0 else max(0.0, 0.8 - abs(math.log10(lr) + 4.5) * 0.35 - decay * 0.3)
        for step in (1, 2, 3):
            trial.report(value * step / 3, step)
            if trial.number % 7 == 3:
                raise optuna.TrialPruned()
        return value

    study.optimize(objective, n_trials=50)
    return study


def texts_of(figure):
    from matplotlib.text import Text

    figure.canvas.draw()
    return [t for t in figure.findobj(Text) if t.get_visible() and t.get_text().strip()]


def assert_inside(figure):
    figure.canvas.draw()
    renderer, box = figure.canvas.get_renderer(), figure.bbox
    for axis in figure.axes:
        extent = axis.get_tightbbox(renderer)
        assert (box.x0 - 1 <= extent.x0 and extent.x1 <= box.x1 + 1
                and box.y0 - 1 <= extent.y0 and extent.y1 <= box.y1 + 1), \
            f"{axis} at {extent} cut by the figure's edge {box.bounds}"


def test_plots_are_written_named_by_the_metric(study, tmp_path, monkeypatch):
    from PIL import Image

    import medkit_exp.sweeps.plots as plots

    figures = []
    drawers = {name: (lambda *args, draw=draw: figures.append(draw(*args)) or figures[-1])
               for name, draw in plots._DRAW.items()}
    monkeypatch.setattr(plots, "_DRAW", drawers)
    monkeypatch.setattr(plots, "_close", lambda figure: None)  # kept open for the checks below
    paths = draw_study_plots(study, tmp_path, metric="f1")
    assert [p.name for p in paths] == ["optimization_history.png", "param_importances.png", "parallel_coordinate.png"]
    for path in paths:
        assert path.read_bytes()[:8] == PNG
        with Image.open(path) as image:
            assert 800 <= image.size[0] <= 1600 and 450 <= image.size[1] <= 700, (path.name, image.size)
    assert trial_counts(study) == {"complete": 43, "pruned": 7, "failed": 0}
    assert len(figures) == 3
    for figure in figures:
        words = " ".join(t.get_text() for t in texts_of(figure))
        assert "Objective Value" not in words and "best eval/f1" in words
        assert_inside(figure)


def test_the_history_shows_and_counts_the_pruned_trials(study):
    figure = history_figure(study, "best eval/f1")
    axis = figure.axes[0]
    assert axis.get_ylabel() == "best eval/f1"
    assert axis.get_title() == "Optimization history of best eval/f1 (43 complete, 7 pruned)"
    legend = [t.get_text() for t in axis.get_legend().get_texts()]
    assert "pruned trial: last reported value (7)" in legend
    crosses = [c for c in axis.collections if c.get_label().startswith("pruned")]
    assert len(crosses) == 1 and len(crosses[0].get_offsets()) == 7


def test_the_history_of_a_short_sweep_has_whole_trial_ticks_and_one_naming():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    small = optuna.create_study(direction="maximize")
    for value in (0.035, 0.2):
        small.enqueue_trial({})
        small.optimize(lambda trial, value=value: value, n_trials=1)
    figure = history_figure(small, "best eval/f1")
    axis = figure.axes[0]
    figure.canvas.draw()
    ticks = [tick for tick in axis.get_xticks() if axis.get_xlim()[0] <= tick <= axis.get_xlim()[1]]
    assert ticks and all(float(tick).is_integer() for tick in ticks)  # no trial 0.5
    legend = [t.get_text() for t in axis.get_legend().get_texts()]
    assert legend == ["best eval/f1 of each trial", "best eval/f1: best so far"]


def test_parallel_coordinates_are_readable(study):
    figure = parallel_figure(study, "best eval/f1")
    axis = figure.axes[0]
    renderer = (figure.canvas.draw(), figure.canvas.get_renderer())[1]
    names = [t for t in axis.get_xticklabels() if t.get_text()]
    assert len(names) == 8 and all("…" not in t.get_text() for t in names)  # names wrapped, never cut
    boxes = [t.get_window_extent(renderer) for t in names]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    ticks = [t.get_window_extent(renderer) for t in axis.texts]
    assert not any(a.overlaps(b) for i, a in enumerate(ticks) for b in ticks[i + 1:])
    # the F1 = 0 trial: dark, not the white or grey of the background
    from matplotlib.colors import to_rgb

    trials = [line for line in axis.get_lines() if len(line.get_xdata()) == 8]  # not the vertical axes
    zero = [line for line in trials if line.get_linestyle() == "-" and line.get_ydata()[0] == 0.0]
    assert len(zero) == 1 and sum(to_rgb(zero[0].get_color())) / 3 < 0.5
    assert axis.get_facecolor()[:3] == (1.0, 1.0, 1.0)
    assert len([line for line in trials if line.get_linestyle() == "--"]) == 7  # the pruned trials
    assert "7 pruned" in axis.get_title()
    assert_inside(figure)


def test_long_parameter_names_are_shortened_sensibly():
    names = short_param_names(["optimizer.weight_decay", "scheduler.name", "model.dropout", "trainer.dropout",
                               "trainer.gradient_accumulation_steps"])
    assert names["optimizer.weight_decay"] == "weight_decay"
    assert names["scheduler.name"] == "scheduler.name"  # "name" alone says nothing
    assert (names["model.dropout"], names["trainer.dropout"]) == ("model.dropout", "trainer.\ndropout")
    assert all(len(line) <= 14 for name in names.values() for line in name.splitlines())


def test_a_study_without_completed_trials_draws_nothing(tmp_path):
    empty = optuna.create_study()
    assert draw_study_plots(empty, tmp_path / "plots", metric="f1") == []
