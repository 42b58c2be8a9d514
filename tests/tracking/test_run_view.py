"""What a researcher sees in MLflow: experiments opened as model training, best values as
metrics that rank runs, pruned trials KILLED (real sqlite store, checked with MlflowClient)."""

from __future__ import annotations

import logging

from medkit_exp.tracking.best import BestValues
from medkit_exp.tracking.ops import EXPERIMENT_KIND_TAG, TRAINING_KIND, get_or_create_experiment
from medkit_exp.training.callbacks import TrainerCallback


def test_experiments_made_by_a_run_are_training_experiments(make_trainer, make_callback, client, experiment_name):
    callback = make_callback(plots=False, log_checkpoints=False)
    make_trainer(callback=[callback], nb_training_epochs=1).train()
    assert client.get_experiment_by_name(experiment_name).tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND


def test_an_experiment_kind_set_by_the_user_is_left_alone(client, experiment_name):
    experiment_id = client.create_experiment(experiment_name, tags={EXPERIMENT_KIND_TAG: "genai_development"})
    assert get_or_create_experiment(client, experiment_name) == experiment_id
    assert client.get_experiment(experiment_id).tags[EXPERIMENT_KIND_TAG] == "genai_development"


def test_an_older_experiment_without_a_kind_gets_one(client, experiment_name):
    experiment_id = client.create_experiment(experiment_name)
    get_or_create_experiment(client, experiment_name)
    assert client.get_experiment(experiment_id).tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND


def test_best_values_are_metrics_at_each_evaluation(make_trainer, make_callback, client):
    callback = make_callback(plots=False, log_checkpoints=False)
    make_trainer(callback=[callback]).train()
    run = client.get_run(callback.run_id)
    history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "eval/accuracy"))
    best = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "best/eval/accuracy"))
    steps = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "best/step"))
    assert [step for step, _ in best] == [step for step, _ in history]  # logged at every evaluation
    for index, (step, value) in enumerate(best):
        so_far = history[: index + 1]
        top = max(v for _, v in so_far)
        assert value == top
        best_step = min(s for s, v in so_far if v == top)  # the first of equal values stays best
        assert dict(steps)[step] == best_step
    # companions: the eval loss of the best evaluation, not the last one
    losses = dict((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "eval/loss"))
    assert run.data.metrics["best/eval/loss"] == losses[int(run.data.metrics["best/step"])]
    assert "best_metric" not in run.data.tags


def test_the_best_of_a_minimised_metric_is_its_lowest():
    best = BestValues("loss", minimize=True)
    best.update({"eval/loss": 2.0, "eval/f1": 0.1}, step=1)
    best.update({"eval/loss": 1.0, "eval/f1": 0.2}, step=2)
    assert best.update({"eval/loss": 3.0, "eval/f1": 0.9}, step=3) == {
        "best/eval/loss": 1.0, "best/eval/f1": 0.2, "best/step": 2.0}
    assert BestValues("loss").update({"eval/loss": float("nan")}, step=1) == {}


def _run_with_f1(client, experiment_id: str, name: str, f1s: list[float]) -> str:
    """A run whose eval/f1 curve is ``f1s`` (steps 1, 2, ...) and its best/* as the callback logs them."""
    best = BestValues("f1", minimize=False)
    run_id = client.create_run(experiment_id, run_name=name).info.run_id
    for step, f1 in enumerate(f1s, start=1):
        for key, value in {"eval/f1": f1, **best.update({"eval/f1": f1}, step)}.items():
            client.log_metric(run_id, key, value, step=step)
    client.set_terminated(run_id)
    return run_id


