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
    plots: bool = True
    system_metrics: bool = False


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
