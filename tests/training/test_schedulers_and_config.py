from __future__ import annotations

import math

import pytest
import torch

from medkit_exp.errors import CheckpointError, ConfigError
from medkit_exp.training import (
    ReduceLROnPlateauBuilder,
    TrainerCallback,
    TrainerConfig,
    WarmupDecaySchedulerBuilder,
    make_scheduler_builder,
)
from tests.training.toy import HiddenModelClassifier, ToyTextClassifier


class LearningRates(TrainerCallback):
    def __init__(self):
        self.rates = []

    def on_log(self, logs, step):
        self.rates.append(logs["learning_rate"])


def test_linear_warmup_then_decay_per_optimizer_step(make_trainer):
    rates = LearningRates()
    make_trainer(  # 8 batches/epoch x 2 epochs = 16 steps
        nb_training_epochs=2, logging_steps=1, learning_rate=1.0, callback=[rates],
        scheduler=WarmupDecaySchedulerBuilder("linear", warmup_steps=4),
    ).train()
    # optimizer step s (from 1) uses the factor of scheduler step s - 1
    expected = [s / 5 if s <= 4 else 1 - (s - 5) / 12 for s in range(1, 17)]
    assert rates.rates == pytest.approx(expected)


def test_cosine_and_constant_with_warmup_ratio():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    cosine = WarmupDecaySchedulerBuilder("cosine", warmup_ratio=0.1, min_lr_ratio=0.1)(optimizer, num_training_steps=100)
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        cosine.step()
    assert rates[0] == pytest.approx(2.0 / 11) and rates[10] == pytest.approx(2.0)
    assert rates[55] == pytest.approx(2.0 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))))
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    constant = make_scheduler_builder("constant", warmup_steps=2)(optimizer, num_training_steps=10)
    for _ in range(5):
        optimizer.step()
        constant.step()
    assert optimizer.param_groups[0]["lr"] == 1.0


def test_medkit_style_builder_steps_per_epoch(make_trainer):
    rates = LearningRates()
    make_trainer(
        nb_training_epochs=3, logging_steps=8, learning_rate=1.0, callback=[rates],
        scheduler=lambda optimizer: torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5),
    ).train()
    assert rates.rates == [1.0, 0.5, 0.25]  # the rate used during each epoch


def test_scheduler_interval_can_be_forced_to_step(make_trainer):
    rates = LearningRates()
    make_trainer(
        nb_training_epochs=1, logging_steps=4, learning_rate=1.0, lr_scheduler_interval="step", callback=[rates],
        scheduler=lambda optimizer: torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5),
    ).train()
    assert rates.rates == [0.5**3, 0.5**7]  # used at steps 4 and 8


def test_reduce_on_plateau_tracks_an_eval_metric(make_trainer):
    trainer = make_trainer(
        nb_training_epochs=4, learning_rate=1e-30, metric_to_track_lr="accuracy",
        scheduler=ReduceLROnPlateauBuilder(mode="max", factor=0.5, patience=0),
    )
    trainer.train()  # the accuracy cannot improve with lr ~ 0: the rate is halved at each evaluation after the first
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-30 * 0.5**3)


def test_reduce_on_plateau_metric_must_exist(make_trainer):
    with pytest.raises(ConfigError, match="metric_to_track_lr.*'f1'"):
        make_trainer(metric_to_track_lr="f1", scheduler=ReduceLROnPlateauBuilder())


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"batch_size": -2}, "batch_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"gradient_accumulation_steps": 0}, "gradient_accumulation_steps"),
        ({"eval_strategy": "sometimes"}, "eval_strategy"),
        ({"eval_strategy": "steps"}, "eval_steps"),
        ({"precision": "fp8"}, "precision"),
        ({"max_steps": 0}, "max_steps"),
        ({"lr_scheduler_interval": "hour"}, "lr_scheduler_interval"),
        ({"on_nonfinite_loss": "ignore"}, "on_nonfinite_loss"),
    ],
)
def test_invalid_config_values_name_the_key(settings, key):
    with pytest.raises(ConfigError) as error:
        TrainerConfig(output_dir="x", **settings)
    assert error.value.key == key and f"config key '{key}'" in str(error.value)


def test_unknown_scheduler_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown scheduler 'triangle'; valid: none, linear, cosine, constant, plateau"):
        make_scheduler_builder("triangle")


def test_trainer_config_keeps_medkit_fields_and_defaults():
    medkit_defaults = {
        "learning_rate": 1e-5, "nb_training_epochs": 3, "dataloader_nb_workers": 0, "batch_size": 1, "seed": None,
        "gradient_accumulation_steps": 1, "do_metrics_in_training": False, "metric_to_track_lr": "loss",
        "checkpoint_period": 1, "checkpoint_metric": "loss", "minimize_checkpoint_metric": True,
    }
    config = TrainerConfig(output_dir="x")
    assert {k: getattr(config, k) for k in medkit_defaults} == medkit_defaults
    assert "output_dir" not in config.to_dict()


def test_component_missing_members_is_a_type_error_naming_them(make_trainer):
    class Incomplete:
        device = torch.device("cpu")

        def preprocess(self, item):
            return item

    with pytest.raises(TypeError, match="Incomplete does not implement TrainableComponent: missing configure_optimizer, collate, forward, save, load"):
        make_trainer(component=Incomplete())


def test_weight_decay_without_an_exposed_model_is_a_config_error(make_trainer):
    with pytest.raises(ConfigError, match="weight_decay"):
        make_trainer(component=HiddenModelClassifier(), weight_decay=0.1)


@pytest.mark.parametrize("damage", ["truncate", "delete", "garbage"])
def test_corrupt_or_partial_checkpoint_is_a_clear_error_naming_the_file(make_trainer, damage):
    trainer = make_trainer(nb_training_epochs=1)
    trainer.train()
    state_file = f"{trainer.last_checkpoint}/trainer_state.pt"
    if damage == "truncate":
        data = open(state_file, "rb").read()
        open(state_file, "wb").write(data[: len(data) // 2])
    elif damage == "delete":
        import os

        os.remove(state_file)
    else:
        open(state_file, "wb").write(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="trainer_state.pt"):
        make_trainer(nb_training_epochs=2).train(resume_from_checkpoint=trainer.last_checkpoint)


@pytest.mark.parametrize("which", ["last", "best"])
def test_resume_without_checkpoint_is_an_error_naming_the_folder_never_a_new_run(make_trainer, tmp_path, which):
    trainer = make_trainer(nb_training_epochs=1)
    with pytest.raises(CheckpointError, match=rf"run/checkpoints: nothing to resume from \(resume_from={which}\)"):
        trainer.train(resume_from_checkpoint=which)
    assert trainer.state.global_step == 0 and not (tmp_path / "run" / "checkpoints").exists()


def test_resume_from_a_missing_folder_names_it(make_trainer, tmp_path):
    with pytest.raises(CheckpointError, match="nope: checkpoint folder not found"):
        make_trainer().train(resume_from_checkpoint=tmp_path / "nope")


def test_resume_in_process_continues_to_the_same_result(make_trainer, tmp_path):
    full = make_trainer(nb_training_epochs=3, output_dir=str(tmp_path / "full")).train()
    make_trainer(nb_training_epochs=3, max_steps=12, output_dir=str(tmp_path / "part")).train()
    resumed = make_trainer(nb_training_epochs=3, output_dir=str(tmp_path / "part"))
    # 12 steps = mid-epoch 2: the resumed run continues from there
    assert resumed.train(resume_from_checkpoint="last")[-1] == full[-1]
