"""Checkpoints: atomic writes, best-k + last retention, and a small state file.

Layout of ``<output_dir>/checkpoints/``::

    checkpoint-0000120/          the component's own save() files (e.g. a Hugging Face
        optimizer.pt             model folder); the optimizer state (medkit's file name),
        scheduler.pt             the scheduler state when there is a scheduler (medkit's),
        trainer_config.yml       the TrainerConfig (medkit's),
        trainer_state.pt         and the rest of the run: counters, history, RNG states,
                                 grad scaler, callback states
    state.json                   {"last": ..., "best": ..., "checkpoints": [...]}

medkit names its checkpoints ``checkpoint_<epoch>_<timestamp>`` directly in ``output_dir``;
ours are named after the optimizer step (unique when saving mid-epoch) and kept in
``checkpoints/`` beside the run's history. Every checkpoint folder loads with the component's
own ``load(folder)``, as medkit's do.

A checkpoint is written into ``.tmp-<name>`` and renamed when complete, so a run killed
while saving never leaves a partial checkpoint under its final name.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medkit_exp.errors import CheckpointError

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"
TRAINER_STATE = "trainer_state.pt"
# medkit's names (``medkit.training.trainer``), for the files medkit also writes
CONFIG_NAME = "trainer_config.yml"
OPTIMIZER_NAME = "optimizer.pt"
SCHEDULER_NAME = "scheduler.pt"
TRAINER_CONFIG = CONFIG_NAME
# 2: optimizer and scheduler states in medkit's files; 1 kept them in trainer_state.pt
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)


@dataclass
class CheckpointRecord:
    name: str
    step: int
    metric: float | None


@dataclass
class CheckpointManager:
    """Names, writes, ranks and prunes the checkpoints of one run."""

    root: Path
    keep_best_k: int = 1
    minimize: bool = True
    records: list[CheckpointRecord] = field(default_factory=list)
    last: str | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        state_path = self.root / STATE_FILE
        if state_path.exists():
            self._read_state(state_path)

    @property
    def best(self) -> str | None:
        ranked = self._ranked()
        return ranked[0].name if ranked else None

    def path(self, name: str | None) -> Path | None:
        return None if name is None else self.root / name

    def save(self, step: int, metric: float | None, write: Callable[[Path], None]) -> Path:
        """Write a checkpoint for ``step`` through ``write(tmp_folder)``, then record and prune."""
        name = checkpoint_name(step)
        final = self.root / name
        tmp = self.root / f".tmp-{name}"
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        write(tmp)
        _fsync_tree(tmp)
        if final.exists():  # the same step saved again (e.g. after a resume)
            shutil.rmtree(final)
        os.replace(tmp, final)
        self.records = [r for r in self.records if r.name != name]
        self.records.append(CheckpointRecord(name, step, metric))
        self.last = name
        self._prune()
        self._write_state()
        return final

    def _ranked(self) -> list[CheckpointRecord]:
        scored = [r for r in self.records if r.metric is not None]
        sign = 1.0 if self.minimize else -1.0
        # Ties go to the earlier checkpoint, like "strictly better" tracking.
        return sorted(scored, key=lambda r: (sign * r.metric, r.step))

    def _prune(self) -> None:
        keep = {r.name for r in self._ranked()[: self.keep_best_k]}
        keep.add(self.last)
        for record in list(self.records):
            if record.name not in keep:
                shutil.rmtree(self.root / record.name, ignore_errors=True)
                self.records.remove(record)
        for leftover in self.root.glob(".tmp-*"):
            shutil.rmtree(leftover, ignore_errors=True)

    def _write_state(self) -> None:
        state = {
            "format_version": FORMAT_VERSION,
            "last": self.last,
            "best": self.best,
            "minimize": self.minimize,
            "checkpoints": [r.__dict__ for r in self.records],
        }
        tmp = self.root / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self.root / STATE_FILE)

    def _read_state(self, path: Path) -> None:
        try:
            state = json.loads(path.read_text())
            self.records = [CheckpointRecord(**r) for r in state["checkpoints"]]
            self.last = state["last"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CheckpointError(f"unreadable checkpoint state file ({error})", path) from error
        # A checkpoint folder removed by hand is forgotten rather than resumed from.
        self.records = [r for r in self.records if (self.root / r.name).is_dir()]
        if self.last is not None and not (self.root / self.last).is_dir():
            self.last = self.records[-1].name if self.records else None


def resolve_checkpoint(output_dir: Path, which: str | os.PathLike) -> Path | None:
    """The checkpoint folder for ``which``: a path, or "last"/"best" of ``output_dir``.

    Returns None for "last"/"best" when the run has no checkpoint yet.
    """
    if str(which) in ("last", "best"):
        manager = CheckpointManager(Path(output_dir) / "checkpoints")
        return manager.path(manager.last if str(which) == "last" else manager.best)
    path = Path(which)
    if not path.is_dir():
        raise CheckpointError("checkpoint folder not found", path)
    return path


def load_trainer_state(checkpoint_dir: Path) -> dict[str, Any]:
    """Read ``trainer_state.pt``, failing clearly on a missing, partial or corrupt file."""
    path = Path(checkpoint_dir) / TRAINER_STATE
    if not path.is_file():
        raise CheckpointError(f"missing {TRAINER_STATE}: not a medkit_exp checkpoint, or a partial one", path)
    state = _torch_load(path)
    if not isinstance(state, dict) or state.get("format_version") not in READABLE_FORMATS:
        raise CheckpointError("unknown checkpoint format (written by another program or version?)", path)
    return state


def write_checkpoint(
    folder: Path, trainer_state: dict[str, Any], config: dict[str, Any], optimizer: Any, lr_scheduler: Any | None
) -> None:
    """Write the Trainer's files into ``folder`` (the component has written its own)."""
    import torch
    import yaml

    torch.save(optimizer.state_dict(), folder / OPTIMIZER_NAME)
    if lr_scheduler is not None:
        torch.save(lr_scheduler.state_dict(), folder / SCHEDULER_NAME)
    saved = {"format_version": FORMAT_VERSION, "has_lr_scheduler": lr_scheduler is not None, **trainer_state}
    torch.save(saved, folder / TRAINER_STATE)
    with open(folder / CONFIG_NAME, "w", encoding="utf-8") as handle:
        yaml.safe_dump(config, handle, sort_keys=False, allow_unicode=True)


