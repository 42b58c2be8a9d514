"""Data-parallel training under real torchrun processes (2 on CPU, gloo): agreements, equivalence
with one process, one writer, resume, stops and failures."""

from __future__ import annotations

from tests.training.ddp_launch import rank_files, torchrun


def test_ranks_agree_through_torch_collectives(tmp_path):
    torchrun("ddp_collectives.py", str(tmp_path))
    rank0, rank1 = rank_files(tmp_path)
    assert rank0["context"] == [2, 0, True, True] and rank1["context"] == [2, 1, False, True]
    for seen in (rank0, rank1):
        assert seen["gathered"] == ["rank0", "rank1"] and seen["broadcast"] == "from0"
        # rank 0's stop request (its reason) and rank 1's signal and save request, on both
        assert seen["control"] == [True, "early_stopping", True, "SIGTERM"]
        assert seen["batch"] == [False, 7]  # rank 1's loss not finite: neither goes on alone; 3 + 4 terms
        assert seen["decided"] == "written by 0"
        assert "learning_rate': differs between processes: 0.1 on rank 0, 0.2 on rank 1" in seen["setup"]
        assert seen["data"].startswith("DataError: train_data differs between processes: 8 items on rank 0, 9")
        assert "component': cannot be synchronised" in seen["shapes"]
        assert seen["grads"] == [[1.5, 1.5], [2.0, 2.0], None]
        assert seen["left"] is False and seen["rejoined"] == [0, 1]
    assert rank0["main_decides"] == "ZeroDivisionError: division by zero"
    assert rank1["main_decides"] == "OtherRankError: rank 0 failed: ZeroDivisionError: division by zero"
