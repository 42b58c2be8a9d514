from __future__ import annotations

import pytest

from tests.training.toy import toy_trainer_builder


@pytest.fixture
def make_trainer(tmp_path):
    """Builds a Trainer over the toy classifier; keyword arguments go to TrainerConfig."""
    return toy_trainer_builder(tmp_path / "run")
