"""The Hydra application: composition of every config, an end-to-end smoke run, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from medkit_exp.cli import config_dir
from medkit_exp.training.history import HISTORY_FILE

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
PRESETS = [
    ["debug=fast"], ["debug=overfit"], ["trainer=gpu"], ["scheduler=cosine"], ["scheduler=plateau"],
    ["scheduler=none"], ["scheduler=constant"], ["callbacks=early_stopping"], ["tracking=none"],
]


def composed(*overrides: str):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def run_cli(cwd: Path, *args: str, module: str = "medkit_exp", env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    environment.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=environment
    )


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("preset", [[], *PRESETS], ids=lambda p: "-".join(p) or "plain")
def test_every_experiment_composes_with_every_preset(experiment, preset):
    cfg = composed(f"+experiment={experiment}", *preset, "paths.output_dir=/tmp/x", "paths.data_dir=/data")
    assert cfg.experiment_name == experiment
    OmegaConf.to_container(cfg.trainer, resolve=True)  # interpolations resolve
    assert cfg.component.labels == cfg.data.labels


def test_experiment_is_not_in_the_primary_defaults():
    defaults = OmegaConf.load(ROOT / "conf" / "config.yaml").defaults
    assert not any("experiment" in (d if isinstance(d, str) else next(iter(d))) for d in defaults)


def test_debug_fast_end_to_end(tmp_path):
    # CI=1: transformers' records also reach the root logger, so the log file too
    result = run_cli(tmp_path, "+experiment=ner", "debug=fast", "tracking=none", "hydra.run.dir=run",
                     "trainer.num_threads=1", env={"CI": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    assert "Configuration:" in result.stdout and "Run summary" in result.stdout
    assert "best checkpoint: " in result.stdout
    resolved = OmegaConf.load(run / "config_resolved.yaml")
    assert resolved.trainer.max_steps == 4 and resolved.component.model_name_or_path == "tiny-random"
    # a quiet terminal and a plain log file: no third-party bars or load report, no colour codes
    log = (run / "cli.log").read_text()
    for noise in ("Loading weights", "Writing model shards", "LOAD REPORT", "\x1b"):
        assert noise not in result.stdout + result.stderr + log, noise
    # trainer.num_threads applied before the model loads, and recorded
    assert resolved.trainer.num_threads == 1 and "CPU threads for torch: 1 (trainer.num_threads)" in log
    assert (run / ".hydra" / "overrides.yaml").exists()
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert state["last"] == "checkpoint-0000004"
    assert (run / "checkpoints" / state["best"] / "config.json").exists()
    records = [json.loads(line) for line in (run / HISTORY_FILE).read_text().splitlines()]
    assert [r["step"] for r in records if r["type"] == "eval"] == [2, 4]
    assert "f1" in records[-1]["eval"]
    assert "Training is completed" in (run / "cli.log").read_text()  # logs go to the run folder too


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["+experiment=nope"], "config key 'experiment': no option 'nope' in conf/experiment; valid: ner, ner_ncbi"),
        (["+experiment=ner", "trainer.batch_sise=3"], "config key 'trainer.batch_sise': unknown config key; did you mean trainer.batch_size"),
        (["+experiment=ner", "trainer.batch_size=abc"], "Value 'abc' of type 'str' could not be converted to Integer"),
        (["+experiment=ner", "scheduler=triangle"], "config key 'scheduler': no option 'triangle' in conf/scheduler"),
        (["+experiment=ner", "scheduler=cosin"], "config key 'scheduler': no option 'cosin' in conf/scheduler; did you mean cosine?"),
        (["+experiment=ner", "trainer.batch_size=-1", "tracking=none"], "config key 'trainer.batch_size': must be >= 1"),
        (["+experiment=ner", "component.dropout=0.1"], "config key 'component.dropout': not in conf/component"),
        (["+experiment=ner", "+component.dropout=0.1", "tracking=none"], "config key 'component.dropout': not a parameter"),
        (["+experiment=ner_ncbi", "tracking=none"], "paths.data_dir"),
        (["+experiment=ner", "component.model_name_or_path=./no/such/model", "tracking=none"], "model folder not found"),
        (["+experiment=ner", "data.path=/no/such/corpus", "tracking=none"], "/no/such/corpus: corpus folder"),
    ],
)
def test_bad_input_is_one_clear_message_without_traceback(tmp_path, args, message):
    result = run_cli(tmp_path, *args, env={"MEDKIT_EXP_DATA_DIR": ""})  # empty counts as unset
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("Error:")]) == 1, result.stderr


def test_help_and_cfg_are_fast_and_import_no_heavy_library(tmp_path):
    code = (
        "import sys, time; t = time.perf_counter(); sys.argv = ['medkit_exp', '--help'];\n"
        "import medkit_exp.cli\n"
        "heavy = [m for m in ('torch', 'transformers', 'mlflow', 'optuna') if m in sys.modules]\n"
        "print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.stdout.strip() == "[]", result.stderr


@pytest.mark.parametrize(
    ("module", "lines"),
    [
        ("medkit_exp", ["medkit_exp: train clinical NER taggers",
                        "python -m medkit_exp +experiment=ner [key=value ...]",
                        "python -m medkit_exp -m +experiment=ner hparams_search=ner_optuna",
                        "python -m medkit_exp.evaluate", "python -m medkit_exp.predict", "python -m medkit_exp.compare",
                        "python -m medkit_exp.reproduce RUN_ID", "== Main overrides ==", "trainer.num_threads=N"]),
        ("medkit_exp.evaluate", ["medkit_exp.evaluate: strict entity-level metrics", "checkpoint=PATH",
                                 "split=dev|test|train"]),
        ("medkit_exp.predict", ["medkit_exp.predict: tag documents", "input=PATH", "output_format=jsonl|brat"]),
    ],
)
def test_help_describes_the_application_then_its_groups_and_config(tmp_path, module, lines):
    result = run_cli(tmp_path, "--help", module=module)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "powered by Hydra" not in result.stdout and result.stdout.startswith(lines[0])
    for line in lines:
        assert line in result.stdout, line
    for part in ("== Configuration groups (group=option) ==", "experiment: ner, ner_ncbi", "== Config ",
                 "README.md", "docs/config_reference.md", "--hydra-help"):
        assert part in result.stdout, part


def test_wheel_ships_conf_and_the_demo_corpus(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "medkit_exp/conf/config.yaml" in names
    assert "medkit_exp/conf/experiment/ner.yaml" in names
    for application in ("evaluate", "predict"):  # their primary configs and entry modules
        assert f"medkit_exp/conf/{application}.yaml" in names and f"medkit_exp/{application}.py" in names
    assert any(n.startswith("medkit_exp/ner/demo/train/") and n.endswith(".ann") for n in names)
    assert "hydra_plugins/medkit_exp_sweeper/__init__.py" in names
    # the sweeper: Hydra finds it by scanning the hydra_plugins namespace (no __init__.py of its own)
    assert "hydra_plugins/medkit_exp_sweeper/medkit_optuna_sweeper.py" in names
    assert "hydra_plugins/__init__.py" not in names
    assert "medkit_exp/sweeps/sweeper.py" in names and "medkit_exp/conf/hparams_search/ner_optuna.yaml" in names
    for package in ("training", "ner", "ner/formats", "tracking", "sweeps"):
        assert f"medkit_exp/{package}/__init__.py" in names