def read_checkpoint(folder: Path) -> dict[str, Any]:
    """Everything ``write_checkpoint`` wrote: the trainer state with ``optimizer`` and ``lr_scheduler``."""
    payload = load_trainer_state(folder)
    if payload["format_version"] == 1:
        return payload  # optimizer and scheduler states are inside
    optimizer_path, scheduler_path = Path(folder) / OPTIMIZER_NAME, Path(folder) / SCHEDULER_NAME
    if not optimizer_path.is_file():
        raise CheckpointError(f"missing {OPTIMIZER_NAME}: a partial checkpoint", optimizer_path)
    payload["optimizer"] = _torch_load(optimizer_path)
    if payload["has_lr_scheduler"] and not scheduler_path.is_file():
        raise CheckpointError(f"missing {SCHEDULER_NAME}: a partial checkpoint", scheduler_path)
    payload["lr_scheduler"] = _torch_load(scheduler_path) if payload["has_lr_scheduler"] else None
    return payload


def _torch_load(path: Path) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many types for truncated/corrupt files
        raise CheckpointError(f"corrupt or truncated checkpoint file ({type(error).__name__}: {error})", path) from error


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def checkpoint_name(step: int) -> str:
    """The folder name of the checkpoint of optimizer step ``step``."""
    return f"checkpoint-{step:07d}"
