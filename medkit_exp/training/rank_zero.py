"""Rank 0, the one writer of a data-parallel run, and how the other ranks follow it.

Only rank 0 creates the run folder, writes ``history.jsonl`` and the checkpoints, and runs the
callbacks (which write and print). The other ranks take the same decisions at the same points of
the loop: the callbacks' stop/save/evaluate requests and a signal received by any rank are
agreed after each optimizer step, each evaluation and each epoch's end (:func:`agree_control`);
a checkpoint holds every rank's random states (:func:`rank_states`), and a resume restores each
rank's own, refusing a checkpoint written by another number of processes (:func:`resuming`).
With one process every function here is a no-op or the plain single-process object.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medkit_exp.errors import CheckpointError
from medkit_exp.training.distributed import DistributedContext


def make_run_folder(context: DistributedContext, folder: Path) -> None:
    """The run folder, created by rank 0 only (the one writer)."""
    if context.is_main:
        Path(folder).mkdir(parents=True, exist_ok=True)


def main_only(context: DistributedContext, callback: Any) -> list[Any]:
    """The callbacks (one or a list) of rank 0; none elsewhere: callbacks write and print, and their
    requests reach the other ranks through :func:`agree_control`."""
    callbacks = list(callback) if isinstance(callback, (list, tuple)) else [callback]
    return callbacks if context.is_main else []


class NoHistory:
    """The history file of the ranks that do not write (rank 0 is the one writer)."""

    nb_lines = 0

    def append(self, record: dict[str, Any]) -> None:
        pass

    def truncate(self, nb_lines: int) -> None:
        pass


def history_file(context: DistributedContext, folder: Path) -> Any:
    """Rank 0's ``history.jsonl`` in ``folder``; a :class:`NoHistory` on the other ranks."""
    from medkit_exp.training.history import HistoryFile

    return HistoryFile(folder) if context.is_main else NoHistory()


def rank_states(context: DistributedContext) -> dict[str, Any]:
    """What a checkpoint adds for a run of several processes: their number and every rank's
    random states (rank 0's are also the checkpoint's own ``rng``); nothing with one process."""
    from medkit_exp.training.seed import rng_states

    if not context.is_distributed:
        return {}
    return {"world_size": context.world_size, "rank_rng": context.all_gather(rng_states())}


def check_resume(context: DistributedContext, folder: Path) -> dict[str, Any]:
    """Before a resume: the checkpoint's trainer state, refused (CheckpointError naming both sizes)
    when another number of processes wrote it: its data shares and random states are theirs."""
    from medkit_exp.training.checkpoint import load_trainer_state

    payload = load_trainer_state(folder)
    saved = payload.get("world_size", 1)
    if saved != context.world_size:
        raise CheckpointError(f"written by a run of {saved} process(es); this run has {context.world_size}: resume "
                              f"it with {saved} process(es) (torchrun --nproc-per-node/--nnodes), or start a new run",
                              folder)
    return payload


@contextlib.contextmanager
def resuming(context: DistributedContext, folder: Path) -> Iterator[None]:
    """Around a resume from ``folder``: refused first if another number of processes wrote it;
    then this rank's own random states (the checkpoint's ``rng`` are rank 0's)."""
    from medkit_exp.training.seed import set_rng_states

    payload = check_resume(context, folder)
    yield
    if context.is_distributed:
        set_rng_states(payload["rank_rng"][context.rank])


def agree_control(context: DistributedContext, control: Any, signals: Any) -> None:
    """Make the stop/save/evaluate requests and a received signal the same on every rank.

    Callbacks run on rank 0 only; a signal may reach any rank. One MAX over ranks at the same
    point of the loop, so every rank stops (or saves, or evaluates) at the same step.
    """
    if not context.is_distributed:
        return
    received = signals.received
    code = int(signal.Signals[received]) if received else 0
    stop, save, evaluate, code = context.max_ints(
        [control.should_stop, control.should_save, control.should_evaluate, code]
    )
    if code and not received:
        signals.received = signal.Signals(code).name
    if stop and not control.should_stop:
        control.request_stop("stopped with rank 0")
    if stop:  # the reason rank 0 recorded, for every rank's state
        control.stop_reason = context.broadcast(control.stop_reason)
    control.should_save, control.should_evaluate = bool(save), bool(evaluate)
