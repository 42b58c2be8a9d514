"""The Trainer's own part of a checkpoint, ``trainer_state.pt``: what it holds and its restoration.

Beside the component's files and medkit's (``optimizer.pt``, ``scheduler.pt``,
``trainer_config.yml``), it keeps everything an exact resume needs: the counters and history
(:class:`TrainerState`), the fp16 gradient scaler, the sampler's seed, the running sums of the
current log and evaluation windows, the number of history lines written, the callbacks' states,
the batches skipped for a non-finite loss and every random state.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

import torch

from medkit_exp.training.checkpoint import CheckpointManager, read_checkpoint
from medkit_exp.training.component import TrainableComponent, exposed_model
from medkit_exp.training.events import CallbackList, TrainerState
from medkit_exp.training.running_mean import Windows
from medkit_exp.training.schedulers import load_scheduler_state
from medkit_exp.training.seed import rng_states, set_rng_states
from medkit_exp.training.weights import check_finite_weights

logger = logging.getLogger(__name__)


class Resumable(Protocol):
    """What of the Trainer a checkpoint saves and restores (the Trainer is one; this module does
    not import it, which imports this module)."""

    component: TrainableComponent
    state: TrainerState
    checkpoints: CheckpointManager
    optimizer: torch.optim.Optimizer
    lr_scheduler: Any
    grad_scaler: Any
    sampler: Any
    windows: Windows
    history_file: Any  # rank 0's HistoryFile, or rank_zero.NoHistory on the other ranks
    callbacks: CallbackList
    skipped_batches: int

    def build_optimization(self) -> None: ...


def trainer_payload(trainer: Resumable) -> dict[str, Any]:
    """What ``trainer_state.pt`` holds of ``trainer`` now."""
    return {
        "state": trainer.state.to_dict(),
        "grad_scaler": trainer.grad_scaler.state_dict() if trainer.grad_scaler is not None else None,
        "sampler_seed": trainer.sampler.seed,
        "windows": trainer.windows.state_dict(),
        "history_lines": trainer.history_file.nb_lines,
        "callbacks": trainer.callbacks.state_dicts(),
        "skipped_batches": trainer.skipped_batches,
        "rng": rng_states(),
    }


def resume_trainer(trainer: Resumable, which: str | Path) -> None:
    """Put ``trainer`` where a checkpoint ("last", "best" or a folder) left its run, the files'
    digests verified; nothing to resume from, a damaged file or weights that are not finite are
    a CheckpointError."""
    path = trainer.checkpoints.resolve(which)
    payload = read_checkpoint(path)
    logger.info("Resuming from %s (step %d)", path, payload["state"]["global_step"])
    trainer.component.load(path)
    check_finite_weights(exposed_model(trainer.component), path)
    trainer.build_optimization()  # load() may have replaced the model and its parameters
    trainer.optimizer.load_state_dict(payload["optimizer"])
    load_scheduler_state(trainer.lr_scheduler, payload["lr_scheduler"])
    if trainer.grad_scaler is not None and payload["grad_scaler"] is not None:
        trainer.grad_scaler.load_state_dict(payload["grad_scaler"])
    trainer.state.restore(payload["state"])
    trainer.sampler.seed = payload["sampler_seed"]
    trainer.windows.load_state_dict(payload["windows"])
    trainer.skipped_batches = payload["skipped_batches"]
    trainer.history_file.truncate(payload["history_lines"])
    trainer.callbacks.load_state_dicts(payload["callbacks"])
    set_rng_states(payload["rng"])  # last: nothing above may draw from them
