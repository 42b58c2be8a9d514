"""What :class:`~medkit_exp.tracking.callback.MLflowCallback` does at the end of a run, apart
from the callback's own state: the status a run ended with, its summary tags, the files it
uploads (history, checkpoints) and the hooks that log its model and artifacts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from medkit_exp.training.callbacks import ReadOnlyState
from medkit_exp.tracking.hooks import FunctionHooks, TrackingHooks
from medkit_exp.tracking.messages import LogArtifacts

logger = logging.getLogger("medkit_exp.tracking.callback")  # the callback's messages

HISTORY_FILE = "history.jsonl"
PRUNED_REASON = "pruned"  # how a pruner's stop reason starts (sweeps/pruning.py: "pruned by Optuna ...")


def end_status(state: ReadOnlyState) -> str:
    """The MLflow status of a run that ended without an exception: KILLED when a signal stopped it
    or a pruner abandoned it (a stop reason starting with ``pruned``, as the sweeps' pruning
    callback gives: the run did not finish its training), else FINISHED (early stopping included)."""
    if state.interrupted or str(state.stop_reason or "").startswith(PRUNED_REASON):
        return "KILLED"
    return "FINISHED"


def summary_tags(state: ReadOnlyState, status: str, log_checkpoints: Sequence[str]) -> dict[str, str]:
    """The tags that sum a run up: its status, last step, stop reason and checkpoints' names."""
    tags = {"status": status, "global_step": str(state.global_step)}
    if state.stop_reason:
        tags["stop_reason"] = state.stop_reason
    for kind in log_checkpoints:
        path = state.best_checkpoint if kind == "best" else state.last_checkpoint
        if path:
            tags[f"checkpoint.{kind}"] = Path(path).name
    return tags


def end_uploads(state: ReadOnlyState, log_checkpoints: Sequence[str]) -> list[LogArtifacts]:
    """The history file and the checkpoints ``log_checkpoints`` names (one upload when best and
    last are the same checkpoint); checkpoints are written once, so they are linked, not copied."""
    history = Path(state.output_dir) / HISTORY_FILE
    uploads = [LogArtifacts(str(history), "history")] if history.exists() else []
    uploaded: set[str] = set()
    for kind in log_checkpoints:
        path = state.best_checkpoint if kind == "best" else state.last_checkpoint
        if path and Path(path).is_dir() and path not in uploaded:
            uploaded.add(path)
            uploads.append(LogArtifacts(str(path), f"checkpoints/{kind}", link=True))
    return uploads


def run_hooks(hooks: Sequence[TrackingHooks], status: str, state: ReadOnlyState, run: Any,
              log_models: bool, online: bool) -> None:
    """Every hook's model first (a hook may log it in the background while artifacts are made),
    then every hook's artifacts; none when MLflow is unreachable (said, with their names)."""
    calls: list[tuple[str, Callable[[], None]]] = []
    checkpoint = state.best_checkpoint or state.last_checkpoint
    if log_models and status == "FINISHED" and checkpoint:
        calls += [(f"{_name(h)}.log_model", (lambda h=h: h.log_model(checkpoint, run))) for h in hooks
                  if not (isinstance(h, FunctionHooks) and h.model_logger is None)]
    calls += [(f"{_name(h)}.log_artifacts", (lambda h=h: h.log_artifacts(run, state))) for h in hooks]
    if calls and (not online or run is None):
        logger.warning("MLflow unreachable: hooks %s not run", ", ".join(name for name, _ in calls))
        return
    for name, call in calls:
        started = time.perf_counter()
        try:
            call()
        except Exception:  # noqa: BLE001 - the run's data is safe; report and go on
            logger.exception("MLflow hook %s failed", name)
        logger.debug("MLflow hook %s took %.2fs", name, time.perf_counter() - started)


def _name(hooks: TrackingHooks) -> str:
    """A hook's name in log lines: its function's for :class:`FunctionHooks`, else its class's."""
    functions = [getattr(hooks, "model_logger", None), *getattr(hooks, "artifact_hooks", ())]
    named = [getattr(f, "__name__", repr(f)) for f in functions if f is not None]
    return ", ".join(named) if named else type(hooks).__name__
