"""Checkpoints: crash-consistent writes, best-k + last retention, and a small state file.

Layout of ``<output_dir>/checkpoints/``::

    checkpoint-0000120/          the component's own save() files (e.g. a Hugging Face
        optimizer.pt             model folder); the optimizer state (medkit's file name),
        scheduler.pt             the scheduler state when there is a scheduler (medkit's),
        trainer_config.yml       the TrainerConfig (medkit's),
        trainer_state.pt         the rest of the run: counters, history, RNG states, grad
                                 scaler, callback states,
        checksums.json           and, written last, the size and sha256 of every other file
    state.json                   {"last": ..., "best": ..., "checkpoints": [...]}

medkit names its checkpoints ``checkpoint_<epoch>_<timestamp>`` directly in ``output_dir``;
ours are named after the optimizer step (unique when saving mid-epoch) and kept in
``checkpoints/`` beside the run's history. Every checkpoint folder loads with the component's
own ``load(folder)``, as medkit's do.

A save survives a kill at any instant, because of its order: the checkpoint is written into
``.tmp-<name>``, its digests last, everything flushed to disk; the folder is renamed to its
name; ``state.json`` is replaced atomically; only then are older checkpoints removed (each
renamed to ``.trash-<name>`` first). ``state.json`` therefore never names a folder that is
being written or deleted. When it names a missing or incomplete folder all the same (removed
by hand, a run of an older version), the newest complete checkpoint is used, with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medkit_exp.errors import CheckpointError, ConfigError
from medkit_exp.training.digests import incomplete_reason, read_manifest, verify_checkpoint, write_manifest
from medkit_exp.training.durable import TRASH_PREFIX, atomic_write_text, fsync_dir, fsync_tree, remove_tree

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"
TRAINER_STATE = "trainer_state.pt"
# medkit's names (``medkit.training.trainer``), for the files medkit also writes
CONFIG_NAME = "trainer_config.yml"
OPTIMIZER_NAME = "optimizer.pt"
SCHEDULER_NAME = "scheduler.pt"
#: The Trainer's own files in a checkpoint folder; every other file is the component's.
TRAINER_FILES = (TRAINER_STATE, CONFIG_NAME, OPTIMIZER_NAME, SCHEDULER_NAME)
# 2: optimizer and scheduler states in medkit's files; 1 kept them in trainer_state.pt
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
TMP_PREFIX = ".tmp-"
_NAME = re.compile(r"checkpoint-(\d+)")


@dataclass
class CheckpointRecord:
    name: str
    step: int
    metric: float | None


@dataclass
class CheckpointManager:
    """Names, writes, ranks and prunes the checkpoints of one run.

    Reading an existing ``checkpoints/`` folder keeps only complete checkpoints: those that
    ``state.json`` names but are missing or incomplete are forgotten with a warning, and a
    ``last`` among them falls back to the newest complete checkpoint on disk.
    """

    root: Path
    keep_best_k: int = 1
    minimize: bool = True
    records: list[CheckpointRecord] = field(default_factory=list)
    last: str | None = None
    # checkpoints state.json names that were found missing or incomplete, and why
    unusable: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        state_path = self.root / STATE_FILE
        on_disk = self._complete_on_disk()
        if state_path.exists():
            self._read_state(state_path)
            self._keep_complete(on_disk)
        elif on_disk:  # killed between the first rename and the first state.json
            self.records = sorted(on_disk.values(), key=lambda r: r.step)
            self.last = self.records[-1].name
            logger.warning("%s has no %s: recovered %d complete checkpoint(s) from their folders, the last "
                           "being %s", self.root, STATE_FILE, len(self.records), self.last)

    @property
    def best(self) -> str | None:
        record = self.best_record()
        return None if record is None else record.name

    def best_record(self) -> CheckpointRecord | None:
        """The kept checkpoint with the best metric (None when none has a metric)."""
        ranked = self._ranked()
        return ranked[0] if ranked else None

    def best_or_last(self) -> tuple[Path | None, float | None]:
        """The best checkpoint's folder and metric; the last one's, with no metric, when none is ranked."""
        best = self.best_record()
        return (self.path(self.last), None) if best is None else (self.root / best.name, best.metric)

    def path(self, name: str | None) -> Path | None:
        return None if name is None else self.root / name

    def save(self, step: int, metric: float | None, write: Callable[[Path], None]) -> Path:
        """Write a checkpoint for ``step`` through ``write(tmp_folder)``, then record it and prune.

        Order (each step durable before the next): files and digests in the temporary folder,
        rename, ``state.json``, removal of the checkpoints no longer kept.
        """
        name = checkpoint_name(step)
        final, tmp = self.root / name, self.root / f"{TMP_PREFIX}{name}"
        if not self.root.is_dir():
            self.root.mkdir(parents=True)
            fsync_dir(self.root.parent)  # the new folder's own name, durable like the rest
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir()
            write(tmp)
            write_manifest(tmp, step, metric)  # last: its presence marks the folder complete
            fsync_tree(tmp)
        except OSError as error:  # a full disk, a lost mount: the earlier checkpoints stay as they were
            shutil.rmtree(tmp, ignore_errors=True)
            raise CheckpointError(f"cannot write the checkpoint ({error})", tmp) from error
        if final.exists():  # the same step saved again (e.g. after a resume from an older checkpoint)
            remove_tree(final)
        os.replace(tmp, final)
        fsync_dir(self.root)
        self.records = [r for r in self.records if r.name != name]
        self.records.append(CheckpointRecord(name, step, metric))
        self.last = name
        doomed = self._not_kept()
        self.records = [r for r in self.records if r not in doomed]
        self._write_state()  # names only the kept checkpoints: never one being deleted
        for record in doomed:
            if (self.root / record.name).exists():
                remove_tree(self.root / record.name)
        self._remove_leftovers(step)
        return final

    def resolve(self, which: str | os.PathLike) -> Path:
        """The checkpoint folder to resume from: ``which`` is "last", "best" or a folder.

        Nothing to resume from is a CheckpointError naming the folder, never a fresh start.
        """
        if str(which) not in ("last", "best"):
            path = Path(which)
            if not path.is_dir():
                raise CheckpointError("checkpoint folder not found (resume_from)", path)
            return path
        name = self.last if str(which) == "last" else self.best
        if name is None and self.last is not None:
            logger.warning("No checkpoint of %s was ranked (no eval metric): resuming from the last one, %s",
                           self.root, self.last)
            name = self.last
        if name is None:
            unusable = "".join(f"; {self.root / n} is {reason}" for n, reason in self.unusable.items())
            raise CheckpointError(
                f"nothing to resume from (resume_from={which}): no complete checkpoint in this folder{unusable}; "
                "to start a new run, leave resume_from unset", self.root,
            )
        return self.root / name

    def check_new_run(self) -> None:
        """A new run must not overwrite an earlier run's checkpoints: ConfigError saying what to do."""
        found = {r.name for r in self.records}
        if self.root.is_dir():  # incomplete ones too: a new run would replace them
            found |= {p.name for p in self.root.iterdir() if _NAME.fullmatch(p.name)}
        names = sorted(found)
        if names:
            shown = ", ".join(names[-3:]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            raise ConfigError(
                "resume_from", f"{self.root} already holds checkpoints of an earlier run ({shown}); "
                "resume it with resume_from=last, or start the new run in a new output folder",
            )

    def _ranked(self) -> list[CheckpointRecord]:
        scored = [r for r in self.records if r.metric is not None]
        sign = 1.0 if self.minimize else -1.0
        # Ties go to the earlier checkpoint, like "strictly better" tracking.
        return sorted(scored, key=lambda r: (sign * r.metric, r.step))

    def _not_kept(self) -> list[CheckpointRecord]:
        keep = {r.name for r in self._ranked()[: self.keep_best_k]}
        keep.add(self.last)
        return [r for r in self.records if r.name not in keep]

    def _remove_leftovers(self, step: int) -> None:
        """Folders of saves and removals that a kill interrupted: temporary and trash folders, and
        checkpoints of earlier steps that state.json no longer names (a kill came between its
        rewrite and their removal, or between their rename and that rewrite, then the run went on
        from an earlier checkpoint). Checkpoints of later steps stay: the run may write them again."""
        kept = {r.name for r in self.records}
        for leftover in sorted(self.root.iterdir()):
            match = _NAME.fullmatch(leftover.name)
            stale = match is not None and leftover.name not in kept and int(match.group(1)) < step
            if stale and leftover.is_dir():
                logger.info("Removing %s, a checkpoint left by an interrupted run and no longer kept", leftover)
                remove_tree(leftover)
            elif leftover.name.startswith((TMP_PREFIX, TRASH_PREFIX)) and leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)

    def _write_state(self) -> None:
        state = {
            "format_version": FORMAT_VERSION,
            "last": self.last,
            "best": self.best,
            "minimize": self.minimize,
            "checkpoints": [r.__dict__ for r in self.records],
        }
        atomic_write_text(self.root / STATE_FILE, json.dumps(state, indent=2))

    def _read_state(self, path: Path) -> None:
        try:
            state = json.loads(path.read_text())
            self.records = [CheckpointRecord(**r) for r in state["checkpoints"]]
            self.last = state["last"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CheckpointError(f"unreadable checkpoint state file ({error})", path) from error

    def _complete_on_disk(self) -> dict[str, CheckpointRecord]:
        """The complete checkpoint folders of ``root``, by name, their step and metric from their digests."""
        found: dict[str, CheckpointRecord] = {}
        folders = sorted(self.root.iterdir()) if self.root.is_dir() else []
        for folder in folders:
            match = _NAME.fullmatch(folder.name)
            if match is None or not folder.is_dir() or incomplete_reason(folder) is not None:
                continue
            manifest = read_manifest(folder) or {}
            found[folder.name] = CheckpointRecord(folder.name, int(match.group(1)), manifest.get("metric"))
        return found

    def _keep_complete(self, on_disk: dict[str, CheckpointRecord]) -> None:
        """Forget what ``state.json`` names that is not a complete folder; fall back for ``last``."""
        names = {r.name for r in self.records} | ({self.last} if self.last else set())
        self.unusable = {n: incomplete_reason(self.root / n) or "" for n in sorted(names) if n not in on_disk}
        for record in [r for r in self.records if r.name not in on_disk]:
            if record.name != self.last:
                logger.warning("Checkpoint %s listed in %s is %s: forgotten", self.root / record.name, STATE_FILE,
                               self.unusable[record.name])
            self.records.remove(record)
        if self.last is None or self.last in on_disk:
            return
        named, reason = self.root / self.last, self.unusable[self.last]
        newest = max(on_disk.values(), key=lambda r: r.step, default=None)
        if newest is None:
            logger.warning("%s names %s as the last checkpoint, but it is %s and no complete checkpoint is left",
                           STATE_FILE, named, reason)
            self.last = None
            return
        logger.warning("%s names %s as the last checkpoint, but it is %s: using the newest complete checkpoint, %s",
                       STATE_FILE, named, reason, self.root / newest.name)
        if newest.name not in {r.name for r in self.records}:
            self.records.append(newest)
        self.last = newest.name


def resolve_checkpoint(output_dir: Path, which: str | os.PathLike) -> Path:
    """The checkpoint folder for ``which``: a path, or "last"/"best" of ``output_dir``.

    Nothing to resume from is a CheckpointError naming the folder (never None: a resume that
    finds nothing must not become a new run).
    """
    return CheckpointManager(Path(output_dir) / "checkpoints").resolve(which)


def check_resume_choice(output_dir: Path, resume_from: str | os.PathLike | None) -> None:
    """What ``Trainer.train(resume_from)`` would refuse, checked before any heavy work.

    ``resume_from`` None (a new run) in a folder holding checkpoints is a ConfigError naming
    ``resume_from``; "last"/"best"/a folder with nothing to resume from a CheckpointError.
    """
    manager = CheckpointManager(Path(output_dir) / "checkpoints")
    if resume_from is None:
        manager.check_new_run()
    else:
        read_checkpoint_header(manager.resolve(resume_from))


def read_checkpoint_header(folder: Path) -> None:
    """Cheap checks of a checkpoint folder: complete, with trainer_state.pt (digests are checked on load)."""
    reason = incomplete_reason(folder)
    if reason is not None:
        raise CheckpointError(f"not a complete checkpoint: {reason}", folder)
    if not (Path(folder) / TRAINER_STATE).is_file():
        raise CheckpointError(f"missing {TRAINER_STATE}: not a checkpoint of a medkit_exp training", folder)


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
    """Everything ``write_checkpoint`` wrote: the trainer state with ``optimizer`` and ``lr_scheduler``.

    Every file's digest is verified first: a damaged file is a CheckpointError naming it.
    """
    verify_checkpoint(folder)
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
        reason = f"{type(error).__name__}: {error}"
        raise CheckpointError(f"corrupt or truncated checkpoint file ({reason})", path) from error


def checkpoint_name(step: int) -> str:
    """The folder name of the checkpoint of optimizer step ``step``."""
    return f"checkpoint-{step:07d}"
