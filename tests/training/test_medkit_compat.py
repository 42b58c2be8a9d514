"""Code written for medkit's training module runs unchanged against ours."""

from __future__ import annotations

import inspect

import pytest

from medkit_exp.training import BatchData, MetricsComputer, TrainableComponent, TrainerCallback, TrainerConfig
from tests.training.toy import AccuracyComputer, ToyTextClassifier

MEDKIT_EVENTS = {
    "on_train_begin": ["config"],
    "on_train_end": [],
    "on_epoch_begin": ["epoch"],
    "on_epoch_end": ["metrics", "epoch", "epoch_duration"],  # what medkit's Trainer passes
    "on_step_begin": ["step_idx", "nb_batches", "phase"],
    "on_step_end": ["step_idx", "nb_batches", "phase"],
    "on_save": ["checkpoint_dir"],
}


def test_toy_component_written_against_medkit_protocol_satisfies_ours():
    assert isinstance(ToyTextClassifier(), TrainableComponent)
    assert isinstance(AccuracyComputer(), MetricsComputer)


@pytest.mark.parametrize(("event", "arguments"), sorted(MEDKIT_EVENTS.items()))
def test_callback_events_keep_medkit_argument_names(event, arguments):
    assert list(inspect.signature(getattr(TrainerCallback, event)).parameters)[1:] == arguments


def test_plain_object_callback_gets_the_events_it_defines(make_trainer):
    class MedkitStyle:  # no base class, only some events, medkit's keyword names
        def __init__(self):
            self.calls = []

        def on_epoch_end(self, metrics, epoch, epoch_duration):
            self.calls.append((epoch, sorted(metrics)))

        def on_save(self, checkpoint_dir):
            self.calls.append(("save",))

    callback = MedkitStyle()
    make_trainer(nb_training_epochs=2, callback=[callback]).train()
    # medkit's order: the epoch ends, then its checkpoint is saved
    assert callback.calls == [(1, ["eval", "train"]), ("save",), (2, ["eval", "train"]), ("save",)]


def test_single_callback_not_in_a_list(tmp_path):
    from medkit_exp.training import Trainer
    from tests.training.toy import make_texts

    class One(TrainerCallback):
        ended = False

        def on_train_end(self):
            One.ended = True

    Trainer(ToyTextClassifier(), TrainerConfig(output_dir=str(tmp_path)), make_texts(4), make_texts(2), callback=One()).train()
    assert One.ended


medkit = pytest.importorskip  # alias, for readability below


def test_medkit_classes_are_the_same_shape():
    training = medkit("medkit.training", reason="medkit-lib not installed (pip install .[medkit])")
    ours = {f.name: f.default for f in TrainerConfig.__dataclass_fields__.values()}
    theirs = {f.name: f.default for f in training.TrainerConfig.__dataclass_fields__.values()}
    assert {k: ours[k] for k in theirs} == theirs
    assert isinstance(ToyTextClassifier(), training.TrainableComponent)
    batch = BatchData(a=[1, 2])
    assert batch[0] == training.BatchData(a=[1, 2])[0]


def test_medkit_callbacks_run_with_our_trainer(make_trainer):
    training = medkit("medkit.training", reason="medkit-lib not installed (pip install .[medkit])")

    class Counting(training.TrainerCallback):
        epochs = 0

        # medkit's base class names the last argument epoch_time but medkit's Trainer passes
        # epoch_duration=...; ours passes the same keyword, so callbacks that work there work here.
        def on_epoch_end(self, metrics, epoch, epoch_duration):
            Counting.epochs += 1

    make_trainer(nb_training_epochs=2, callback=[Counting(), training.DefaultPrinterCallback()]).train()
    assert Counting.epochs == 2


def test_medkit_hf_entity_matcher_trains_with_our_trainer(tiny_bert_dir, tmp_path):
    medkit("medkit.text.ner.hf_entity_matcher_trainable", reason="medkit-lib[hf-entity-matcher] not installed")
    from medkit.core.text import Entity, Span, TextDocument
    from medkit.text.metrics.ner import SeqEvalMetricsComputer
    from medkit.text.ner.hf_entity_matcher_trainable import HFEntityMatcherTrainable

    from medkit_exp.training import Trainer

    def document(text, mentions):
        doc = TextDocument(text=text)
        for label, mention in mentions:
            start = text.index(mention)
            doc.anns.add(Entity(label=label, spans=[Span(start, start + len(mention))], text=mention))
        return doc

    train = [
        document("the patient has fever", [("problem", "fever")]),
        document("treated with insulin daily", [("treatment", "insulin")]),
        document("chest pain and cough since today", [("problem", "chest pain"), ("problem", "cough")]),
    ] * 4
    component = HFEntityMatcherTrainable(str(tiny_bert_dir), labels=["problem", "treatment"], tagging_scheme="iob2")
    metrics = SeqEvalMetricsComputer(id_to_label=component.id_to_label, tagging_scheme="iob2")
    config = TrainerConfig(output_dir=str(tmp_path), batch_size=4, nb_training_epochs=3, learning_rate=5e-3, seed=0)
    trainer = Trainer(component, config, train, train[:3], metrics, callback=[])
    history = trainer.train()
    assert len(history) == 3
    assert history[-1]["train"]["loss"] < history[0]["train"]["loss"]
    assert "problem_f1-score" in history[-1]["eval"]
    assert (tmp_path / "history.jsonl").exists()
    reloaded = HFEntityMatcherTrainable(trainer.best_checkpoint, labels=["problem", "treatment"], tagging_scheme="iob2")
    assert reloaded.id_to_label == component.id_to_label