def test_sorting_by_best_eval_f1_ranks_runs_by_their_best(client, experiment_name):
    from medkit_exp.tracking.compare import ranked, summarize

    experiment_id = get_or_create_experiment(client, experiment_name)
    peaked = _run_with_f1(client, experiment_id, "peaked", [0.5, 0.9, 0.4])  # best 0.9, last 0.4
    steady = _run_with_f1(client, experiment_id, "steady", [0.6, 0.7, 0.7])  # best 0.7, last 0.7
    late = _run_with_f1(client, experiment_id, "late", [0.2, 0.3, 0.8])  # best 0.8, last 0.8
    by_last = client.search_runs([experiment_id], order_by=["metrics.`eval/f1` DESC"])
    assert [r.info.run_id for r in by_last] == [late, steady, peaked]  # what the runs table did
    by_best = client.search_runs([experiment_id], order_by=["metrics.`best/eval/f1` DESC"])
    assert [r.info.run_id for r in by_best] == [peaked, late, steady]
    summaries = ranked(summarize(client, by_last, ["best/eval/f1"]), "best/eval/f1")
    assert [s.run_id for s in summaries] == [peaked, late, steady]


class _Pruner(TrainerCallback):
    """Stops the run at its first evaluation as the sweeps' pruning callback does."""

    def on_evaluate(self, metrics, step):
        self.control.request_stop(f"pruned by Optuna at evaluation 1 (step {step})")


def test_a_pruned_run_ends_killed_and_its_log_line_says_so(make_trainer, make_callback, client, caplog):
    callback = make_callback(plots=False, log_checkpoints=False)
    with caplog.at_level(logging.INFO, logger="medkit_exp.tracking"):
        make_trainer(callback=[_Pruner(), callback]).train()
    assert client.get_run(callback.run_id).info.status == "KILLED"
    assert f"MLflow run {callback.run_id} ended KILLED" in caplog.text
    assert "ended FINISHED" not in caplog.text


def test_an_early_stopped_run_is_finished(make_trainer, make_callback, client):
    class Stopper(TrainerCallback):
        def on_evaluate(self, metrics, step):
            self.control.request_stop("early_stopping")

    callback = make_callback(plots=False, log_checkpoints=False)
    make_trainer(callback=[Stopper(), callback]).train()
    assert client.get_run(callback.run_id).info.status == "FINISHED"


class _WeightsAsModel:
    """A component's hooks that log its model through the handle's name, source and metric link."""

    def run_tags(self):
        return {}

    def callbacks(self):
        return ()

    def log_model(self, checkpoint_dir, run):
        import mlflow.pyfunc

        class Echo(mlflow.pyfunc.PythonModel):
            def predict(self, context, model_input, params=None):
                return model_input

        with run.activate():
            info = mlflow.pyfunc.log_model(name=run.model_name(), tags=run.model_tags(), python_model=Echo(),
                                           pip_requirements=["mlflow"])
        run.link_model_metrics(info.model_id)

    def log_artifacts(self, run, state):
        return None


def test_a_model_is_named_after_its_experiment_and_carries_the_best_evaluation(make_trainer, make_callback, client,
                                                                             experiment_name):
    import sys

    from medkit_exp.tracking.datasets import describe_dataset

    dev = describe_dataset("toy-dev", ["a", "b"], "make_texts", context="eval")
    callback = make_callback(plots=False, log_checkpoints=False, hooks=[_WeightsAsModel()], datasets=[dev])
    make_trainer(callback=[callback]).train()
    run = client.get_run(callback.run_id)
    (output,) = run.outputs.model_outputs
    model = client.get_logged_model(output.model_id)
    assert model.name == f"{experiment_name}-model"  # <experiment>-model: the generic default
    assert model.tags["mlflow.source.name"] == sys.argv[0]
    linked = {metric.key: metric for metric in model.metrics}
    assert set(linked) == {"eval/accuracy", "eval/loss"}
    assert linked["eval/accuracy"].value == run.data.metrics["best/eval/accuracy"]
    assert linked["eval/accuracy"].step == int(run.data.metrics["best/step"])
    assert (linked["eval/accuracy"].dataset_name, linked["eval/accuracy"].dataset_digest) == ("toy-dev", dev.digest)
    history = client.get_metric_history(run.info.run_id, "eval/accuracy")
    assert len(history) == len({m.step for m in history})  # linking added no point to the run's history


