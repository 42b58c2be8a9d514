"""The dev report of NER runs (confusion of entity labels, per-label bars, prediction sample) and
the NER hooks on a component that is not a tagger."""

from __future__ import annotations

import json

import pytest

from medkit_exp.ner.documents import Entity, TextDocument
from medkit_exp.ner.mlflow.report import (
    MISSED,
    SPURIOUS,
    entity_confusion,
    label_scores,
    pair_by_spans,
    sample_markdown,
    write_dev_report,
)

TEXT = "Fever and cough, treated with aspirin; chest X-ray normal."


def documents():
    gold = TextDocument(TEXT, [
        Entity("problem", [(0, 5)]),        # found
        Entity("problem", [(10, 15)]),      # found with another label
        Entity("treatment", [(30, 37)]),    # boundary error: missed + spurious
        Entity("test", [(39, 50)]),         # missed
    ], doc_id="d1")
    pred = TextDocument(TEXT, [
        Entity("problem", [(0, 5)], score=0.9),
        Entity("test", [(10, 15)], score=0.6),
        Entity("treatment", [(30, 38)], score=0.5),
        Entity("problem", [(51, 57)], score=0.4),  # spurious
    ], doc_id="d1")
    empty_gold, empty_pred = TextDocument("Nothing here.", doc_id="d2"), TextDocument("Nothing here.", doc_id="d2")
    return [gold, empty_gold], [pred, empty_pred]


def test_confusion_pairs_entities_by_equal_spans_with_missed_and_spurious():
    gold, pred = documents()
    counts = entity_confusion(gold, pred)
    assert counts == {
        ("problem", "problem"): 1, ("problem", "test"): 1, ("treatment", MISSED): 1, ("test", MISSED): 1,
        (SPURIOUS, "treatment"): 1, (SPURIOUS, "problem"): 1,
    }


def test_same_spans_pair_equal_labels_first():
    same = [(3, 8)]
    gold = [Entity("a", same), Entity("b", same)]
    pairs, missed, spurious = pair_by_spans(gold, [Entity("b", same), Entity("c", same)])
    assert [(g.label, p.label) for g, p in pairs] == [("b", "b"), ("a", "c")] and not missed and not spurious


def test_label_scores_from_flat_metric_names():
    scores = {"labels/problem/precision": 0.5, "labels/problem/recall": 1.0, "labels/problem/f1": 0.6667,
              "labels/problem/support": 2.0, "f1": 0.3, "labels/test/f1": 0.0}
    assert label_scores(scores, ["problem", "test", "treatment"]) == {
        "problem": {"precision": 0.5, "recall": 1.0, "f1": 0.6667, "support": 2.0}, "test": {"f1": 0.0},
    }


def test_sample_markdown_marks_each_entity():
    gold, pred = documents()
    text = sample_markdown(gold, pred, 1)
    assert "## d1" in text and "## d2" not in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| spans")]
    verdicts = [row.rstrip(" |").rsplit("| ", 1)[1] for row in rows]
    assert sorted(verdicts) == ["label", "missed", "missed", "ok", "spurious", "spurious"]
    assert "| 0-5 | Fever | problem | problem | ok |" in text


