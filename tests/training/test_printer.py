"""The default printer: one line per evaluation, the full table on demand, one bar for the run,
no escape codes in log records, epochs said to end only when they do."""

from __future__ import annotations

import logging

import pytest

from medkit_exp.training import DefaultPrinterCallback
from medkit_exp.training.printer import format_metrics_table

PRINTER = "DefaultPrinterCallback"


def printer_messages(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == PRINTER]


def test_one_line_per_evaluation_with_step_epoch_losses_metric_and_best(make_trainer, caplog):
    caplog.set_level(logging.INFO)
    # 64 items / 8 = 8 batches per epoch, evaluated every 4 steps: 4 evaluations over 2 epochs
    make_trainer(nb_training_epochs=2, eval_strategy="steps", eval_steps=4, checkpoint_metric="accuracy",
                 callback=[DefaultPrinterCallback(progress_bar=False)]).train()
    messages = printer_messages(caplog)
    evaluations = [m for m in messages if m.startswith("Evaluation: ")]
    assert len(evaluations) == 4 and all("\n" not in m for m in evaluations)
    assert evaluations[0].startswith("Evaluation: step 4/16 | epoch 1/2 | train loss ")
    assert " | eval loss " in evaluations[0] and " | accuracy " in evaluations[0]
    assert "best accuracy" in evaluations[-1] and "(step " in evaluations[-1]
    assert messages[0] == ("Running training: 2 epochs, 16 optimizer steps, train batch size: 8, "
                           "gradient accumulation steps: 1")
    assert [m for m in messages if m.startswith("Epoch ")][0].startswith("Epoch 1 ended (duration: ")
    assert messages[-1].startswith("Training is completed: best accuracy ")
    assert not any("Evaluation metrics" in m for m in messages)  # the full table only on demand
    assert len(messages) == 1 + 4 + 2 + 1  # start, evaluations, epoch ends, end: nothing else at INFO


def test_best_so_far_follows_the_tracked_metric_and_its_direction():
    printer = DefaultPrinterCallback(progress_bar=False)
    printer.on_train_begin(type("Config", (), {"checkpoint_metric": "loss", "minimize_checkpoint_metric": True})())
    for step, loss in ((2, 0.5), (4, 0.3), (6, 0.4)):
        printer.on_evaluate({"loss": loss}, step)
    assert printer._best == (0.3, 4)
    printer.on_train_begin(type("Config", (), {"checkpoint_metric": "f1", "minimize_checkpoint_metric": False})())
    for step, f1 in ((2, 0.5), (4, float("nan")), (6, 0.7), (8, 0.6)):
        printer.on_evaluate({"f1": f1}, step)
    assert printer._best == (0.7, 6)


def test_full_metrics_logs_the_table_with_counts_as_integers(make_trainer, caplog):
    caplog.set_level(logging.INFO)
    make_trainer(nb_training_epochs=1, callback=[DefaultPrinterCallback(progress_bar=False, full_metrics=True)]).train()
    tables = [m for m in printer_messages(caplog) if m.startswith("Metrics at step 8")]
    assert len(tables) == 1 and "Evaluation metrics:\n  loss " in tables[0] and "  accuracy  " in tables[0]
    table = format_metrics_table("eval", {"labels/X/f1": 0.25, "count": 68.0, "tiny": 1e-5})
    assert table.splitlines() == ["eval:", "  labels/X/f1  0.2500", "  count        68", "  tiny         1.000e-05"]


def test_an_epoch_cut_by_max_steps_is_not_said_to_end(make_trainer, caplog):
    caplog.set_level(logging.INFO)
    # 8 batches per epoch, max_steps 3: the run stops inside epoch 1 (debug=fast's situation)
    make_trainer(nb_training_epochs=2, max_steps=3, callback=[DefaultPrinterCallback(progress_bar=False)]).train()
    epochs = [m for m in printer_messages(caplog) if m.startswith("Epoch ")]
    assert len(epochs) == 1 and epochs[0].startswith("Epoch 1 stopped after 3 of its 8 batches")
    assert not any("Epoch 1 ended" in m for m in printer_messages(caplog))


def test_the_run_bar_shows_epoch_steps_rate_and_eta_and_log_records_carry_no_escape_codes(
    make_trainer, caplog, capsys, tmp_path
):
    log_file = tmp_path / "train.log"
    handler = logging.FileHandler(log_file, encoding="utf-8")
    root = logging.getLogger()
    root.addHandler(handler)
    caplog.set_level(logging.DEBUG)
    try:
        make_trainer(nb_training_epochs=2, logging_steps=2,
                     callback=[DefaultPrinterCallback(progress_bar=True, full_metrics=True)]).train()
    finally:
        root.removeHandler(handler)
        handler.close()
    err = capsys.readouterr().err
    assert "epoch 2/2" in err and "16/16 steps" in err and "step/s" in err and "<00:00" in err and "loss " in err
    assert "evaluating" in err  # the transient bar of each evaluation pass
    records = [record.getMessage() for record in caplog.records]
    assert records and not any("\x1b" in message or "\r" in message for message in records)
    text = log_file.read_text(encoding="utf-8")
    assert "Evaluation: step 8/16" in text and "\x1b" not in text and "steps [" not in text
    assert handler not in root.handlers and all(type(h).__name__ != "_TqdmLoggingHandler" for h in root.handlers)


@pytest.mark.parametrize("progress_bar", [True, False])
def test_an_exception_closes_the_bar_and_restores_the_handlers(make_trainer, progress_bar):
    class Boom(Exception):
        pass

    class Failing:
        def on_evaluate(self, metrics, step):
            raise Boom

    handlers = list(logging.getLogger().handlers)
    printer = DefaultPrinterCallback(progress_bar=progress_bar)
    with pytest.raises(Boom):
        make_trainer(nb_training_epochs=1, callback=[printer, Failing()]).train()
    assert printer._bar is None and logging.getLogger().handlers == handlers


def test_while_the_bar_shows_the_terminal_keeps_its_level(make_trainer, capsys):
    import sys

    root = logging.getLogger()
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)  # the terminal shows warnings only
    saved = root.level
    # A printer made while logging was unconfigured (an earlier test, as from plain Python) gave its
    # logger a handler of its own; this test is about an application that configured logging.
    printer_logger = logging.getLogger("DefaultPrinterCallback")
    own_handlers = list(printer_logger.handlers)
    for handler in own_handlers:
        printer_logger.removeHandler(handler)
    root.addHandler(console)
    root.setLevel(logging.DEBUG)
    try:
        make_trainer(nb_training_epochs=1, callback=[DefaultPrinterCallback(progress_bar=True)]).train()
    finally:
        root.removeHandler(console)
        root.setLevel(saved)
        for handler in own_handlers:
            printer_logger.addHandler(handler)
    err = capsys.readouterr().err
    assert "1/1" in err or "steps" in err  # the bar showed
    assert "Evaluation: step" not in err and "Training is completed" not in err  # INFO stayed off the terminal
