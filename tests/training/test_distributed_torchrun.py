"""Data-parallel training under real torchrun processes (2 on CPU, gloo): agreements, equivalence
with one process, one writer, resume after SIGKILL, early stopping, SIGTERM, failures."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from medkit_exp.errors import CheckpointError
from tests.training import ddp_toy
from tests.training.ddp_launch import rank_files, torchrun

# 45 items, 4 per process x 2 processes x 2 accumulation steps: 3 optimizer steps per epoch,
# a short last global batch (5 items: 3 + 2), length grouping, an evaluation every 2 steps.
ARGS = ["--eval-steps", "2", "--epochs", "2", "--batch-size", "4", "--accumulation", "2", "--group-by-length"]
# DDP; submodules called directly; no `model` (both: collectives); DDP with training metrics
EQUIVALENT = ["whole", "toy", "hidden", "train-metrics"]


def max_weight_difference(first: dict, second: dict) -> float:
    assert first.keys() == second.keys()
    return max((first[key] - second[key]).abs().max().item() for key in first)


def states(folder) -> list[dict]:
    return [torch.load(folder / f"final_state_rank{rank}.pt") for rank in range(2)]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """One torchrun launch training each component in turn (each Trainer joins and leaves the group)."""
    out = tmp_path_factory.mktemp("two_processes")
    torchrun("ddp_toy.py", str(out), "--components", ",".join([*EQUIVALENT, "early", "sabotaged"]), *ARGS, timeout=240)
    return out


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The same trainings in this process with twice the batch (no torchrun: WORLD_SIZE unset)."""
    out = tmp_path_factory.mktemp("one_process")
    ddp_toy.main([str(out), "--components", ",".join([*EQUIVALENT, "early"]), *ARGS, "--batch-size", "8"])
    return out


def test_ranks_agree_through_torch_collectives(tmp_path):
    torchrun("ddp_collectives.py", str(tmp_path))
    rank0, rank1 = rank_files(tmp_path)
    assert rank0["context"] == [2, 0, True, True] and rank1["context"] == [2, 1, False, True]
    for seen in (rank0, rank1):
        assert seen["gathered"] == ["rank0", "rank1"] and seen["broadcast"] == "from0"
        # rank 0's stop request (its reason) and rank 1's signal and save request, on both
        assert seen["control"] == [True, "early_stopping", True, "SIGTERM"]
        assert seen["batch"] == [False, 7, 1.5]  # rank 1's loss not finite: neither goes on alone; 3 + 4 terms
        assert seen["decided"] == "written by 0"
        assert "learning_rate': differs between processes: 0.1 on rank 0, 0.2 on rank 1" in seen["setup"]
        assert seen["data"].startswith("DataError: train_data differs between processes: 8 items on rank 0, 9")
        assert "component': cannot be synchronised" in seen["shapes"]
        assert seen["grads"] == [[1.5, 1.5], [2.0, 2.0], None]
        assert seen["left"] is False and seen["rejoined"] == [0, 1]
    assert rank0["main_decides"] == "ZeroDivisionError: division by zero"
    assert rank1["main_decides"] == "OtherRankError: rank 0 failed: ZeroDivisionError: division by zero"


@pytest.mark.parametrize("component", EQUIVALENT)
def test_two_processes_end_with_the_weights_of_one_with_twice_the_batch(two_processes, one_process, component):
    single = torch.load(one_process / component / "final_state_rank0.pt")
    for state in states(two_processes / component):
        assert max_weight_difference(state, single) <= 1e-5
    expected = json.loads((one_process / component / "rank0.json").read_text())
    for report in rank_files(two_processes / component):
        assert report["global_step"] == expected["global_step"] == 6
        assert (report["world_size"], report["global_batch_size"]) == (2, 16)  # 4 x 2 processes x 2 steps
        assert report["group_left"]  # the Trainer joined the group, and left it at the end of train()
        assert len(report["history"]) == len(expected["history"]) == 3
        for ours, theirs in zip(report["history"], expected["history"]):
            assert ours["eval"]["accuracy"] == theirs["eval"]["accuracy"]  # the same predictions, counted once
            assert ours["eval"]["loss"] == pytest.approx(theirs["eval"]["loss"], abs=1e-6)
            assert ours["train"]["loss"] == pytest.approx(theirs["train"]["loss"], abs=1e-6)
            assert ours["train"].get("accuracy") == theirs["train"].get("accuracy")  # do_metrics_in_training
    assert expected["world_size"] == 1 and expected["global_batch_size"] == 16


def test_rank_zero_alone_writes_the_run_folder(two_processes, one_process):
    ours, theirs = two_processes / "whole" / "run", one_process / "whole" / "run"
    assert sorted(p.name for p in (ours / "checkpoints").iterdir()) == sorted(
        p.name for p in (theirs / "checkpoints").iterdir())
    lines = (ours / "history.jsonl").read_text().splitlines()
    assert len(lines) == len((theirs / "history.jsonl").read_text().splitlines())  # no rank wrote twice
    logged = [json.loads(line) for line in lines if '"type": "log"' in line]
    assert logged and all(record["samples_per_second"] > 0 for record in logged)


def test_early_stopping_stops_every_rank_at_the_same_step(two_processes, one_process):
    expected = json.loads((one_process / "early" / "rank0.json").read_text())
    assert expected["stop_reason"] == "early_stopping" and expected["global_step"] == 4
    for report in rank_files(two_processes / "early"):
        assert (report["stop_reason"], report["global_step"]) == ("early_stopping", 4)
    state = json.loads((two_processes / "early" / "run" / "checkpoints" / "state.json").read_text())
    assert state["last"] == "checkpoint-0000004"


