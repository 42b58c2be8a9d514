"""End to end: what a tracked ``python -m medkit_exp +experiment=ner debug=fast`` run leaves in a
real MLflow store (sqlite), the logged model loaded back, and the run reproduced."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.test_cli import ROOT
from tests.tracking.conftest import APP_MODEL_NAME
from tests.tracking.helpers import metric_steps


def _recent_commits() -> list[str]:
    """Commits made while the session's run ran (others commit in this checkout too)."""
    done = subprocess.run(["git", "log", "-20", "--format=%H"], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.split()


def artifact_paths(client, run_id: str, path: str | None = None) -> set[str]:
    paths = set()
    for info in client.list_artifacts(run_id, path):
        if info.is_dir:
            paths |= artifact_paths(client, run_id, info.path)
        else:
            paths.add(info.path)
    return paths


def test_cli_run_records_params_metrics_datasets_artifacts_model_and_tags(app_run, client):
    run = client.get_run(app_run["run_id"])
    assert run.info.status == "FINISHED"
    params, tags = run.data.params, run.data.tags
    assert params["trainer.max_steps"] == "4" and params["component.model_name_or_path"] == "tiny-random"
    assert json.loads(params["data.labels"]) == ["problem", "treatment", "test"] and params["seed"] == "42"
    # metric histories, step = optimizer step
    assert metric_steps(client, run.info.run_id, "train/loss") == [1, 2, 3, 4]
    assert metric_steps(client, run.info.run_id, "eval/f1") == [2, 4]
    assert metric_steps(client, run.info.run_id, "eval/labels/problem/f1") == [2, 4]
    assert metric_steps(client, run.info.run_id, "best/eval/f1") == [2, 4]  # the best so far, at each evaluation
    assert not any(key.endswith("support") for key in run.data.metrics)  # supports: a table, logged once
    assert any(key.startswith("system/") for key in run.data.metrics), sorted(run.data.metrics)
    # dataset inputs
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"demo-train", "demo-dev"}
    assert json.loads(inputs["demo-dev"].dataset.profile)["num_records"] == int(tags["data.demo-dev.count"]) > 0
    assert {t.key: t.value for t in inputs["demo-train"].tags}["mlflow.data.context"] == "training"
    # artifacts: config, history, checkpoint, learning curves and the dev report
    artifacts = artifact_paths(client, run.info.run_id)
    expected = {
        "config/config.yaml", "config/overrides.yaml", "history/history.jsonl", "plots/learning_curves.png",
        "plots/label_scores.png", "plots/confusion_matrix.png", "predictions/dev_sample.jsonl",
        "predictions/dev_sample.md", "predictions/dev_scores.json", "checkpoints/best/model.safetensors",
        "data/label_supports.json",
    }
    assert expected <= artifacts, sorted(artifacts)
    # tags
    assert tags["experiment_name"] == "app-run-test" and tags["status"] == "FINISHED" and tags["global_step"] == "4"
    assert tags["versions.medkit_exp"] and tags["versions.torch"] and "+experiment=ner" in tags["command"]
    # started outside any git repository: the package's own commit is recorded, the working directory's is none
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert tags["medkit_exp.git.commit"] == tags["mlflow.source.git.commit"] and len(tags["medkit_exp.git.commit"]) == 40
    assert tags["medkit_exp.git.commit"] in (head, *_recent_commits()) and tags["medkit_exp.source"] == f"git checkout {ROOT}"
    assert not any(key.startswith(("workdir.", "git.")) for key in tags)
    # the run's folder is a tag; params are the values used, not the run's folders
    assert tags["output_dir"] == str(Path(app_run["run_dir"]).resolve())
    assert not {"paths.output_dir", "trainer.output_dir"} & set(params)
    assert params["trainer.learning_rate"] == params["optimizer.lr"] and params["optimizer.name"] == "adamw"
    assert tags["data.demo-train.digest"] and tags["checkpoint.best"].startswith("checkpoint-")
    assert tags["tagger.label_map"] == "O B-problem I-problem B-test I-test B-treatment I-treatment"
    assert tags["tagger.label_map_origin"] == "new head of 7 tags"  # tiny-random: an encoder without a head
    # the model: a logged model of this run, registered, with the alias on that version
    assert [output.model_id for output in run.outputs.model_outputs] == [tags["model.uri"].split("/")[-1]]
    version = client.get_model_version_by_alias(APP_MODEL_NAME, "candidate")
    assert tags["model.registered"] == f"{APP_MODEL_NAME}/{version.version}" and version.run_id == run.info.run_id


