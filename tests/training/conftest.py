from __future__ import annotations

import pytest

from medkit_exp.training import Trainer, TrainerConfig
from tests.training.toy import AccuracyComputer, ToyTextClassifier, make_texts


@pytest.fixture
def make_trainer(tmp_path):
    """Builds a Trainer over the toy classifier; keyword arguments go to TrainerConfig."""

    def build(component=None, train=None, eval_data="default", metrics=True, callback=(), scheduler=None, **config):
        settings = {"output_dir": str(tmp_path / "run"), "learning_rate": 1e-2, "batch_size": 8, "seed": 3}
        settings.update(config)
        return Trainer(
            component or ToyTextClassifier(dropout=0.0),
            TrainerConfig(**settings),
            train if train is not None else make_texts(64, 1),
            make_texts(24, 2) if eval_data == "default" else eval_data,
            (AccuracyComputer() if metrics is True else metrics) or None,
            lr_scheduler_builder=scheduler,
            callback=list(callback),
        )

    return build
