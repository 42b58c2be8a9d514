"""A component other than the tagger gets its tracked run through tracking's generic hooks
(:mod:`medkit_exp.tracking.hooks`), built from config by :func:`mlflow_callbacks`: the toy
classifier's weights as an MLflow model, its tags, its own Trainer callback."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from medkit_exp.run_context import RunContext
from medkit_exp.tracking.factory import mlflow_callbacks
from medkit_exp.tracking.hooks import NoTrackingHooks, TrackingHooks
from medkit_exp.training.callbacks import TrainerCallback
from tests.training.toy import ToyTextClassifier, make_texts


class EvaluationCounter(TrainerCallback):
    """A callback the hooks need beside the tracker."""

    def __init__(self) -> None:
        self.evaluations = 0

    def on_evaluate(self, metrics: dict[str, float], step: int) -> None:
        self.evaluations += 1


class ToyClassifierHooks(NoTrackingHooks):
    """The toy classifier's hooks: its vocabulary size as a tag, its weights as a PyTorch model."""

    def __init__(self, run: RunContext, model_name: str = "model"):
        self.component = run.component
        self.model_name = model_name
        self.counter = EvaluationCounter()
        self.artifacts_of: list[int] = []

    def run_tags(self) -> dict[str, str]:
        return {"toy.vocab_size": str(self.component.vocab_size)}

    def callbacks(self) -> list[TrainerCallback]:
        return [self.counter]

    def log_model(self, checkpoint_dir: str, run) -> None:
        import mlflow.pytorch

        classifier = ToyTextClassifier(vocab_size=self.component.vocab_size)
        classifier.load(checkpoint_dir)
        with run.activate():
            mlflow.pytorch.log_model(classifier.model, name=self.model_name, pip_requirements=["torch"],
                                     serialization_format="pickle")  # pt2 traces forward(): a ModuleDict has none

    def log_artifacts(self, run, state) -> None:
        self.artifacts_of.append(state.global_step)
        run.log_artifacts(Path(state.output_dir) / "history.jsonl", "toy")


def toy_run(component: ToyTextClassifier) -> RunContext:
    return RunContext(
        config={}, params={"component": {"vocab_size": component.vocab_size}}, config_yaml="component: toy\n",
        overrides=("trainer.lr=0.01",), splits={"train": make_texts(64, 1), "dev": make_texts(24, 2)},
        data_name="toy", data_source="make_texts",
    )


def test_toy_classifier_model_logged_through_the_generic_hooks(make_trainer, tracking_uri, experiment_name, client):
    import mlflow.pytorch

    component = ToyTextClassifier(dropout=0.0)
    run = toy_run(component)
    run.component = component
    built: list[ToyClassifierHooks] = []

    def hooks_factory(run: RunContext, model_name: str) -> ToyClassifierHooks:
        built.append(ToyClassifierHooks(run, model_name))
        return built[0]

    callbacks = mlflow_callbacks(
        run, model_hooks=[partial(hooks_factory, model_name="toy-classifier")], tracking_uri=tracking_uri,
        experiment_name=experiment_name, log_every_n_steps=1, log_checkpoints=False, plots=False, worker=False,
        tags={"team": "nlp"},
    )
    (hooks,) = built
    assert isinstance(hooks, TrackingHooks) and callbacks[1:] == [hooks.counter]
    assert run.tracking_run_id() is None  # not started yet
    trainer = make_trainer(component=component, callback=callbacks)
    trainer.train()

    run_id = callbacks[0].run_id
    assert run.tracking_run_id() == run_id
    record = client.get_run(run_id)
    assert record.info.status == "FINISHED"
    assert record.data.tags["toy.vocab_size"] == "64" and record.data.tags["team"] == "nlp"
    assert record.data.params["component.vocab_size"] == "64"
    assert {"eval/accuracy", "train/loss"} <= set(record.data.metrics)
    assert [d.dataset.name for d in record.inputs.dataset_inputs] == ["toy-train", "toy-dev"]
    assert hooks.counter.evaluations == 4 and hooks.artifacts_of == [trainer.state.global_step]
    assert [a.path for a in client.list_artifacts(run_id, "toy")] == ["toy/history.jsonl"]

    (output,) = record.outputs.model_outputs  # the logged model, listed among the run's outputs
    logged = client.get_logged_model(output.model_id)
    assert logged.name == "toy-classifier" and logged.source_run_id == run_id
    model = mlflow.pytorch.load_model(logged.artifact_location)
    best = torch.load(Path(trainer.state.best_checkpoint) / "toy_model.pt")
    assert all(torch.equal(model.state_dict()[key], value) for key, value in best.items())


def test_without_model_logging_the_hooks_still_add_their_artifacts(make_trainer, tracking_uri, experiment_name,
                                                                   client):
    component = ToyTextClassifier(dropout=0.0)
    run = toy_run(component)
    run.component = component
    hooks = ToyClassifierHooks(run)
    callbacks = mlflow_callbacks(run, model_hooks=[lambda run: hooks], tracking_uri=tracking_uri,
                                 experiment_name=experiment_name, log_model=False, log_checkpoints=False,
                                 plots=False, worker=False)
    make_trainer(component=component, callback=callbacks, nb_training_epochs=1).train()
    record = client.get_run(callbacks[0].run_id)
    assert not record.outputs.model_outputs and hooks.artifacts_of == [8]


def test_a_hooks_setting_error_names_its_model_hooks_entry():
    import pytest

    from medkit_exp.errors import ConfigError
    from medkit_exp.ner.mlflow.hooks import ner_tracking_hooks

    run = toy_run(ToyTextClassifier())
    with pytest.raises(ConfigError) as raised:
        mlflow_callbacks(run, model_hooks=[partial(ner_tracking_hooks, prediction_sample_size=-1)], worker=False)
    assert raised.value.key == "model_hooks.0.prediction_sample_size" and "must be >= 0" in str(raised.value)
    with pytest.raises(ConfigError) as raised:
        mlflow_callbacks(run, model_hooks=[lambda run: NoTrackingHooks(), partial(ner_tracking_hooks, model_alias="x")])
    assert raised.value.key == "model_hooks.1.model_alias"