def test_the_logged_model_is_named_sourced_and_carries_its_evaluation(app_run, client):
    run = client.get_run(app_run["run_id"])
    (output,) = run.outputs.model_outputs
    model = client.get_logged_model(output.model_id)
    assert model.name == "app-run-test-tagger"  # <experiment>-tagger, not "model"
    # the training's command, though the tracking worker (python -c) logged it
    assert model.tags["mlflow.source.name"] == run.data.tags["mlflow.source.name"]
    assert model.tags["mlflow.source.name"].endswith("__main__.py")
    # the best evaluation's metrics, linked to the model and to the dev set, at the best step
    linked = {metric.key: metric for metric in model.metrics}
    best_step = int(run.data.metrics["best/step"])
    assert linked["eval/f1"].value == run.data.metrics["best/eval/f1"] and linked["eval/f1"].step == best_step
    assert linked["eval/f1"].dataset_name == "demo-dev"
    assert linked["eval/f1"].dataset_digest == run.data.tags["data.demo-dev.digest"]
    # the run's own history is unchanged: one point per evaluation
    assert metric_steps(client, run.info.run_id, "eval/f1") == [2, 4]


def test_label_supports_are_one_table_of_the_dev_split(app_run, client, tmp_path):
    from mlflow.artifacts import download_artifacts

    path = download_artifacts(run_id=app_run["run_id"], artifact_path="data/label_supports.json",
                              dst_path=str(tmp_path), tracking_uri=app_run["tracking_uri"])
    table = json.loads(Path(path).read_text(encoding="utf-8"))
    assert table["columns"] == ["split", "label", "support"]
    assert [row[:2] for row in table["data"]] == [["dev", "problem"], ["dev", "test"], ["dev", "treatment"]]
    assert sum(row[2] for row in table["data"]) > 0 and all(isinstance(row[2], int) for row in table["data"])


def test_dev_report_sample_and_scores(app_run, client, tmp_path):
    from mlflow.artifacts import download_artifacts

    folder = download_artifacts(run_id=app_run["run_id"], artifact_path="predictions", dst_path=str(tmp_path),
                                tracking_uri=app_run["tracking_uri"])
    records = [json.loads(line) for line in open(f"{folder}/dev_sample.jsonl", encoding="utf-8")]
    assert len(records) == 5  # tracking.prediction_sample_size
    for record in records:
        for entity in record["gold"] + record["predicted"]:
            (start, end), = entity["spans"]
            assert record["text"][start:end] == entity["text"]
    scores = json.loads(open(f"{folder}/dev_scores.json", encoding="utf-8").read())
    assert {"precision", "recall", "f1", "labels/problem/f1", "labels/test/support"} <= set(scores)
    # The application gives the Trainer the recorder: the report reuses the best step's evaluation.
    assert "Dev report on checkpoint-" in (Path(app_run["run_dir"]) / "cli.log").read_text(encoding="utf-8")