@pytest.mark.slow  # torchrun processes: CI's slow run
def test_sigkill_of_one_rank_then_resume_is_bit_identical(two_processes, tmp_path):
    killed = torchrun("ddp_toy.py", str(tmp_path), "--components", "sabotaged", *ARGS, "--what", "kill", "--at", "9",
                      check=False)
    assert killed.returncode != 0  # rank 1 killed in step 5; the last checkpoint is step 4's
    run = tmp_path / "sabotaged" / "run"
    assert json.loads((run / "checkpoints" / "state.json").read_text())["last"] == "checkpoint-0000004"
    with pytest.raises(CheckpointError, match="written by a run of 2 process\\(es\\); this run has 1"):
        ddp_toy.main([str(tmp_path), "--components", "sabotaged", *ARGS, "--resume"])
    torchrun("ddp_toy.py", str(tmp_path), "--components", "sabotaged", *ARGS, "--resume")
    reference = two_processes / "sabotaged"
    for resumed, uninterrupted in zip(states(tmp_path / "sabotaged"), states(reference)):
        assert all(torch.equal(resumed[key], uninterrupted[key]) for key in uninterrupted)  # dropout: RNG restored
    for resumed, uninterrupted in zip(rank_files(tmp_path / "sabotaged"), rank_files(reference)):
        assert resumed["history"] == uninterrupted["history"]
    timeless = [{k: v for k, v in json.loads(line).items() if not k.endswith("per_second")}
                for line in (run / "history.jsonl").read_text().splitlines()]
    assert timeless == [{k: v for k, v in json.loads(line).items() if not k.endswith("per_second")}
                        for line in (reference / "run" / "history.jsonl").read_text().splitlines()]


@pytest.mark.slow  # torchrun processes: CI's slow run
def test_sigterm_to_one_rank_stops_both_at_the_same_step_with_one_checkpoint(tmp_path):
    torchrun("ddp_toy.py", str(tmp_path), "--components", "sabotaged", *ARGS, "--what", "sigterm", "--at", "5")
    reports = rank_files(tmp_path / "sabotaged")
    assert [(r["stop_reason"], r["global_step"]) for r in reports] == [("SIGTERM", 3)] * 2  # forward 5: step 3
    state = json.loads((tmp_path / "sabotaged" / "run" / "checkpoints" / "state.json").read_text())
    assert state["last"] == "checkpoint-0000003"


@pytest.mark.slow
def test_an_exception_on_one_rank_ends_every_rank_and_is_shown(tmp_path):
    failed = torchrun("ddp_toy.py", str(tmp_path), "--components", "sabotaged", *ARGS, "--what", "raise",
                      "--at", "5", check=False, timeout=90)
    assert failed.returncode != 0
    assert "RuntimeError: rank 1 broke at forward 5" in failed.stdout + failed.stderr


@pytest.mark.slow
def test_configs_that_differ_between_ranks_stop_every_rank_with_one_error(tmp_path):
    failed = torchrun("ddp_toy.py", str(tmp_path), "--components", "whole", "--rank1-lr", "0.1", check=False)
    assert failed.returncode != 0
    output = failed.stdout + failed.stderr
    message = "config key 'learning_rate': differs between processes: 0.005 on rank 0, 0.1 on rank 1"
    assert f"[rank0]: medkit_exp.errors.ConfigError: {message}" in output
    assert f"[rank1]: medkit_exp.errors.ConfigError: {message}" in output
    assert not (tmp_path / "whole" / "run" / "checkpoints").exists()


def test_the_tagger_token_loss_is_normalised_over_the_global_batch(tmp_path, tiny_bert_dir):
    """The tagger's ``nb_loss_terms`` (its labelled tokens) makes 2 processes train as one process with twice
    the batch; a tagger without it (each rank's token mean weighed as its share of items) gets another gradient."""
    bert = tmp_path / "bert"
    shutil.copytree(tiny_bert_dir, bert)
    config = json.loads((bert / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # equal runs need no dropout
    (bert / "config.json").write_text(json.dumps(config))
    common = ["--components", "tagger,tagger-items", "--bert", str(bert), "--items", "30", "--epochs", "2"]
    torchrun("ddp_toy.py", str(tmp_path / "two"), *common, "--batch-size", "4", timeout=240)
    ddp_toy.main([str(tmp_path / "one"), *common, "--batch-size", "8"])
    single = torch.load(tmp_path / "one" / "tagger" / "final_state_rank0.pt")
    for state in states(tmp_path / "two" / "tagger"):
        assert max_weight_difference(state, single) <= 1e-5
    expected = json.loads((tmp_path / "one" / "tagger" / "rank0.json").read_text())["history"]
    for ours, theirs in zip(json.loads((tmp_path / "two" / "tagger" / "rank0.json").read_text())["history"], expected):
        assert {k: v for k, v in ours["eval"].items() if k != "loss"} == {
            k: v for k, v in theirs["eval"].items() if k != "loss"}
        assert ours["eval"]["loss"] == pytest.approx(theirs["eval"]["loss"], abs=1e-6)
    items = torch.load(tmp_path / "one" / "tagger-items" / "final_state_rank0.pt")
    assert max_weight_difference(states(tmp_path / "two" / "tagger-items")[0], items) > 1e-3
