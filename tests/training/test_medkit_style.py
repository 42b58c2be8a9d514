"""Code written the way medkit 0.17's users write it runs against medkit_exp.training.

Each test here is medkit-style code with only the package name changed; where medkit itself
is installed (the dev extras), the same code is also run against medkit and the two compared.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
import torch

from medkit_exp.training import Trainer, TrainerCallback, TrainerConfig
from medkit_exp.training.trainer import CONFIG_NAME, OPTIMIZER_NAME, SCHEDULER_NAME
from tests.training.toy import AccuracyComputer, ToyTextClassifier, make_texts

MEDKIT_MODULES = ("trainer", "trainer_config", "trainable_component", "utils", "callbacks")
MEDKIT_TRAINER_METHODS = (
    "get_dataloader", "training_epoch", "evaluation_epoch", "make_forward_pass", "update_learning_rate", "train", "save",
)


def medkit_training(module: str = ""):
    name = "medkit.training" + (f".{module}" if module else "")
    return pytest.importorskip(name, reason="medkit-lib not installed (pip install -e .[dev])")


class EventRecorder:
    """A medkit callback without base class; argument names differ from medkit's where medkit
    passes them positionally (the step index), as medkit allows."""

    def __init__(self):
        self.events: list[tuple] = []

    def on_train_begin(self, config):
        self.events.append(("train_begin", type(config).__name__))

    def on_train_end(self):
        self.events.append(("train_end",))

    def on_epoch_begin(self, epoch):
        self.events.append(("epoch_begin", epoch))

    def on_epoch_end(self, metrics, epoch, epoch_duration):
        assert epoch_duration >= 0
        self.events.append(("epoch_end", epoch, {phase: sorted(values) for phase, values in metrics.items()}))

    def on_step_begin(self, step, nb_batches, phase):
        self.events.append(("step_begin", step, nb_batches, phase))

    def on_step_end(self, i, nb_batches, phase):
        self.events.append(("step_end", i, nb_batches, phase))

    def on_save(self, checkpoint_dir):
        self.events.append(("save",))


class ScriptedAccuracy:
    """medkit's test pattern: a metrics computer returning predetermined values, one per evaluation."""

    def __init__(self, scores):
        self.scores, self.calls = list(scores), 0

    def prepare_batch(self, model_output, input_batch):
        return {}

    def compute(self, all_data):
        self.calls += 1
        return {"accuracy": self.scores[self.calls - 1]}


def medkit_style_run(training, tmp_path, name, **settings):
    """The same script for medkit and for us: only ``training`` (the package) differs."""
    recorder = EventRecorder()
    config = training.TrainerConfig(output_dir=str(tmp_path / name), batch_size=4, nb_training_epochs=2, seed=0, **settings)
    trainer = training.Trainer(
        ToyTextClassifier(), config=config, train_data=make_texts(10), eval_data=make_texts(6, seed=1),
        metrics_computer=AccuracyComputer(), callback=recorder,
    )
    return trainer, trainer.train(), recorder.events


@pytest.mark.parametrize("module", MEDKIT_MODULES)
def test_every_name_medkit_exports_exists_at_the_same_module_path(module):
    theirs = medkit_training(module)
    ours = importlib.import_module(f"medkit_exp.training.{module}")
    names = set(theirs.__all__)
    if module == "trainer":
        names |= {"CONFIG_NAME", "OPTIMIZER_NAME", "SCHEDULER_NAME", "set_seed"}  # public, outside __all__
    for name in sorted(names):
        mine, reference = getattr(ours, name), getattr(theirs, name)
        assert type(mine) is type(reference) or inspect.isclass(mine) == inspect.isclass(reference), name
        if isinstance(reference, str):
            assert mine == reference, name


def test_package_exports_what_medkits_package_exports():
    theirs = medkit_training()
    import medkit_exp.training as ours

    assert set(theirs.__all__) <= set(ours.__all__)
    for name in theirs.__all__:
        assert inspect.isclass(getattr(ours, name)), name


@pytest.mark.parametrize("method", MEDKIT_TRAINER_METHODS)
def test_trainer_methods_take_medkits_arguments_in_medkits_order(method):
    theirs = inspect.signature(getattr(medkit_training("trainer").Trainer, method)).parameters
    ours = inspect.signature(getattr(Trainer, method)).parameters
    assert list(ours)[: len(theirs)] == list(theirs)
    extra = [p for name, p in ours.items() if name not in theirs]
    assert all(p.default is not p.empty for p in extra), "an added argument must be optional"