class _SupportsTable:
    """Hooks whose table changes at the third evaluation (a split that moved)."""

    def __init__(self) -> None:
        self.calls = 0

    def evaluation_tables(self):
        self.calls += 1
        count = 5 if self.calls < 3 else 6
        return {"data/label_supports.json": {"columns": ["split", "label", "support"],
                                             "data": [("dev", "a", count), ("dev", "b", 2)]}}


def test_evaluation_tables_are_logged_once_and_a_change_is_reported(make_trainer, make_callback, client, caplog):
    import json

    from medkit_exp.tracking.hooks import NoTrackingHooks

    class Hooks(_SupportsTable, NoTrackingHooks):
        def __init__(self) -> None:
            _SupportsTable.__init__(self)

    hooks = Hooks()
    callback = make_callback(plots=False, log_checkpoints=False, hooks=[hooks])
    with caplog.at_level(logging.WARNING, logger="medkit_exp.tracking"):
        make_trainer(callback=[callback]).train()
    assert hooks.calls == 4  # asked at each evaluation
    folder = client.download_artifacts(callback.run_id, "data")
    table = json.loads(open(f"{folder}/label_supports.json", encoding="utf-8").read())
    assert table == {"columns": ["split", "label", "support"], "data": [["dev", "a", 5], ["dev", "b", 2]]}
    assert caplog.text.count("data/label_supports.json at step 12 differs") == 1 and "(1 of 2 rows)" in caplog.text


class _PerLabelComputer:
    """The toy accuracy with per-label values as the NER metrics name them (labels/<label>/<metric>)."""

    metric_names = ["accuracy"]

    def __init__(self):
        from tests.training.toy import AccuracyComputer

        self.inner = AccuracyComputer()

    def prepare_batch(self, model_output, input_batch):
        return self.inner.prepare_batch(model_output, input_batch)

    def compute(self, all_data):
        accuracy = self.inner.compute(all_data)["accuracy"]
        return {"accuracy": accuracy, "f1": accuracy / 2,
                **{f"labels/{label}/{m}": accuracy for label in ("test", "problem") for m in ("f1", "recall")}}


def test_best_values_are_the_summary_metrics_not_per_label_copies(make_trainer, make_callback, client):
    callback = make_callback(plots=False, log_checkpoints=False)
    make_trainer(callback=[callback], metrics=_PerLabelComputer()).train()
    metrics = client.get_run(callback.run_id).data.metrics
    assert sorted(k for k in metrics if k.startswith("best/")) == [
        "best/eval/accuracy", "best/eval/f1", "best/eval/loss", "best/step"]
    assert metrics["eval/labels/test/f1"] == metrics["eval/accuracy"]  # the per-label curves themselves stay


def test_a_run_shorter_than_log_every_n_steps_logs_its_training_values(make_trainer, make_callback, client):
    """8 steps, on_log every 2, log_every_n_steps=5 hits none of them: the latest values are logged
    at each evaluation (steps 4 and 8), at their own step."""
    callback = make_callback(plots=False, log_checkpoints=False, log_every_n_steps=5)
    trainer = make_trainer(callback=[callback], nb_training_epochs=1)
    trainer.train()
    assert trainer.state.global_step == 8
    for key in ("train/loss", "train/learning_rate"):
        assert sorted(m.step for m in client.get_metric_history(callback.run_id, key)) == [4, 8], key


def test_the_last_training_values_are_logged_at_the_end_without_evaluations(make_trainer, make_callback, client):
    callback = make_callback(plots=False, log_checkpoints=False, log_every_n_steps=50)
    trainer = make_trainer(callback=[callback], nb_training_epochs=1, eval_strategy="no", logging_steps=3)
    trainer.train()
    assert [m.step for m in client.get_metric_history(callback.run_id, "train/loss")] == [6]  # on_log at 3, 6
