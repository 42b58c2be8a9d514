"""Comparing runs: differing params, best/last metrics, three formats, learning-curve plot."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.entities import Param

from medkit_exp.tracking.compare import best_point, comparison_table, compare_runs, main, render, RunSummary
from medkit_exp.tracking.ops import get_or_create_experiment

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sweep(tracking_uri, tmp_path_factory):
    """Two child runs of a sweep (lr 0.01 and 0.05) and one standalone run (lr 0.002), shared by
    the tests of this module (they only read them)."""
    from mlflow import MlflowClient

    from medkit_exp.tracking import MLflowCallback
    from medkit_exp.training import Trainer, TrainerConfig
    from tests.training.toy import AccuracyComputer, ToyTextClassifier, make_texts

    client, folder = MlflowClient(tracking_uri), tmp_path_factory.mktemp("sweep")
    experiment = "test-compare-sweep"
    parent = client.create_run(get_or_create_experiment(client, experiment), run_name="sweep").info.run_id
    runs = {}
    for name, lr, parent_id in (("lr-small", 0.01, parent), ("lr-big", 0.05, parent), ("alone", 0.002, None)):
        callback = MLflowCallback(
            tracking_uri, experiment, name, params={"model": {"dim": 16}, "trainer": {"lr": lr}},
            parent_run_id=parent_id, plots=False, log_checkpoints=False, artifact_location=str(folder / "artifacts"),
        )
        config = TrainerConfig(output_dir=str(folder / name), learning_rate=lr, batch_size=8, seed=3, logging_steps=2,
                               eval_strategy="steps", eval_steps=4, nb_training_epochs=2)
        Trainer(ToyTextClassifier(dropout=0.0), config, make_texts(64, 1), make_texts(24, 2), AccuracyComputer(),
                callback=[callback]).train()
        runs[name] = callback.run_id
    client.set_terminated(parent)
    return experiment, parent, runs


def _best_and_last(client, run_id, key):
    history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
    return max(value for _, value in history), history[-1][1]


def test_compare_an_experiment_as_csv(sweep, client, tracking_uri):
    experiment_name, parent, runs = sweep
    text = compare_runs(tracking_uri, experiment=experiment_name, metrics=["eval/accuracy", "eval/loss"], fmt="csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {row["run"] for row in rows} == {"sweep", "lr-small", "lr-big", "alone"}
    assert "trainer.lr" in rows[0] and "model.dim" not in rows[0]  # only params that differ
    by_name = {row["run"]: row for row in rows}
    for name, run_id in runs.items():
        best, last = _best_and_last(client, run_id, "eval/accuracy")
        assert float(by_name[name]["best eval/accuracy"]) == pytest.approx(best, abs=1e-4)
        assert float(by_name[name]["last eval/accuracy"]) == pytest.approx(last, abs=1e-4)
        lowest = min(m.value for m in client.get_metric_history(run_id, "eval/loss"))
        assert float(by_name[name]["best eval/loss"]) == pytest.approx(lowest, abs=1e-4)  # a loss: lower is better
    accuracies = [float(row["best eval/accuracy"]) for row in rows if row["best eval/accuracy"]]
    assert accuracies == sorted(accuracies, reverse=True)
    assert rows[-1]["run"] == "sweep"  # no metric: last


def test_compare_the_children_of_a_sweep_with_a_plot(sweep, tracking_uri, tmp_path, capsys):
    _, parent, runs = sweep
    plot = tmp_path / "curves.png"
    assert main(["--tracking-uri", tracking_uri, "--parent-run-id", parent, "--plot", str(plot)]) == 0
    captured = capsys.readouterr()
    table = captured.out
    lines = table.strip().splitlines()
    assert lines[0].startswith("| run | run_id | status | trainer.lr |")
    assert "best eval/loss" in lines[0]  # the default metric without an f1
    assert len(lines) == 4 and "alone" not in table
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert f"learning curves written to {plot}" in captured.err  # the path, where the table is not


def test_the_plot_lists_runs_in_the_tables_order_in_one_colour_each(sweep, client, monkeypatch):
    import medkit_exp.tracking.plots as plots
    from medkit_exp.tracking.compare import plot_comparison, summarize

    experiment_name, _, runs = sweep
    found = client.search_runs([client.get_experiment_by_name(experiment_name).experiment_id])
    summaries = summarize(client, found, ["eval/accuracy"])
    drawn = {}
    monkeypatch.setattr(plots, "_save", lambda figure, path: drawn.setdefault("figure", figure))
    plot_comparison(client, summaries, ["eval/accuracy"], "unused.png")
    figure = drawn["figure"]
    order = [row[0] for row in comparison_table(summaries, ["eval/accuracy"])[1] if row[0] != "sweep"]
    assert [text.get_text() for text in figure.legends[0].get_texts()] == order
    panels = [{line.get_label(): line.get_color() for line in axis.get_lines()} for axis in figure.axes]
    assert [axis.get_title() for axis in figure.axes] == ["eval/accuracy", "train/loss"]
    assert panels[0] == panels[1] and len(set(panels[0].values())) == 3


def test_compare_as_html_through_the_script(sweep, tracking_uri, tmp_path):
    experiment_name = sweep[0]
    output = tmp_path / "runs.html"
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "compare_runs.py"), "--tracking-uri", tracking_uri,
         "--experiment", experiment_name, "--metric", "eval/accuracy", "--format", "html", "--output", str(output)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    text = output.read_text()
    assert text.startswith('<table class="medkit-exp-runs">') and text.count("<tr>") == 5
    assert "<th>best eval/accuracy</th>" in text


def test_unknown_experiment_is_an_error(tracking_uri, capsys):
    assert main(["--tracking-uri", tracking_uri, "--experiment", "no-such-experiment"]) == 2
    assert "no MLflow experiment named 'no-such-experiment'" in capsys.readouterr().err


def test_table_and_formats_without_mlflow():
    summaries = [
        RunSummary("a" * 32, "a", "FINISHED", {"lr": "0.1", "seed": "1"}, {"eval/f1": [(1, 0.5), (2, 0.7), (3, 0.6)]}),
        RunSummary("b" * 32, "b|x", "KILLED", {"lr": "0.2", "seed": "1"}, {"eval/f1": [(1, 0.8), (2, 0.8)]}),
    ]
    headers, rows = comparison_table(summaries, ["eval/f1"])
    assert headers == ["run", "run_id", "status", "lr", "best eval/f1", "best eval/f1 step", "last eval/f1"]
    assert rows == [["b|x", "bbbbbbbb", "KILLED", "0.2", "0.8000", "1", "0.8000"],
                    ["a", "aaaaaaaa", "FINISHED", "0.1", "0.7000", "2", "0.6000"]]
    assert "b\\|x" in render(headers, rows, "markdown")
    assert best_point([(1, 0.3), (2, float("nan")), (3, 0.1)], minimize=True) == (3, 0.1)
    with pytest.raises(ValueError):
        render(headers, rows, "xml")


def test_default_metrics_are_the_summary_f1_first_then_per_label():
    from types import SimpleNamespace

    from medkit_exp.tracking.compare import default_metrics

    keys = ["eval/labels/a/f1", "eval/labels/b/f1", "eval/macro_f1", "eval/f1", "eval/labels/c/f1", "eval/loss"]
    runs = [SimpleNamespace(data=SimpleNamespace(metrics={key: 0.5 for key in keys}))]
    assert default_metrics(runs) == ["eval/f1", "eval/macro_f1", "eval/labels/a/f1", "eval/labels/b/f1"]


def test_pruned_and_failed_trials_and_the_parents_params(client, tracking_uri):
    """A pruned trial's run (KILLED, tag optuna.trial_state=PRUNED) shows as KILLED (pruned), a
    failed one as FAILED; the sweep's parent run keeps its row but its params (the base config,
    model.dim 8 where every trial has 16) do not make a param differ."""
    experiment_id = get_or_create_experiment(client, "test-compare-trial-states")
    parent = client.create_run(experiment_id, run_name="sweep").info.run_id
    client.log_batch(parent, params=[Param("trainer.lr", "0.001"), Param("model.dim", "8")])
    trials = (("trial-0", "0.01", "FINISHED", "COMPLETE"), ("trial-1", "0.05", "KILLED", "PRUNED"),
              ("trial-2", "0.1", "FAILED", "FAIL"))
    for name, lr, status, state in trials:
        run_id = client.create_run(experiment_id, run_name=name, tags={"mlflow.parentRunId": parent}).info.run_id
        client.log_batch(run_id, params=[Param("trainer.lr", lr), Param("model.dim", "16")])
        client.log_metric(run_id, "eval/f1", 0.5, step=2)
        client.set_tag(run_id, "optuna.trial_state", state)
        client.set_terminated(run_id, status)
    client.set_terminated(parent)
    rows = list(csv.DictReader(io.StringIO(
        compare_runs(tracking_uri, experiment="test-compare-trial-states", metrics=["eval/f1"], fmt="csv"))))
    status = {row["run"]: row["status"] for row in rows}
    assert status == {"sweep": "FINISHED", "trial-0": "FINISHED", "trial-1": "KILLED (pruned)", "trial-2": "FAILED"}
    assert "trainer.lr" in rows[0] and "model.dim" not in rows[0]
    children = list(csv.DictReader(io.StringIO(
        compare_runs(tracking_uri, parent_run_id=parent, metrics=["eval/f1"], fmt="csv"))))
    assert sorted(row["status"] for row in children) == ["FAILED", "FINISHED", "KILLED (pruned)"]