def test_same_script_same_events_in_the_same_order_as_medkit(tmp_path):
    theirs = medkit_training()
    import medkit_exp.training as ours

    medkit_trainer, medkit_history, medkit_events = medkit_style_run(theirs, tmp_path, "medkit")
    trainer, history, events = medkit_style_run(ours, tmp_path, "ours")
    assert events == medkit_events
    assert [{phase: list(values) for phase, values in entry.items()} for entry in history] == [
        {phase: list(values) for phase, values in entry.items()} for entry in medkit_history
    ]
    for name in ("batch_size", "nb_training_epochs", "dataloader_drop_last", "dataloader_nb_workers",
                 "dataloader_pin_memory", "device", "output_dir", "config", "component", "metrics_computer", "callback"):
        assert type(getattr(trainer, name)).__name__ == type(getattr(medkit_trainer, name)).__name__, name
    assert len(trainer.train_dataloader) == len(medkit_trainer.train_dataloader)
    assert len(trainer.eval_dataloader) == len(medkit_trainer.eval_dataloader)


def test_events_of_a_run_read_as_medkits_contract(tmp_path):
    # Without medkit installed: the order medkit's loop produces, written out.
    import medkit_exp.training as ours

    _, _, events = medkit_style_run(ours, tmp_path, "ours")
    train_steps = [e for i in range(3) for e in (("step_begin", i, 3, "train"), ("step_end", i, 3, "train"))]
    eval_steps = [e for i in range(2) for e in (("step_begin", i, 2, "eval"), ("step_end", i, 2, "eval"))]
    metrics = {"eval": ["accuracy", "loss"], "train": ["loss"]}
    epoch = lambda n: [("epoch_begin", n), *train_steps, *eval_steps, ("epoch_end", n, metrics), ("save",)]  # noqa: E731
    assert events == [("train_begin", "TrainerConfig"), *epoch(1), *epoch(2), ("train_end",)]


def test_a_loop_written_by_hand_with_medkits_methods(tmp_path):
    """medkit's own train(), written out by a user, over our Trainer's public methods."""
    config = TrainerConfig(output_dir=str(tmp_path), batch_size=4, seed=0, learning_rate=0.1)
    component = ToyTextClassifier()
    trainer = Trainer(
        component, config, make_texts(12), make_texts(8, seed=1), metrics_computer=AccuracyComputer(),
        lr_scheduler_builder=lambda optimizer: torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5),
        callback=[],
    )
    rates, saved = [], []
    for epoch in range(1, 4):
        rates.append(trainer.optimizer.param_groups[0]["lr"])
        train_metrics = trainer.training_epoch()
        eval_metrics = trainer.evaluation_epoch(trainer.eval_dataloader)
        trainer.update_learning_rate(eval_metrics)
        assert set(train_metrics) == {"loss"} and set(eval_metrics) == {"loss", "accuracy"}
        saved.append(trainer.save(epoch))
    assert rates == pytest.approx([0.1, 0.05, 0.025])
    assert trainer.state.global_step == 9  # 3 epochs of 3 batches, one optimizer step each
    for folder in saved[-1:]:
        assert {OPTIMIZER_NAME, SCHEDULER_NAME, CONFIG_NAME} <= {p.name for p in Path(folder).iterdir()}
    reloaded = ToyTextClassifier(seed=5)
    reloaded.load(saved[-1])
    for mine, theirs in zip(reloaded.model.parameters(), component.model.parameters()):
        assert torch.equal(mine, theirs)
    with pytest.raises(ValueError, match="at epoch 3"):
        trainer.save(1)


def test_training_metrics_are_per_epoch_in_a_hand_written_loop(tmp_path):
    trainer = Trainer(ToyTextClassifier(), TrainerConfig(output_dir=str(tmp_path), batch_size=4, seed=0),
                      make_texts(8), make_texts(4), callback=[])
    first = trainer.training_epoch()["loss"]
    losses = []

    # the second epoch's loss is the mean of its own two batches only
    def forward_with_record(batch, return_loss, eval_mode, forward=trainer.component.forward):
        output, loss = forward(batch, return_loss, eval_mode)
        losses.append(loss.item())
        return output, loss

    trainer.component.forward = forward_with_record
    second = trainer.training_epoch()["loss"]
    assert second == pytest.approx(sum(losses) / len(losses)) and len(losses) == 2 and second != first


