"""The project's own exceptions, each carrying the place that caused it."""

from __future__ import annotations

from pathlib import Path


class MedkitExpError(Exception):
    """Base class of every error raised on purpose by medkit_exp."""


class ConfigError(MedkitExpError, ValueError):
    """An invalid configuration value, naming the key and what is allowed.

    >>> str(ConfigError("batch_size", "must be >= 1, got -2"))
    "config key 'batch_size': must be >= 1, got -2"
    >>> str(ConfigError("checkpoint_metric", "available: loss", lead="Checkpoint metric 'f1' not found"))
    "Checkpoint metric 'f1' not found (config key 'checkpoint_metric': available: loss)"
    """

    def __init__(self, key: str, message: str, lead: str | None = None):
        self.key = key
        self.message = message
        self.lead = lead
        # ``lead``: medkit's own wording for the same error, kept first so code matching
        # medkit's messages still matches ours; our key and detail follow it.
        where = f"config key '{key}': {message}"
        super().__init__(where if lead is None else f"{lead} ({where})")


class DataError(MedkitExpError, ValueError):
    """Bad input data, naming the file and, where known, the line."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        self.message = message
        where = ""
        if self.path is not None:
            where = self.path if line is None else f"{self.path}:{line}"
            where += ": "
        super().__init__(f"{where}{message}")


class CheckpointError(MedkitExpError, RuntimeError):
    """A checkpoint that cannot be read or written, naming the file."""

    def __init__(self, message: str, path: str | Path):
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


class NonFiniteLossError(MedkitExpError, FloatingPointError):
    """The training loss became NaN or infinite."""

    def __init__(self, global_step: int, epoch: int, batch_index: int, value: float):
        self.global_step = global_step
        super().__init__(
            f"non-finite training loss ({value}) at optimizer step {global_step} "
            f"(epoch {epoch}, batch {batch_index}); lower the learning rate, enable gradient "
            "clipping, or set on_nonfinite_loss='skip' to skip such batches"
        )


class SweepError(MedkitExpError, RuntimeError):
    """A hyperparameter sweep that cannot go on (too many failed trials, an interrupted trial)."""


class TrackingError(MedkitExpError, RuntimeError):
    """MLflow refused to open a run for good (a bad experiment name or parent run)."""
