"""The training application never starts over silently: ``resume_from`` with nothing to resume
from, and a new run over an earlier run's checkpoints, end with one line and exit code 2."""

from __future__ import annotations

from pathlib import Path

from tests.test_cli import run_cli


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


def test_resume_from_with_nothing_to_resume_exits_2_naming_the_folder(tmp_path, which="last"):
    # "best" and a folder: tests/training/test_checkpoint_integrity.py, in process
    result = run_cli(tmp_path, "+experiment=ner", "debug=fast", "tracking=none", "hydra.run.dir=run",
                     f"resume_from={which}")
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = error_lines(result.stderr)
    assert f"{tmp_path / 'run' / 'checkpoints'}: nothing to resume from (resume_from={which})" in line
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "history.jsonl").exists()


def test_a_new_run_in_a_run_folder_holding_checkpoints_exits_2_and_overwrites_nothing(tmp_path):
    checkpoint = Path(tmp_path / "run" / "checkpoints" / "checkpoint-0000004")
    checkpoint.mkdir(parents=True)
    (checkpoint / "model.safetensors").write_bytes(b"an earlier run's weights")
    result = run_cli(tmp_path, "+experiment=ner", "debug=fast", "tracking=none", "hydra.run.dir=run")
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = error_lines(result.stderr)
    assert "config key 'resume_from'" in line and "resume it with resume_from=last" in line
    assert "or start the new run in a new output folder" in line
    assert [p.name for p in checkpoint.iterdir()] == ["model.safetensors"]
    assert (checkpoint / "model.safetensors").read_bytes() == b"an earlier run's weights"