def test_medkit_callback_classes_run_and_print(tmp_path, caplog):
    theirs = medkit_training("callbacks")

    class Counting(theirs.TrainerCallback):
        def __init__(self):
            self.steps = 0

        def on_step_end(self, step_idx, nb_batches, phase):
            self.steps += 1

    counting = Counting()
    Trainer(ToyTextClassifier(), TrainerConfig(output_dir=str(tmp_path), batch_size=4, nb_training_epochs=1),
            make_texts(8), make_texts(4), callback=[counting, theirs.DefaultPrinterCallback()]).train()
    assert counting.steps == 2 + 1  # two training batches, one evaluation batch
    # medkit's base class names on_epoch_end's last argument epoch_time while medkit's Trainer
    # passes epoch_duration=, so its inherited no-op fails there with a TypeError; ours maps it.
    assert "Epoch 1 ended" in caplog.text and "Training is completed" in caplog.text


@pytest.mark.parametrize(
    ("builder", "metric", "expected"),
    [
        (None, "loss", [1e-3, 1e-3, 1e-3]),
        (lambda optimizer: torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.1), "loss", [1e-3, 1e-4, 1e-5]),
        # accuracy never improves on 0.5 with mode max and patience 0: halved after each epoch
        (lambda optimizer: torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, "max", factor=0.5, patience=0),
         "accuracy", [1e-3, 1e-3, 5e-4]),
    ],
    ids=["none", "step_lr", "plateau"],
)
def test_scheduler_builders_step_once_per_epoch_after_evaluation(tmp_path, builder, metric, expected):
    rates = []

    class Rates(TrainerCallback):
        def on_epoch_begin(self, epoch):
            rates.append(trainer.optimizer.param_groups[0]["lr"])

    config = TrainerConfig(output_dir=str(tmp_path), batch_size=4, learning_rate=1e-3, metric_to_track_lr=metric)
    trainer = Trainer(ToyTextClassifier(), config, make_texts(8), make_texts(4),
                      metrics_computer=ScriptedAccuracy([0.5, 0.5, 0.5]), lr_scheduler_builder=builder, callback=[Rates()])
    trainer.train()
    assert rates == pytest.approx(expected)
    saved = Path(trainer.last_checkpoint)
    assert (saved / SCHEDULER_NAME).exists() == (builder is not None)


@pytest.mark.parametrize(
    ("minimize", "epochs", "period", "kept"),
    [
        (True, 4, 1, ["checkpoint-0000006", "checkpoint-0000008"]),  # best at epoch 3, then last
        (False, 4, 1, ["checkpoint-0000006", "checkpoint-0000008"]),
        (True, 3, 1, ["checkpoint-0000006"]),  # the last is the best
        (True, 4, 0, ["checkpoint-0000008"]),  # only the last
        (True, 4, 3, ["checkpoint-0000006", "checkpoint-0000008"]),
        (True, 4, 4, ["checkpoint-0000008"]),
    ],
)
def test_best_and_last_checkpoints_as_medkit_keeps_them(tmp_path, minimize, epochs, period, kept):
    scores = [1.0, 0.9, 0.8, 0.85] if minimize else [0.1, 0.2, 0.3, 0.25]
    config = TrainerConfig(
        output_dir=str(tmp_path), nb_training_epochs=epochs, batch_size=4, checkpoint_period=period,
        checkpoint_metric="accuracy", minimize_checkpoint_metric=minimize,
    )
    Trainer(ToyTextClassifier(), config, make_texts(8), make_texts(4), metrics_computer=ScriptedAccuracy(scores),
            callback=[]).train()
    folders = sorted((tmp_path / "checkpoints").glob("checkpoint-*"))
    assert [f.name for f in folders] == kept
    for folder in folders:
        assert {OPTIMIZER_NAME, CONFIG_NAME} <= {p.name for p in folder.iterdir()}
        assert not (folder / SCHEDULER_NAME).exists()
        ToyTextClassifier().load(folder)  # medkit: every checkpoint loads with component.load


