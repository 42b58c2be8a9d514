"""The application under torchrun (2 processes on CPU, gloo): the README's command as written, one
run folder, one MLflow run, one set of checkpoints; early stopping through the app; bad input."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from medkit_exp.training.history import HISTORY_FILE
from tests.training.ddp_launch import NATIVE_ABORT

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
FAST = ["debug=fast"]  # a tiny random encoder, 4 optimizer steps, an evaluation every 2


def readme_command() -> list[str]:
    """The README's single-node command, as written, with 2 processes (this machine has no GPU)."""
    readme = (ROOT / "README.md").read_text()
    line = next(line for line in readme.splitlines() if line.startswith("torchrun --standalone "))
    words = shlex.split(line)
    assert words[0] == "torchrun" and "--nproc-per-node=4" in words, line
    return TORCHRUN + ["--nproc-per-node=2" if w == "--nproc-per-node=4" else w for w in words[1:]]


def run(cwd: Path, command: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    """One thread per process (2 processes on a shared 2-core machine); no HYDRA_FULL_ERROR."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    environment.pop("HYDRA_FULL_ERROR", None)
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=environment)
    if result.returncode != 0 and NATIVE_ABORT in result.stderr:
        # The native abort tests/training/ddp_launch.py relaunches on (not root-caused; seen in this
        # test's early-stopping run in two full slow runs on 2026-12-06, never when run alone): the
        # run is launched once more in a clean folder, said on stderr; a second failure stays one.
        print(f"{' '.join(command[3:6])}: a rank aborted ({NATIVE_ABORT!r}); launched once more", file=sys.stderr)
        shutil.rmtree(cwd / "outputs", ignore_errors=True)
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=environment)
    return result


def only_run_folder(cwd: Path) -> Path:
    folders = [p for p in (cwd / "outputs").glob("*/*") if p.is_dir()]
    assert len(folders) == 1, folders  # not one per process
    return folders[0]


@pytest.mark.slow  # torchrun processes: CI's slow run
def test_the_readme_command_trains_with_one_writer(tmp_path):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run(tmp_path, [*readme_command(), *FAST, f"tracking.tracking_uri={store}", "tracking.plots=false"])
    assert result.returncode == 0, result.stderr[-4000:]
    folder = only_run_folder(tmp_path)
    assert result.stdout.count("Configuration:") == 1 and result.stdout.count("Run summary") == 1  # rank 0 prints
    assert "Global batch: 8 items per optimizer step = batch_size 4 per process x 2 process(es)" in result.stdout
    assert sorted(p.name for p in (folder / ".hydra").iterdir()) == ["config.yaml", "hydra.yaml", "overrides.yaml"]
    assert "Training is completed" in (folder / "cli.log").read_text()
    assert OmegaConf.load(folder / "config_resolved.yaml").trainer.distributed_backend == "auto"
    state = json.loads((folder / "checkpoints" / "state.json").read_text())
    assert state["last"] == "checkpoint-0000004"  # one set of checkpoints, rank 0's, at the global step
    assert sorted(p.name for p in (folder / "checkpoints").iterdir() if p.is_dir()) == ["checkpoint-0000004"]
    evaluations = [json.loads(line) for line in (folder / HISTORY_FILE).read_text().splitlines()]
    assert [r["step"] for r in evaluations if r["type"] == "eval"] == [2, 4]  # written once
    from mlflow import MlflowClient

    client = MlflowClient(store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    params = runs[0].data.params
    assert (params["trainer.world_size"], params["trainer.batch_size"], params["trainer.global_batch_size"]) == (
        "2", "4", "8")


@pytest.mark.slow
def test_early_stopping_stops_every_process_at_one_step(tmp_path):
    # min_delta 1: no f1 change counts as an improvement, so rank 0's callback stops at the second evaluation
    stop = ["callbacks=early_stopping", "callbacks.early_stopping.patience=1", "callbacks.early_stopping.min_delta=1.0"]
    result = run(tmp_path, [*readme_command(), *FAST, "tracking=none", "trainer.max_steps=12",
                            "trainer.nb_training_epochs=20", *stop])
    assert result.returncode == 0, result.stderr[-4000:]  # torchrun: every process exited 0
    folder = only_run_folder(tmp_path)
    assert "stopped early: " in result.stdout
    evaluations = [json.loads(line) for line in (folder / HISTORY_FILE).read_text().splitlines()]
    assert [r["step"] for r in evaluations if r["type"] == "eval"] == [2, 4]
    state = json.loads((folder / "checkpoints" / "state.json").read_text())
    assert state["last"] == "checkpoint-0000004"  # the one final checkpoint, at the step of the stop


def rank_lines(result: subprocess.CompletedProcess) -> list[str]:
    return re.findall(r"^Error: (rank \d of 2: .*)$", result.stderr, flags=re.MULTILINE)


@pytest.mark.slow  # torchrun processes: CI's slow run
def test_nccl_without_cuda_is_one_line_per_rank_before_any_work(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: NCCL is not refused here")
    result = run(tmp_path, [*readme_command(), *FAST, "tracking=none", "trainer.distributed_backend=nccl"])
    assert result.returncode != 0
    assert "exitcode  : 2" in result.stderr  # torchrun's report of the first failure: our exit code
    lines = rank_lines(result)
    assert lines and all("config key 'trainer.distributed_backend': nccl needs CUDA GPUs" in line for line in lines)
    assert result.stderr.count("Traceback") == 1  # torchrun's own (ChildFailedError), none of ours
    assert not (tmp_path / "outputs").exists()  # refused before Hydra made a run folder


@pytest.mark.slow  # torchrun processes: CI's slow run
def test_processes_started_with_different_overrides_stop_with_one_line_naming_the_key(tmp_path):
    # a process's own override: rank 1 asks another learning rate
    launcher = tmp_path / "per_rank.py"
    launcher.write_text("import os, sys\nfrom medkit_exp.cli import main\n"
                        "sys.argv.append(f\"optimizer.lr={(1 + int(os.environ['RANK'])) * 1e-3}\")\nmain()\n")
    command = [*TORCHRUN, "--standalone", "--nproc-per-node=2", str(launcher), "+experiment=ner", *FAST,
               "tracking=none"]
    result = run(tmp_path, command)
    assert result.returncode != 0 and "exitcode  : 2" in result.stderr
    expected = "config key 'optimizer.lr': differs between processes: 0.001 on rank 0, 0.002 on rank 1"
    lines = rank_lines(result)
    assert lines and all(line.endswith(expected + "; start every process with the same command line and "
                                       "environment") for line in lines)
    folder = only_run_folder(tmp_path)  # still one folder, and nothing trained
    assert not (folder / "checkpoints").exists() and not (folder / "config_resolved.yaml").exists()


def test_the_ddp_preset_sets_only_honoured_trainer_keys():
    from medkit_exp.training import TrainerConfig

    preset = OmegaConf.load(ROOT / "conf" / "trainer" / "ddp.yaml")
    keys = set(preset) - {"defaults"}
    assert keys == {"distributed_backend", "distributed_timeout_s"}
    config = TrainerConfig(output_dir="x", **{key: preset[key] for key in keys})
    assert config.distributed_backend == "auto" and config.distributed_timeout_s == 600


@pytest.mark.slow
def test_sigterm_to_torchrun_then_resume_with_the_same_number_of_processes(tmp_path):
    long = [*readme_command(), *FAST, "tracking=none", "hydra.run.dir=run", "trainer.nb_training_epochs=400"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    with open(tmp_path / "out.txt", "w") as out:
        launcher = subprocess.Popen([*long, "trainer.max_steps=400"], cwd=tmp_path, stdout=out,
                                    stderr=subprocess.STDOUT, env=environment)
        deadline = time.monotonic() + 120
        while not (tmp_path / "run" / HISTORY_FILE).exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        launcher.send_signal(signal.SIGTERM)  # torchrun passes it on to every process
        launcher.wait(timeout=120)
    output = (tmp_path / "out.txt").read_text()
    assert "stopped early: SIGTERM" in output
    state = json.loads((tmp_path / "run" / "checkpoints" / "state.json").read_text())
    stopped = state["checkpoints"][-1]["step"]
    assert state["last"] == f"checkpoint-{stopped:07d}" and 2 <= stopped < 400  # the one final checkpoint
    resumed = run(tmp_path, [*long, "resume_from=last", f"trainer.max_steps={stopped + 2}"])
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert json.loads((tmp_path / "run" / "checkpoints" / "state.json").read_text())["last"] == (
        f"checkpoint-{stopped + 2:07d}")
    one = run(tmp_path, [*TORCHRUN, "--standalone", "--nproc-per-node=1", *long[long.index("medkit_exp") - 1:],
                         "resume_from=last", f"trainer.max_steps={stopped + 4}"])
    assert one.returncode != 0 and "exitcode  : 2" in one.stderr
    assert "written by a run of 2 process(es); this run has 1: resume it with 2 process(es)" in one.stderr


@pytest.mark.slow
def test_fewer_training_items_than_processes_is_one_line_per_rank(tmp_path):
    result = run(tmp_path, [*readme_command(), *FAST, "tracking=none", "data.max_documents=1"])
    assert result.returncode != 0 and "exitcode  : 2" in result.stderr
    lines = rank_lines(result)
    assert lines and all(line.endswith("train_data has 1 item(s), fewer than the 2 processes (WORLD_SIZE): start "
                                       "fewer processes or give more data") for line in lines)


def test_without_torchrun_the_app_joins_nothing(monkeypatch):
    from types import SimpleNamespace

    from medkit_exp import launch

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert launch.join_before_hydra(["+experiment=ner"]) == [] and launch.context() is None
    assert launch.rank_name() == "" and launch.is_writer()
    launch.check_same_config({"optimizer": {"lr": 1.0}})  # one process: nothing to compare
    trainer = SimpleNamespace(batch_size=4, gradient_accumulation_steps=3)
    assert launch.parallel_params(trainer) == {"world_size": 1, "global_batch_size": 12}
    budgeted = SimpleNamespace(batch_size=4, gradient_accumulation_steps=3, max_batch_tokens=512)
    assert launch.parallel_params(budgeted) == {"world_size": 1, "max_global_batch_size": 12}  # a bound, named so
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert launch.rank_name() == "rank 1 of 2: "  # before the group is joined: torchrun's variables


def test_a_config_is_compared_key_by_key():
    from medkit_exp.launch import _flat

    assert _flat({"a": {"b": 1, "c": {}}, "d": [1, 2]}) == {"a.b": 1, "a.c": {}, "d": [1, 2]}
