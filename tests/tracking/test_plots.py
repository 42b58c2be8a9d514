"""Plots checked as images: sizes, no text cut at the figure's edge, labelled axes, the best
evaluation marked, one colour per run in every panel, integer steps."""

from __future__ import annotations

import json
import math

import pytest

from medkit_exp.tracking.plots import (
    learning_curves_figure,
    plot_learning_curves,
    plot_runs,
    run_colors,
    runs_figure,
    short_name,
)

PNG = b"\x89PNG\r\n\x1a\n"


def write_history(folder, nb_evals=8, best_in_state=None):
    """A history like a tagger's (per-label metrics), optionally a checkpoints/state.json."""
    lines = []
    for step in range(1, 10 * nb_evals + 1):
        lines.append({"type": "log", "step": step, "loss": 2 * math.exp(-step / 30),
                      "learning_rate": 5e-5 * (1 - step / 100)})
        if step % 10 == 0:
            f1 = round(0.1 * (step // 10) if step <= 50 else 0.5 - 0.01 * (step // 10 - 5), 4)
            metrics = {"loss": 1 / step, "f1": f1, "macro_f1": f1 - 0.05, "precision": f1, "recall": f1}
            metrics.update({f"labels/{label}/f1": f1 for label in ("problem", "test", "treatment_with_a_long_name")})
            lines.append({"type": "eval", "step": step, "epoch": 1, "train": {"loss": 1.0}, "eval": metrics})
    history = folder / "history.jsonl"
    history.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    if best_in_state is not None:
        step, value = best_in_state
        (folder / "checkpoints").mkdir()
        (folder / "checkpoints" / "state.json").write_text(json.dumps({
            "best": f"checkpoint-{step}", "minimize": False,
            "checkpoints": [{"name": f"checkpoint-{step}", "step": step, "metric": value}]}))
    return history


def assert_no_clipped_text(figure):
    """Everything drawn with text lies inside the figure: each panel with its title, axis
    labels and tick labels (its tight bbox holds the ticks actually drawn), each legend, the
    figure's title."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    box = figure.bbox
    artists = [*figure.axes, *figure.legends, *(axis.get_legend() for axis in figure.axes if axis.get_legend())]
    if figure._suptitle is not None:
        artists.append(figure._suptitle)
    for artist in artists:
        tight = hasattr(artist, "get_tightbbox")
        extent = artist.get_tightbbox(renderer) if tight else artist.get_window_extent(renderer)
        inside = (extent.x0 >= box.x0 - 1 and extent.y0 >= box.y0 - 1
                  and extent.x1 <= box.x1 + 1 and extent.y1 <= box.y1 + 1)
        assert inside, f"{artist} at {extent} is cut by the figure's edge {box.bounds}"


def test_learning_curves_have_labelled_axes_readable_legends_and_the_best_marked(tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    history = write_history(tmp_path)
    figure = learning_curves_figure(history, title="ner-demo / run", metric="f1")
    FigureCanvasAgg(figure)
    axes = figure.axes
    assert [axis.get_title() for axis in axes] == ["loss", "eval F1", "learning rate"]
    assert [axis.get_ylabel() for axis in axes] == ["loss", "F1 (entity level)", "learning rate"]
    assert all(axis.get_xlabel() == "optimizer step" for axis in axes)
    figure.canvas.draw()
    assert all(float(tick).is_integer() for axis in axes for tick in axis.get_xticks())
    # f1 rises to 0.5 at step 50, then falls: the best is at step 50, marked in every panel
    for axis in axes:
        labels = [text.get_text() for text in axis.get_legend().get_texts()]
        assert "best f1 (micro) (step 50)" in labels
        assert all(text.get_fontsize() >= 8 for text in axis.get_legend().get_texts())
    f1_labels = [text.get_text() for text in axes[1].get_legend().get_texts()]
    assert {"f1 (micro)", "macro f1", "label 'test': f1", "best value 0.5000"} <= set(f1_labels)
    assert not any(label.startswith("eval/") for label in f1_labels)
    assert_no_clipped_text(figure)
    png = plot_learning_curves(history, tmp_path / "curves.png", metric="f1")
    from PIL import Image

    with Image.open(png) as image:
        width, height = image.size
    assert png.read_bytes()[:8] == PNG and 1000 <= width <= 1600 and 350 <= height <= 600  # MLflow's preview


def test_without_a_metric_the_best_checkpoints_metric_is_found_and_the_whole_history_ranked(tmp_path):
    # state.json names step 30 (0.3): its metric is eval/f1; a later, better evaluation (step 50)
    # whose checkpoint is still to be written when the curves are drawn is the one marked.
    history = write_history(tmp_path, best_in_state=(30, 0.3))
    figure = learning_curves_figure(history)
    labels = [text.get_text() for text in figure.axes[1].get_legend().get_texts()]
    assert "best f1 (micro) (step 50)" in labels
    # no metric and no state.json: nothing claimed
    other = tmp_path / "other"
    other.mkdir()
    figure = learning_curves_figure(write_history(other))
    assert not any("best" in text.get_text() for axis in figure.axes for text in axis.get_legend().get_texts())


def test_legend_names_say_what_a_series_is():
    assert short_name("eval/labels/test/f1") == "label 'test': f1"  # a label called test is not the test split
    assert short_name("eval/labels/a/b/precision") == "label 'a/b': precision"
    assert short_name("train/loss_avg") == "train loss (mean since last eval)"


def test_curves_on_the_same_points_are_all_visible(tmp_path):
    """Two labels at F1 0 at every evaluation: each curve has its own marker and dash pattern,
    the later drawn thinner and hollow, so the one below still shows."""
    lines = [{"type": "eval", "step": step, "train": {"loss": 1.0},
              "eval": {"f1": 0.1 * step, "labels/test/f1": 0.0, "labels/treatment/f1": 0.0}} for step in (2, 4, 6)]
    history = tmp_path / "history.jsonl"
    history.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    figure = learning_curves_figure(history, metric="f1")
    drawn = {line.get_label(): line for line in figure.axes[1].get_lines()}
    first, second = drawn["label 'test': f1"], drawn["label 'treatment': f1"]
    assert list(first.get_ydata()) == list(second.get_ydata()) == [0.0, 0.0, 0.0]
    assert first.get_marker() != second.get_marker() and first.get_linestyle() != second.get_linestyle()
    assert second.get_linewidth() < first.get_linewidth() and second.get_markerfacecolor() == "none"
    plot_learning_curves(history, tmp_path / "overlap.png", metric="f1")


def curves_of(nb_runs):
    return {f"trial-{i:02d} optimizer.weight_decay={i / 100}": {
        "eval/f1": [(step, 0.5 * (1 - math.exp(-step * (i + 1) / 40))) for step in range(4, 41, 4)],
        "train/loss": [(step, math.exp(-step * (i + 1) / 40)) for step in range(1, 41)],
    } for i in range(nb_runs)}


@pytest.mark.parametrize("nb_runs", [3, 20, 50])
def test_runs_keep_one_colour_across_panels_with_the_legend_outside_and_integer_steps(nb_runs):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    curves = curves_of(nb_runs)
    figure = runs_figure(curves, ["eval/f1", "train/loss"], title="children of abc")
    FigureCanvasAgg(figure)
    colours = []
    for axis in figure.axes:
        lines = {line.get_label(): line.get_color() for line in axis.get_lines()}
        colours.append(lines)
        assert axis.get_legend() is None  # one legend for the figure, not one over each panel
        figure.canvas.draw()
        assert all(float(tick).is_integer() for tick in axis.get_xticks())
    assert colours[0] == colours[1] and len(colours[0]) == nb_runs
    assert len({tuple(colour) for colour in colours[0].values()}) == nb_runs  # no colour reused
    legend = figure.legends[0]
    assert [text.get_text() for text in legend.get_texts()] == list(curves)  # the caller's order
    renderer = figure.canvas.get_renderer()
    legend_box = legend.get_window_extent(renderer)
    for axis in figure.axes:  # beside the panels, never over a curve or a title
        assert not legend_box.overlaps(axis.get_tightbbox(renderer))
    assert_no_clipped_text(figure)


def test_many_panels_wrap_into_rows_and_a_single_step_still_gets_whole_ticks():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    curves = {"only": {f"eval/m{i}": [(4, 0.1 * i), (8, 0.2 * i)] for i in range(5)}}
    curves["only"]["train/loss"] = [(5, 1.9)]  # one logged point
    figure = runs_figure(curves, [*curves["only"]], title="one run")
    FigureCanvasAgg(figure)
    width, height = figure.get_size_inches() * figure.dpi
    assert len(figure.axes) == 6 and width <= 1600 and height >= 800  # 3 panels a row, 2 rows
    figure.canvas.draw()
    ticks = figure.axes[-1].get_xticks()
    assert 5 in ticks and all(float(tick).is_integer() for tick in ticks)
    assert figure.legends[0].get_title().get_text() == "1 run"
    assert_no_clipped_text(figure)


def test_run_colors_are_distinct_for_many_runs(tmp_path):
    for nb_runs in (1, 10, 11, 20, 21, 60):
        assert len(set(run_colors(nb_runs))) == nb_runs
    assert plot_runs(curves_of(2), ["eval/f1"], tmp_path / "runs.png").read_bytes()[:8] == PNG
    assert plot_runs(curves_of(2), ["eval/nothing"], tmp_path / "none.png") is None