def test_logged_model_loads_and_predicts_entities_with_offsets(app_run, client, monkeypatch):
    import mlflow
    import pandas as pd

    from medkit_exp.ner.documents import TextDocument
    from medkit_exp.ner.prediction import predict
    from medkit_exp.ner.mlflow.model import entity_records

    monkeypatch.setenv("MLFLOW_TRACKING_URI", app_run["tracking_uri"])  # the registry's URI too
    model = mlflow.pyfunc.load_model(f"models:/{APP_MODEL_NAME}@candidate")
    assert model.metadata.signature.inputs.input_names() == ["text"]
    # no input example: MLflow validates every one it logs, and validate_model is off by default
    assert model.metadata.get_input_schema() is not None and model.metadata.saved_input_example_info is None
    texts = [
        "A 79-year-old woman with known heart failure was readmitted with orthopnea.",
        "Patient sous metformine, glycémie à jeun 1,32 g/L.",
        "Chest X-ray showed pulmonary edema; furosemide was started.",
    ]
    entities = model.predict(pd.DataFrame({"text": texts}))
    assert len(entities) == len(texts)
    assert sum(map(len, entities)) > 0  # the tiny random model predicts (mostly wrong) entities
    for text, found in zip(texts, entities):
        for entity in found:
            assert set(entity) == {"start", "end", "label", "text", "score"}
            assert 0 <= entity["start"] < entity["end"] <= len(text) and text[entity["start"]:entity["end"]] == entity["text"]
            assert entity["label"] in {"problem", "treatment", "test"} and 0.0 <= entity["score"] <= 1.0
    # the same entities as the run's best checkpoint predicts directly
    best = app_run["run_dir"] / "checkpoints" / client.get_run(app_run["run_id"]).data.tags["checkpoint.best"]
    assert entities == entity_records(predict(best, [TextDocument(text) for text in texts]))


def test_reproduce_repeats_every_metric_exactly(app_run, client, capfd, caplog, monkeypatch):
    from medkit_exp.reproduce import compare_metrics, main

    monkeypatch.chdir(app_run["cwd"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    output_dir = app_run["cwd"] / "reproduced"
    code = main([app_run["run_id"], "--tracking-uri", app_run["tracking_uri"], "--output-dir", str(output_dir)])
    out, err = capfd.readouterr()
    assert code == 0, (out[-3000:], err[-3000:])
    assert "All metrics match." in out and "MISMATCH" not in out
    assert "no git commit" not in caplog.text  # made outside a git repository, the run recorded the package's commit
    assert "param " not in caplog.text  # no param differs but the run's own folder
    recorded = client.get_run(app_run["run_id"])
    new = client.search_runs([recorded.info.experiment_id], f"tags.reproduces = '{app_run['run_id']}'")[0]
    assert new.data.tags["output_dir"] == str(output_dir.resolve())
    assert new.data.params["trainer.max_steps"] == "4" and new.data.params["seed"] == "42"
    assert "model.registered" not in new.data.tags  # the recorded run's alias stays on its model
    assert client.get_model_version_by_alias(APP_MODEL_NAME, "candidate").run_id == app_run["run_id"]
    comparisons = compare_metrics(client, recorded, new)
    assert {c.key for c in comparisons} >= {"eval/f1", "eval/loss", "train/loss", "train/grad_norm"}
    for comparison in comparisons:  # same steps, same values, bit for bit
        assert comparison.recorded == comparison.reproduced and comparison.recorded, comparison.key


def test_the_app_runs_record_holds_the_experiment_not_its_wiring(app_run, client):
    """Params without ``_target_``/``_partial_``, tracking settings or printer wiring; ``best/*``
    for the summary metrics only (no per-label copies), and best/step."""
    run = client.get_run(app_run["run_id"])
    params, metrics = run.data.params, run.data.metrics
    assert not [key for key in params if key.endswith(("._target_", "._partial_"))]
    assert not [key for key in params if key.startswith(("tracking.", "callbacks.printer", "callbacks.tracking"))]
    assert params["callbacks.early_stopping"] == "None"  # off: a choice of the experiment, recorded
    best = {key for key in metrics if key.startswith("best/")}
    assert {"best/eval/f1", "best/eval/precision", "best/eval/recall", "best/eval/loss", "best/step"} <= best
    assert not [key for key in best if key.startswith("best/eval/labels/")]