@pytest.mark.parametrize("do_metrics_in_training", [False, True])
def test_do_metrics_in_training_adds_the_computers_metrics_to_train(tmp_path, do_metrics_in_training):
    config = TrainerConfig(output_dir=str(tmp_path), batch_size=4, do_metrics_in_training=do_metrics_in_training)
    history = Trainer(ToyTextClassifier(), config, make_texts(8), make_texts(4), metrics_computer=AccuracyComputer(),
                      callback=[]).train()
    assert len(history) == config.nb_training_epochs
    assert list(history[0]["train"]) == (["loss", "accuracy"] if do_metrics_in_training else ["loss"])
    assert list(history[0]["eval"]) == ["loss", "accuracy"]


class TwoPartClassifier(ToyTextClassifier):
    """A component whose forward calls submodules it holds itself (no single ``model``)."""

    def __init__(self):
        super().__init__()
        modules = self.__dict__.pop("model")
        self.encoder = torch.nn.Sequential(modules["drop"], modules["norm"])
        self.embed, self.head = modules["embed"], modules["out"]

    def configure_optimizer(self, lr):
        parts = [self.embed, self.encoder, self.head]
        return torch.optim.SGD([p for part in parts for p in part.parameters()], lr=lr)

    def forward(self, input_batch, return_loss, eval_mode):
        for part in (self.embed, self.encoder, self.head):
            part.train(not eval_mode)
        logits = self.head(self.encoder(self.embed(input_batch["input_ids"], input_batch["offsets"])))
        return {"logits": logits}, self.loss(logits, input_batch["labels"]) if return_loss else None

    def save(self, path):
        torch.save([self.embed.state_dict(), self.encoder.state_dict(), self.head.state_dict()], Path(path) / "parts.pt")

    def load(self, path):
        for part, state in zip((self.embed, self.encoder, self.head), torch.load(Path(path) / "parts.pt")):
            part.load_state_dict(state)


def test_component_whose_forward_calls_its_submodules_trains_and_reloads(tmp_path):
    component = TwoPartClassifier()
    before = component.head.weight.detach().clone()
    config = TrainerConfig(output_dir=str(tmp_path), batch_size=4, learning_rate=0.5, nb_training_epochs=3, seed=0)
    history = Trainer(component, config, make_texts(16), make_texts(8), callback=[]).train()
    assert history[-1]["train"]["loss"] < history[0]["train"]["loss"]
    assert not torch.equal(before, component.head.weight)
    reloaded = TwoPartClassifier()
    reloaded.load(tmp_path / "checkpoints" / "checkpoint-0000012")
    assert torch.equal(reloaded.head.weight, component.head.weight)


def test_error_texts_start_with_medkits_wording(tmp_path):
    def trainer(**settings):
        config = TrainerConfig(output_dir=str(tmp_path), batch_size=4, nb_training_epochs=1, **settings)
        return Trainer(ToyTextClassifier(), config, make_texts(8), make_texts(4),
                       metrics_computer=ScriptedAccuracy([0.5]), callback=[],
                       lr_scheduler_builder=lambda optimizer: torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer))

    with pytest.raises(ValueError, match=r"^Learning scheduler needs an eval metric to update the learning rate, "
                                         r"'f1_score' was not found \(config key 'metric_to_track_lr'"):
        trainer(metric_to_track_lr="f1_score").train()
    with pytest.raises(ValueError, match=r"^Checkpoint metric 'f1' not found \(config key 'checkpoint_metric'"):
        trainer(checkpoint_metric="f1").train()

    class NoLoss(ToyTextClassifier):
        def forward(self, input_batch, return_loss, eval_mode):
            return super().forward(input_batch, False, eval_mode)

    config = TrainerConfig(output_dir=str(tmp_path / "noloss"))
    with pytest.raises(ValueError, match=r"^The component did not return a 'loss' from the input\.$"):
        Trainer(NoLoss(), config, make_texts(2), make_texts(2), callback=[]).train()


def test_set_seed_is_medkits():
    from medkit_exp.training.trainer import set_seed

    set_seed(3)
    first = torch.rand(2)
    set_seed(3)
    assert torch.equal(first, torch.rand(2))
