"""Run under torchrun (2 processes, gloo): the agreements of medkit_exp.training.distributed.

usage: python -m torch.distributed.run --standalone --nproc-per-node=2 ddp_collectives.py OUT_DIR
Each rank writes OUT_DIR/rank<N>.json with what it saw; the test compares them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from medkit_exp.training import distributed, rank_zero  # noqa: E402
from medkit_exp.training.callbacks import TrainerControl  # noqa: E402
from medkit_exp.training.data_parallel import average_gradients  # noqa: E402
from medkit_exp.training.signals import StopSignals  # noqa: E402


def error_of(action) -> str | None:
    try:
        action()
    except Exception as error:  # noqa: BLE001 - the test compares the messages
        return f"{type(error).__name__}: {error}"
    return None


def main(out: Path) -> None:
    context = distributed.init_from_env("gloo", timeout_s=60)
    rank, seen = context.rank, {}
    seen["context"] = [context.world_size, context.rank, context.is_main, context.owns_group]
    seen["gathered"] = context.all_gather(f"rank{rank}")
    seen["broadcast"] = context.broadcast(f"from{rank}")
    # A signal reaches rank 1 only; rank 0's callback asked to stop: both agree on both.
    control, signals = TrainerControl(), StopSignals()
    if rank == 0:
        control.request_stop("early_stopping")
    else:
        signals.received = "SIGTERM"
        control.request_save()
    rank_zero.agree_control(context, control, signals)
    seen["control"] = [control.should_stop, control.stop_reason, control.should_save, signals.received]
    seen["batch"] = distributed.agree_batch(context, finite=rank == 0, terms=3 + rank, weighted_loss=1.5)
    seen["main_decides"] = error_of(lambda: context.main_decides(lambda: 1 / 0))
    seen["decided"] = context.main_decides(lambda: f"written by {rank}")
    config = {"learning_rate": 0.1 if rank == 0 else 0.2, "batch_size": 4}
    seen["setup"] = error_of(lambda: distributed.check_same_setup(context, config, {"train_data": 8}))
    seen["data"] = error_of(lambda: distributed.check_same_setup(context, {}, {"train_data": 8 + rank}))
    seen["shapes"] = error_of(lambda: distributed.check_same_parameters(context, [torch.zeros(2 + rank)]))
    # Gradients averaged; one present on rank 1 only becomes its half on both.
    first, second, never = (torch.zeros(2, requires_grad=True) for _ in range(3))
    first.grad = torch.full((2,), float(rank + 1))
    second.grad = torch.ones(2) * 4 if rank == 1 else None
    average_gradients(context, [first, second, never])
    seen["grads"] = [first.grad.tolist(), second.grad.tolist(), never.grad]
    distributed.leave(context)
    seen["left"] = torch.distributed.is_initialized()
    again = distributed.init_from_env("gloo", timeout_s=60)  # a process may join again after leaving
    seen["rejoined"] = again.all_gather(rank)
    distributed.leave(again)
    (out / f"rank{rank}.json").write_text(json.dumps(seen))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
