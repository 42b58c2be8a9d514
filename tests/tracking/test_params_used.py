"""The MLflow params of an application run are the values its optimizer, scheduler and Trainer used
(one key per value), and the run's own folders are tags, not params."""

from __future__ import annotations

import math

import pytest
from hydra import compose, initialize_config_dir

from medkit_exp.cli import config_dir

OVERRIDES = [
    "+experiment=ner", "debug=fast", "optimizer.lr=3e-4", "optimizer.weight_decay=0.05", "optimizer.max_grad_norm=0.5",
    "scheduler=cosine", "scheduler.warmup_ratio=0.25", "scheduler.min_lr_ratio=0.1",
    "tracking.log_model=false", "tracking.log_every_n_steps=1", "tracking.model_hooks.0.dev_report=false", "tracking.plots=false", "tracking.log_checkpoints=false",
]


@pytest.fixture
def recorded_trainers(monkeypatch) -> list:
    """The Trainers the application builds (the real class, which records each instance)."""
    import medkit_exp.training as training

    made = []

    class RecordedTrainer(training.Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(training, "Trainer", RecordedTrainer)
    return made


def test_logged_optimisation_params_are_what_the_run_used(tracking_uri, client, tmp_path, recorded_trainers):
    import torch

    from medkit_exp.cli import train

    run_dir = tmp_path / "run"
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=[*OVERRIDES, f"paths.output_dir={run_dir}", f"tracking.tracking_uri={tracking_uri}",
                                           "tracking.experiment_name=params-used"])
    train(cfg)
    (trainer,) = recorded_trainers
    run = client.search_runs([client.get_experiment_by_name("params-used").experiment_id])[0]
    params, tags = run.data.params, run.data.tags

    optimizer = trainer.optimizer
    assert type(optimizer) is torch.optim.AdamW and params["optimizer.name"] == "adamw"
    for key in ("optimizer.lr", "trainer.learning_rate"):
        assert {group["initial_lr"] for group in optimizer.param_groups} == {float(params[key])} == {3e-4}, key
    decay, no_decay = optimizer.param_groups  # biases and LayerNorm weights are never decayed
    for key in ("optimizer.weight_decay", "trainer.weight_decay"):
        assert decay["weight_decay"] == float(params[key]) == 0.05 and no_decay["weight_decay"] == 0.0, key
    for key in ("optimizer.max_grad_norm", "trainer.max_grad_norm"):
        assert trainer.config.max_grad_norm == float(params[key]) == 0.5, key
    assert trainer.config.learning_rate == 3e-4 and trainer.config.weight_decay == 0.05

    schedule = trainer.lr_scheduler
    assert type(schedule) is torch.optim.lr_scheduler.LambdaLR
    (factor,) = set(schedule.lr_lambdas)  # one schedule for both parameter groups
    assert factor.decay == params["scheduler.name"] == "cosine"
    assert factor.warmup == math.ceil(float(params["scheduler.warmup_ratio"]) * trainer.state.max_steps) == 1
    assert factor.floor == float(params["scheduler.min_lr_ratio"]) == 0.1
    assert int(params["scheduler.warmup_steps"]) == 0
    # keys cosine does not use are not logged (the config check keeps them at their defaults)
    assert not {"scheduler.mode", "scheduler.factor", "scheduler.patience"} & set(params)
    # the logged learning rate of each step is the schedule's
    history = client.get_metric_history(run.info.run_id, "train/learning_rate")
    assert history and all(point.value == pytest.approx(3e-4 * factor(point.step - 1)) for point in history)

    # the run's folders: a tag, not params
    assert not {"paths.output_dir", "trainer.output_dir"} & set(params)
    assert tags["output_dir"] == str(run_dir.resolve())
    assert params["trainer.batch_size"] == "4" and params["trainer.max_steps"] == "4"

    # nulls the component resolved are logged as the values it took
    assert params["component.tagging_scheme"] == trainer.component.tagging_scheme == "iob2"
    assert params["component.stride"] == str(trainer.component.stride) and trainer.component.stride > 0
    assert params["component.tokenizer_max_length"] != "None"
