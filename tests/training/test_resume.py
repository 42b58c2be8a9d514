"""Kill a training process mid-run, resume it, and compare with an uninterrupted run."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

RUNNER = Path(__file__).with_name("run_toy.py")


class ToyRuns:
    """Runs run_toy.py trainings, each a process of its own: forked from one ``run_toy.py --serve``
    process (torch imported once), or started afresh where there is no fork."""

    def __init__(self) -> None:
        self.server = None
        if hasattr(os, "fork"):
            self.server = subprocess.Popen(
                [sys.executable, str(RUNNER), "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )

    def __call__(self, output_dir: Path, *args: str) -> subprocess.CompletedProcess:
        argv = [str(output_dir), *args]
        if self.server is None:
            return subprocess.run([sys.executable, str(RUNNER), *argv], capture_output=True, text=True, timeout=300)
        self.server.stdin.write(json.dumps(argv) + "\n")
        self.server.stdin.flush()
        ready, _, _ = select.select([self.server.stdout], [], [], 300)
        assert ready, f"run_toy.py {argv} still running after 300 s"
        answer = json.loads(self.server.stdout.readline())
        return subprocess.CompletedProcess(argv, answer["returncode"], "", answer["output"])

    def close(self) -> None:
        if self.server is not None:
            self.server.stdin.close()
            self.server.wait(timeout=60)


@pytest.fixture(scope="module")
def run():
    runs = ToyRuns()
    yield runs
    runs.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, run) -> Path:
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


# 11: mid-epoch between checkpoints; 12: last step of epoch 1; 15: right after a checkpoint;
# 31: in the last epoch.
@pytest.mark.parametrize("kill_at", [11, 12, 15, 31])
def test_sigkill_then_resume_is_bit_identical(run, tmp_path, reference, kill_at):
    killed = run(tmp_path, "--kill-at", str(kill_at))
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "final_state.pt").exists()
    assert not list((tmp_path / "checkpoints").glob(".tmp-*")) if (tmp_path / "checkpoints").exists() else True
    resumed = run(tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(tmp_path, reference)


def test_sigkill_before_the_first_checkpoint_has_nothing_to_resume_then_a_new_run_is_allowed(run, tmp_path, reference):
    killed = run(tmp_path, "--kill-at", "4")
    assert killed.returncode == -signal.SIGKILL
    resumed = run(tmp_path, "--resume")  # never a silent start from step 0
    assert resumed.returncode == 1
    assert f"CheckpointError: {tmp_path / 'checkpoints'}: nothing to resume from (resume_from=last)" in resumed.stderr
    assert not (tmp_path / "final_state.pt").exists()
    started = run(tmp_path)  # no checkpoint to overwrite: a new run may use the folder
    assert started.returncode == 0, started.stderr
    assert_same_run(tmp_path, reference)


# Kill points inside checkpoint saves (see run_toy.py's --kill-in), each in the process resumed
# after the previous kill; saves happen at steps 5, 10, ..., 35 and 36, and keep_best_k=2 prunes.
# (kill point, what the kill leaves in checkpoints/, the last checkpoint state.json then names)
KILLS_IN_SAVES = [
    ("write:7:mid", ".tmp-checkpoint-0000010/scheduler.pt", 5),  # fresh run, 2nd save: a file half written
    ("manifest:1:after", ".tmp-checkpoint-0000010/checksums.json", 5),  # complete, not renamed
    ("fsync:3:before", ".tmp-checkpoint-0000010/checksums.json", 5),  # while flushing it
    ("publish:1:after", "checkpoint-0000010", 5),  # renamed, state.json not yet rewritten
    ("trash:1:after", ".trash-checkpoint-0000010", 5),  # that step saved again: the old one set aside
    ("state:3:after", "checkpoint-0000005", 20),  # state.json rewritten, before pruning 5 and 15
    ("prune:1:mid", ".trash-checkpoint-*", 25),  # a pruned checkpoint half deleted
    ("state:1:before", ".state.json.tmp", 25),  # the new state.json written, not yet renamed
    ("prune:2:before", ".trash-checkpoint-*", 30),  # a pruned checkpoint set aside, not deleted
]


def assert_consistent(checkpoints: Path, caplog) -> str:
    """state.json names only complete checkpoints, so reading it needs no fallback; returns its last."""
    from medkit_exp.training.checkpoint import CheckpointManager
    from medkit_exp.training.digests import incomplete_reason

    state = json.loads((checkpoints / "state.json").read_text())
    for record in state["checkpoints"]:
        assert incomplete_reason(checkpoints / record["name"]) is None, record
    caplog.clear()
    manager = CheckpointManager(checkpoints)
    assert not [r for r in caplog.records if r.levelname == "WARNING"], caplog.text
    assert manager.last == state["last"]
    return state["last"]


def test_kills_inside_saves_and_prunes_then_resume_is_bit_identical(run, tmp_path, reference, caplog):
    for number, (point, left, last) in enumerate(KILLS_IN_SAVES):
        killed = run(tmp_path, *(["--resume"] if number else []), "--kill-in", point)
        assert killed.returncode == -signal.SIGKILL, f"{point}: {killed.stderr[-3000:]}"
        assert list((tmp_path / "checkpoints").glob(left)), f"{point} left no {left}"
        assert assert_consistent(tmp_path / "checkpoints", caplog) == f"checkpoint-{last:07d}", point
    resumed = run(tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(tmp_path, reference)
    # the interrupted saves and removals left nothing behind: the uninterrupted run's checkpoints
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == sorted(
        p.name for p in (reference / "checkpoints").iterdir()
    )


def test_sigterm_saves_and_stops_cleanly_then_resumes(run, tmp_path, reference):
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
