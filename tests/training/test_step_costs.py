"""What a training step costs beyond the bare loop's forward, backward and optimizer step, and
that removing those costs changed no value: the same weights as a hand-written loop, the same
gradient norm at the logged steps, the bar showing the last log."""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from medkit_exp.training import DefaultPrinterCallback
from medkit_exp.training.optim import optimizer_step
from tests.training.toy import ToyTextClassifier


def test_a_window_of_one_trains_the_weights_of_a_hand_written_loop_bit_for_bit(make_trainer):
    # The Trainer backpropagates the loss itself (no division by a window of one): same steps, same weights.
    trainer = make_trainer(ToyTextClassifier(dropout=0.0), max_steps=5, eval_strategy="no", learning_rate=1e-2)
    trainer.sampler.set_epoch(1)
    batches = [batch for _, batch in zip(range(5), trainer.train_dataloader)]
    trainer.train()
    by_hand = ToyTextClassifier(dropout=0.0)
    optimizer = by_hand.configure_optimizer(1e-2)
    for batch in batches:
        _, loss = by_hand.forward(batch, return_loss=True, eval_mode=False)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    trained, expected = trainer.component.model.state_dict(), by_hand.model.state_dict()
    assert all(torch.equal(trained[name], expected[name]) for name in expected)


def _linear_with_grads(seed: int) -> tuple[torch.nn.Linear, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = torch.nn.Linear(6, 3)
    model(torch.randn(4, 6)).pow(2).sum().backward()
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), measure=st.booleans(), clip=st.sampled_from([None, 0.5, 100.0]))
def test_the_gradient_norm_is_computed_when_clipping_or_logging_only(seed, measure, clip):
    model, optimizer = _linear_with_grads(seed)
    expected = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
    step = optimizer_step(optimizer, None, clip, measure_grad_norm=measure)
    if clip is None and not measure:
        assert step.grad_norm is None  # a step nobody logs pays for no reduction
    else:
        assert step.grad_norm is not None and torch.allclose(step.grad_norm, expected)
    assert step.learning_rate == 0.1
    assert all(p.grad is None for p in model.parameters())


def test_grad_norm_is_logged_at_every_logging_step_and_only_there(make_trainer, tmp_path):
    import json

    make_trainer(max_steps=12, logging_steps=4, eval_strategy="no").train()
    records = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    logs = [r for r in records if r["type"] == "log"]
    assert [r["step"] for r in logs] == [4, 8, 12]
    assert all(r["grad_norm"] > 0 for r in logs)


@pytest.mark.parametrize("logging_steps", [3, 50])
def test_the_bar_text_is_rebuilt_per_log_and_epoch_not_per_step_and_shows_the_last_log(
    make_trainer, capsys, logging_steps
):
    printer = DefaultPrinterCallback(progress_bar=True)
    rebuilt = []
    describe = printer._describe_bar
    printer._describe_bar = lambda refresh=False: (rebuilt.append(refresh), describe(refresh))
    seen_logs = []
    printer_on_log = printer.on_log

    def on_log(logs, step):  # the events' keyword names
        seen_logs.append(logs)
        printer_on_log(logs=logs, step=step)

    printer.on_log = on_log
    trainer = make_trainer(nb_training_epochs=3, eval_strategy="no", logging_steps=logging_steps, callback=[printer])
    trainer.train()
    steps = trainer.state.global_step
    assert steps == 24  # 64 items, batches of 8, 3 epochs
    # once when the bar opens, once per epoch, once per log: far fewer than one per step
    assert len(rebuilt) <= 1 + 3 + len(seen_logs) < steps
    err = capsys.readouterr().err
    assert re.search(r"epoch 3/3 100%\|[^\n\r]*\| 24/24 steps", err)
    if seen_logs:
        assert f"loss {seen_logs[-1]['loss']:.4f}" in err.rsplit("\r", 1)[-1]
