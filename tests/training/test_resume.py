"""Kill a training process mid-run, resume it, and compare with an uninterrupted run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

RUNNER = Path(__file__).with_name("run_toy.py")


def run(output_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(RUNNER), str(output_dir), *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    result = run(out)
    assert result.returncode == 0, result.stderr
    return out


def assert_same_run(resumed: Path, reference: Path) -> None:
    ours = torch.load(resumed / "final_state.pt")
    theirs = torch.load(reference / "final_state.pt")
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), f"weights differ: {key}"
    summary = json.loads((resumed / "final_history.json").read_text())
    expected = json.loads((reference / "final_history.json").read_text())
    assert summary["history"] == expected["history"]
    assert summary["global_step"] == expected["global_step"] == 36
    assert (resumed / "history.jsonl").read_text().count('"type": "eval"') == len(expected["history"])


# 4: before the first checkpoint; 11: mid-epoch between checkpoints; 12: last step of epoch 1;
# 15: right after a checkpoint; 31: in the last epoch.
@pytest.mark.parametrize("kill_at", [4, 11, 12, 15, 31])
def test_sigkill_then_resume_is_bit_identical(tmp_path, reference, kill_at):
    killed = run(tmp_path, "--kill-at", str(kill_at))
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "final_state.pt").exists()
    assert not list((tmp_path / "checkpoints").glob(".tmp-*")) if (tmp_path / "checkpoints").exists() else True
    resumed = run(tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(tmp_path, reference)


def test_sigterm_saves_and_stops_cleanly_then_resumes(tmp_path, reference):
    stopped = run(tmp_path, "--sigterm-at", "8")
    assert stopped.returncode == 0, stopped.stderr
    summary = json.loads((tmp_path / "final_history.json").read_text())
    assert summary["stop_reason"] == "SIGTERM"
    assert summary["global_step"] == 8
    state = json.loads((tmp_path / "checkpoints" / "state.json").read_text())
    assert state["last"] == "checkpoint-0000008"
    resumed = run(tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(tmp_path, reference)
