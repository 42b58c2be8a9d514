"""Structured schemas of the config groups (plain dataclasses; registered with Hydra by the CLI).

A misspelt key or a wrong type in any group fails at composition, before any work starts,
naming the key. The component group is open (any ``_target_`` class); its keys are checked
against the class's signature when it is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medkit_exp.ner.data import NERDataConfig
from medkit_exp.training.config import TrainerConfig


@dataclass
class PathsConfig:
    output_dir: str = "outputs"
    data_dir: str | None = None


@dataclass
class OptimizerConfig:
    name: str = "adamw"
    lr: float = 1e-4
    weight_decay: float = 0.01
    max_grad_norm: float | None = 1.0


@dataclass
class SchedulerConfig:
    name: str = "linear"
    warmup_ratio: float = 0.0
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    mode: str = "max"
    factor: float = 0.5
    patience: int = 1


@dataclass
class MetricsConfig:
    name: str = "entity"


@dataclass
class EarlyStoppingConfig:
    enabled: bool = False
    metric: str = "f1"
    patience: int = 3
    min_delta: float = 0.0
    mode: str = "max"


@dataclass
class CallbacksConfig:
    progress_bar: bool | None = None
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)


@dataclass
class TrackingConfig:
    enabled: bool = True
    tracking_uri: str | None = None
    experiment_name: str = "default"
    run_name: str | None = None
    log_every_n_steps: int = 5
    log_checkpoints: bool = True
    log_model: bool = True
    register_model_name: str | None = None
    model_alias: str | None = None
    dev_report: bool = True
    prediction_sample_size: int = 20
    plots: bool = True
    system_metrics: bool = False
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class MedkitExpConfig:
    experiment_name: str = "default"
    task_name: str = "train"
    seed: int | None = 42
    optimized_metric: str = "f1"
    resume_from: str | None = None
    paths: PathsConfig = field(default_factory=PathsConfig)
    component: Any = field(default_factory=dict)
    data: NERDataConfig = field(default_factory=NERDataConfig)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(output_dir="outputs"))
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


@dataclass
class EvaluateConfig(MedkitExpConfig):
    """Schema of ``python -m medkit_exp.evaluate`` (primary config ``conf/evaluate.yaml``).

    Parameters
    ----------
    checkpoint: the tagger to evaluate: a checkpoint folder, a training run folder or its
        ``checkpoints/`` folder (then ``which`` picks the checkpoint).
    which: "best" or "last": the checkpoint of a run folder (best falls back to last when the run
        has no ranked checkpoint).
    split: the data split to evaluate on: "dev", "test" or "train", as the ``data`` group names it.
    batch_size: windows per forward pass; None: ``trainer.eval_batch_size``, else ``trainer.batch_size``.
    device: -1 for CPU, N for cuda:N.
    save_predictions: also write the split's predicted documents as ``predictions_<split>.jsonl``.
    """

    task_name: str = "evaluate"
    checkpoint: str | None = None
    which: str = "best"
    split: str = "dev"
    batch_size: int | None = None
    device: int = -1
    save_predictions: bool = True


@dataclass
class PredictConfig(MedkitExpConfig):
    """Schema of ``python -m medkit_exp.predict`` (primary config ``conf/predict.yaml``).

    Parameters
    ----------
    model: the tagger: a checkpoint folder, a training run folder or its ``checkpoints/``
        folder (then ``which`` picks the checkpoint).
    which: "best" or "last": the checkpoint of a run folder.
    input: the documents: a BRAT folder or ``.txt`` file (a ``.txt`` without ``.ann`` is plain
        text), a CoNLL file or a JSON-lines file.
    input_format: "auto" (from the name: a folder or .txt/.ann is BRAT, .tsv/.conll/.iob/.bio
        CoNLL, .jsonl JSON lines), "brat", "conll" or "jsonl".
    input_errors: "raise" stops at the first bad input line; "skip" leaves it out and logs it.
    output: where predictions go; None: ``predictions.jsonl`` (or ``predictions/`` for BRAT) in
        the run folder.
    output_format: "jsonl" (entities with their scores) or "brat" (one .txt/.ann pair per document).
    batch_size: windows per forward pass.
    device: -1 for CPU, N for cuda:N.
    """

    task_name: str = "predict"
    model: str | None = None
    which: str = "best"
    input: str | None = None
    input_format: str = "auto"
    input_errors: str = "raise"
    output: str | None = None
    output_format: str = "jsonl"
    batch_size: int = 32
    device: int = -1
