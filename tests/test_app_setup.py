"""What the applications set up for their process: no third-party progress bars or load report,
log files without colour codes, torch's threads as ``trainer.num_threads`` says."""

from __future__ import annotations

import logging
import os

import pytest

from medkit_exp.app_setup import LoadReportFilter, PlainFormatter, apply_num_threads, quiet_third_party


def _record(message: str, name: str = "transformers.modeling_utils") -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, message, None, None)


def test_the_file_formatter_writes_no_terminal_codes():
    line = PlainFormatter("%(levelname)s %(message)s").format(_record("\x1b[1mBert LOAD REPORT\x1b[0m \x1b[38;5;208mx"))
    assert line == "WARNING Bert LOAD REPORT x"


def test_quiet_third_party_drops_the_load_report_only_and_keeps_the_users_settings(monkeypatch):
    from transformers.utils import logging as transformers_logging  # imported first: told directly

    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "true")  # the user's choice is kept
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    quiet_third_party()
    quiet_third_party()  # idempotent: one filter
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "true"
    target = logging.getLogger("transformers.modeling_utils")
    assert sum(isinstance(f, LoadReportFilter) for f in target.filters) == 1
    assert not target.filter(_record("\x1b[1mBertForTokenClassification LOAD REPORT\x1b[0m from: x"))
    assert target.filter(_record("some other warning"))
    assert not transformers_logging.is_progress_bar_enabled()
    monkeypatch.undo()
    transformers_logging.enable_progress_bar()  # leave the process as other tests expect it


def test_num_threads_is_applied_and_null_is_torchs_own_choice(caplog):
    import torch

    before = torch.get_num_threads()
    caplog.set_level(logging.INFO, logger="medkit_exp")
    try:
        assert apply_num_threads(1) == 1 == torch.get_num_threads()
        assert "CPU threads for torch: 1 (trainer.num_threads)" in caplog.text
        # null after a run that set it (the previous trial of a sweep): torch's choice, not the last value
        assert apply_num_threads(None) == before == torch.get_num_threads()
        assert f"CPU threads for torch: {before} (torch's choice)" in caplog.text
    finally:
        torch.set_num_threads(before)


def test_num_threads_below_one_is_refused_naming_the_key():
    from medkit_exp.errors import ConfigError
    from medkit_exp.training import TrainerConfig

    with pytest.raises(ConfigError) as raised:
        TrainerConfig(output_dir="x", num_threads=0)
    assert raised.value.key == "num_threads"