def test_write_dev_report_files(tmp_path):
    gold, pred = documents()
    folders = write_dev_report(gold, pred, ["problem", "treatment", "test"], tmp_path, sample_size=1, title="t")
    assert [f.name for f in folders] == ["plots", "predictions"]
    for name in ("label_scores.png", "confusion_matrix.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    scores = json.loads((tmp_path / "predictions" / "dev_scores.json").read_text())
    assert scores["precision"] == 0.25 and scores["recall"] == 0.25 and scores["labels/problem/recall"] == 0.5
    assert scores["annotated"]["recall"] == 0.25 and "ceiling" not in scores  # no nesting here; no tagger given
    records = [json.loads(line) for line in (tmp_path / "predictions" / "dev_sample.jsonl").read_text().splitlines()]
    assert len(records) == 1 and records[0]["doc_id"] == "d1"
    assert records[0]["predicted"][1] == {"label": "test", "spans": [[10, 15]], "text": "cough", "score": 0.6}


def test_hooks_log_nothing_for_a_component_that_is_not_a_tagger(make_trainer, make_callback, client, caplog):
    import logging

    from medkit_exp.ner.mlflow.hooks import NERTrackingHooks

    gold, _ = documents()
    hooks = NERTrackingHooks(gold)
    callback = make_callback(plots=False, log_checkpoints=False, hooks=[hooks])
    with caplog.at_level(logging.INFO, logger="medkit_exp"):
        make_trainer(callback=[callback], nb_training_epochs=1).train()
    run = client.get_run(callback.run_id)
    assert run.info.status == "FINISHED" and "model.uri" not in run.data.tags
    assert not run.outputs.model_outputs and not client.list_artifacts(callback.run_id, "predictions")
    assert "is not a medkit_exp tagger folder" in caplog.text


def test_an_alias_needs_a_registered_model_name():
    from medkit_exp.errors import ConfigError
    from medkit_exp.ner.mlflow.hooks import NERTrackingHooks

    with pytest.raises(ConfigError, match="model_alias"):
        NERTrackingHooks([], model_alias="champion")


def test_no_progress_bar_restores_the_environment(monkeypatch):
    import os

    from medkit_exp.ner.mlflow.model import PROGRESS_BAR_ENV, no_progress_bar

    monkeypatch.delenv(PROGRESS_BAR_ENV, raising=False)
    with no_progress_bar():
        assert os.environ[PROGRESS_BAR_ENV] == "false"
    assert PROGRESS_BAR_ENV not in os.environ


def test_dev_report_predicts_with_the_trained_tagger_when_it_holds_the_checkpoint_weights(
    tiny_bert_dir, make_callback, client, tmp_path
):
    """The report on the last checkpoint (saved at the final step) comes from the tagger in memory,
    not from a copy loaded from disk, and its scores equal those of the checkpoint reloaded."""
    from medkit_exp.ner import demo_corpus_dir, read_brat
    from medkit_exp.ner.metrics import evaluate_documents
    from medkit_exp.ner.prediction import predict
    from medkit_exp.ner.tagger import HFEntityMatcherTrainable
    from medkit_exp.ner.mlflow.hooks import NERTrackingHooks
    from medkit_exp.training import Trainer, TrainerConfig

    labels = ["problem", "treatment", "test"]
    train, dev = (list(read_brat(f"{demo_corpus_dir()}/{split}"))[:8] for split in ("train", "dev"))
    tagger = HFEntityMatcherTrainable(str(tiny_bert_dir), labels=labels, tagging_scheme="iob2")
    hooks = NERTrackingHooks(dev, sample_size=2, trained_component=tagger)
    callback = make_callback(plots=False, log_checkpoints=False, log_model=False, hooks=[hooks])
    config = TrainerConfig(output_dir=str(tmp_path / "run"), max_steps=2, batch_size=4, eval_strategy="no", seed=3)
    trainer = Trainer(tagger, config, train, None, callback=[callback])
    trainer.train()
    assert hooks._loaded is not None and hooks._loaded[1] is tagger  # no second copy was loaded

    folder = tmp_path / "downloaded"
    client.download_artifacts(callback.run_id, "predictions", str(folder))
    logged = json.loads((folder / "predictions" / "dev_scores.json").read_text())
    reloaded = HFEntityMatcherTrainable.from_pretrained(trainer.last_checkpoint)
    expected = evaluate_documents(dev, predict(reloaded, [doc.with_entities([]) for doc in dev]))
    annotated, ceiling = logged.pop("annotated"), logged.pop("ceiling")
    assert logged == pytest.approx(json.loads(json.dumps(expected)))
    assert annotated == pytest.approx(logged)  # the demo dev set holds no nesting: the same gold
    assert ceiling["annotated"] == logged["labels/problem/support"] + logged["labels/test/support"] + logged[
        "labels/treatment/support"]


def test_dev_report_reuses_the_evaluation_at_the_best_checkpoint(tiny_bert_dir, make_callback, client, tmp_path, monkeypatch):
    """With the Trainer's metrics computer, the report on the best checkpoint (not the last) takes
    the predictions of the evaluation at its step: no checkpoint is loaded, nothing predicted
    again, and its scores equal those of the best checkpoint reloaded and predicting the dev set."""
    import medkit_exp.ner.prediction as predict_module
    from medkit_exp.ner import demo_corpus_dir, read_brat
    from medkit_exp.ner.metrics import evaluate_documents
    from medkit_exp.ner.tagger import HFEntityMatcherTrainable
    from medkit_exp.ner.mlflow.hooks import NERTrackingHooks
    from medkit_exp.training import Trainer, TrainerConfig

    train, dev = (list(read_brat(f"{demo_corpus_dir()}/{split}"))[:8] for split in ("train", "dev"))
    tagger = HFEntityMatcherTrainable(str(tiny_bert_dir), labels=["problem", "treatment", "test"], tokenizer_max_length=32)
    computer = tagger.make_metrics_computer()
    hooks = NERTrackingHooks(dev, sample_size=2, trained_component=tagger, metrics_computer=computer)
    callback = make_callback(plots=False, log_checkpoints=False, log_model=False, hooks=[hooks])
    # The highest loss ranks first: the best checkpoint is the first one, not the last.
    config = TrainerConfig(output_dir=str(tmp_path / "run"), max_steps=3, batch_size=4, eval_strategy="steps",
                           eval_steps=1, seed=3, learning_rate=1e-3, minimize_checkpoint_metric=False, keep_best_k=1)
    trainer = Trainer(tagger, config, train, dev, computer, callback=[callback, hooks.recorder])
    monkeypatch.setattr(predict_module, "predict", lambda *args, **kwargs: pytest.fail("the dev set was predicted again"))
    trainer.train()
    monkeypatch.undo()
    assert trainer.best_checkpoint != trainer.last_checkpoint
    assert hooks._loaded is None  # no checkpoint was loaded
    assert len(hooks.recorder._rows) <= 3  # the evaluations of the best, the previous last and the last checkpoints

    folder = tmp_path / "downloaded"
    client.download_artifacts(callback.run_id, "predictions", str(folder))
    logged = json.loads((folder / "predictions" / "dev_scores.json").read_text())
    best = HFEntityMatcherTrainable.from_pretrained(trainer.best_checkpoint)
    expected = evaluate_documents(dev, predict_module.predict(best, [doc.with_entities([]) for doc in dev]))
    assert {"annotated", "ceiling"} <= set(logged)
    assert {k: v for k, v in logged.items() if k not in ("annotated", "ceiling")} == pytest.approx(
        json.loads(json.dumps(expected)))
    assert sum(1 for line in (folder / "predictions" / "dev_sample.jsonl").open()) == 2


def _tiny_tagger_run(tiny_bert_dir, callback_factory, tmp_path, **hook_options):
    from medkit_exp.ner import demo_corpus_dir, read_brat
    from medkit_exp.ner.tagger import HFEntityMatcherTrainable
    from medkit_exp.ner.mlflow.hooks import NERTrackingHooks
    from medkit_exp.training import Trainer, TrainerConfig

    train, dev = (list(read_brat(f"{demo_corpus_dir()}/{split}"))[:8] for split in ("train", "dev"))
    tagger = HFEntityMatcherTrainable(str(tiny_bert_dir), labels=["problem", "treatment", "test"], tagging_scheme="iob2")
    hooks = NERTrackingHooks(dev, sample_size=2, trained_component=tagger, **hook_options)
    callback = callback_factory(hooks=[hooks])
    config = TrainerConfig(output_dir=str(tmp_path / "run"), max_steps=2, batch_size=4, eval_strategy="no", seed=3)
    Trainer(tagger, config, train, None, callback=[callback]).train()
    return callback


def test_model_and_dev_report_through_the_tracking_worker(tiny_bert_dir, make_callback, client, tmp_path):
    """The model is logged and the report's plots drawn in the worker; the report's files and the
    predictions come from this process."""
    callback = _tiny_tagger_run(tiny_bert_dir, lambda **kw: make_callback(worker=True, **kw), tmp_path)
    run = client.get_run(callback.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["model.uri"].startswith("models:/")
    files = {a.path for folder in ("plots", "predictions") for a in client.list_artifacts(callback.run_id, folder)}
    assert files == {"plots/learning_curves.png", "plots/label_scores.png", "plots/confusion_matrix.png",
                     "predictions/dev_scores.json", "predictions/dev_scores.md", "predictions/dev_sample.jsonl",
                     "predictions/dev_sample.md"}


@pytest.mark.parametrize("validate", [False, True])
def test_model_input_example_only_when_validated(tiny_bert_dir, make_callback, client, tmp_path, validate):
    """MLflow validates every input example it logs (it loads the logged model and predicts it):
    the model has one with ``validate_model`` only; it is logged either way, with its signature."""
    from mlflow.models import Model

    callback = _tiny_tagger_run(tiny_bert_dir, lambda **kw: make_callback(plots=False, log_checkpoints=False, **kw),
                                tmp_path, validate_model=validate)
    model_uri = client.get_run(callback.run_id).data.tags["model.uri"]
    assert model_uri.startswith("models:/")
    folder = client.get_logged_model(model_uri.removeprefix("models:/")).artifact_location
    model = Model.load(folder.removeprefix("file://"))
    assert (model.saved_input_example_info is not None) == validate
    assert model.signature.inputs.input_names() == ["text"]


def test_logged_model_holds_the_tagger_files_without_the_training_state(
    tiny_bert_dir, client, experiment_name, tmp_path
):
    """The model's tagger artifact is the checkpoint's tagger folder less its optimizer, scheduler
    and RNG states; the model loads and predicts from the store."""
    import os

    import mlflow
    import pandas as pd

    from medkit_exp.ner.tagger import HFEntityMatcherTrainable
    from medkit_exp.ner.mlflow.model import log_tagger_model
    from medkit_exp.tracking.run_handle import RunHandle

    checkpoint = tmp_path / "checkpoint-0000001"
    HFEntityMatcherTrainable(str(tiny_bert_dir), labels=["problem"]).save(checkpoint)
    for name in ("trainer_state.pt", "optimizer.pt", "scheduler.pt", "trainer_config.yml"):  # training-only
        (checkpoint / name).write_bytes(b"training state")
    experiment_id = client.create_experiment(experiment_name, artifact_location=str(tmp_path / "store"))
    run_id = client.create_run(experiment_id).info.run_id
    info = log_tagger_model(checkpoint, RunHandle(run_id, client.tracking_uri), ["Fever and cough."])
    folder = client.get_logged_model(info.model_id).artifact_location.removeprefix("file://")
    assert os.path.isfile(f"{folder}/artifacts/tagger/model.safetensors")
    for name in ("trainer_state.pt", "optimizer.pt", "scheduler.pt", "trainer_config.yml"):
        assert not os.path.exists(f"{folder}/artifacts/tagger/{name}")
    model = mlflow.pyfunc.load_model(folder)
    assert len(model.predict(pd.DataFrame({"text": ["Fever and cough.", "Pain."]}))) == 2


def nested_documents():
    """A dev document whose gold the policies flattened (outer kept), and a prediction of it."""
    text = "cancers colorectaux et fièvre"
    outer, inner, fever = Entity("problem", [(0, 19)]), Entity("problem", [(0, 7)]), Entity("problem", [(23, 29)])
    gold = TextDocument(text, [outer, fever], doc_id="n1", annotated=[outer, inner, fever])
    return [gold], [TextDocument(text, [Entity("problem", [(0, 19)]), Entity("problem", [(23, 29)])], doc_id="n1")]


def test_dev_report_scores_against_the_documents_as_annotated_with_the_ceiling(tmp_path):
    gold, pred = nested_documents()
    ceiling = {"ceiling": 2 / 3, "expressible": 2.0, "annotated": 3.0, "labels/problem/ceiling": 2 / 3}
    write_dev_report(gold, pred, ["problem"], tmp_path, sample_size=1, ceiling=ceiling)
    scores = json.loads((tmp_path / "predictions" / "dev_scores.json").read_text())
    assert scores["recall"] == 1.0 and scores["labels/problem/support"] == 2.0  # after the policies: all found
    assert scores["annotated"]["recall"] == 2 / 3 and scores["annotated"]["labels/problem/support"] == 3.0
    assert scores["annotated"]["precision"] == 1.0 and scores["ceiling"] == ceiling
    table = (tmp_path / "predictions" / "dev_scores.md").read_text()
    assert "| micro | 1.0000 | 1.0000 | 1.0000 | 2 | 1.0000 | 0.6667 | 0.8000 | 3 | 0.6667 |" in table
    assert "| problem | 1.0000 | 1.0000 | 1.0000 | 2 | 1.0000 | 0.6667 | 0.8000 | 3 | 0.6667 |" in table
    assert "Expressible: 2 of 3 gold entities as annotated." in table and "the prediction sample use this gold" in table
    (record,) = [json.loads(line) for line in (tmp_path / "predictions" / "dev_sample.jsonl").read_text().splitlines()]
    assert len(record["gold"]) == 2 and [e["spans"] for e in record["gold_annotated"]] == [[[0, 19]], [[0, 7]], [[23, 29]]]
    assert "against the gold after the data policies" in (tmp_path / "predictions" / "dev_sample.md").read_text()


def test_the_hooks_report_the_ceiling_of_the_run_tagger(tiny_bert_dir):
    from medkit_exp.ner.mlflow.hooks import NERTrackingHooks
    from medkit_exp.ner.tagger import HFEntityMatcherTrainable

    gold, _ = nested_documents()
    tagger = HFEntityMatcherTrainable(str(tiny_bert_dir), labels=["problem"], tagging_scheme="iob2")
    hooks = NERTrackingHooks(gold, trained_component=tagger)
    assert hooks.ceiling(tagger) == {
        "ceiling": 2 / 3, "expressible": 2.0, "annotated": 3.0, "labels/problem/ceiling": 2 / 3
    }
