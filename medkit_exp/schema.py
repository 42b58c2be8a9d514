"""Structured schemas of the config groups (plain dataclasses; registered with Hydra by the CLI).

A misspelt key or a wrong type in any group fails before any work starts, naming the key:
Hydra checks the types while composing, :mod:`medkit_exp.config_check` the keys (also those added
with ``+``). The component group is open (any ``_target_`` class); its keys are checked against
the class's signature, importing the class only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medkit_exp.ner.data import NERDataConfig
from medkit_exp.training.config import TrainerConfig


@dataclass
class PathsConfig:
    """Group ``paths``: where a run writes and where the real corpora are.

    Parameters
    ----------
    output_dir: the run folder (Hydra's): resolved config, logs, checkpoints, history.
    data_dir: root folder of the real corpora (NCBI disease, QUAERO); ``MEDKIT_EXP_DATA_DIR`` sets it.
    """

    output_dir: str = "outputs"
    data_dir: str | None = None


@dataclass
class OptimizerConfig:
    """Group ``optimizer``: the optimizer, over the component's model (no decay on biases and
    LayerNorm weights). A key the optimizer does not use must keep its default and is not logged.

    Parameters
    ----------
    name: "adamw" (fused where available; decoupled weight decay) or "sgd" (``torch.optim.SGD``, L2 weight decay).
    lr: initial learning rate (``trainer.learning_rate`` is this value); > 0.
    weight_decay: weight decay, >= 0 (``trainer.weight_decay`` is this value).
    max_grad_norm: clip the gradient norm to this value (> 0); null: no clipping (``trainer.max_grad_norm`` is this value).
    momentum: sgd: the momentum factor, in [0, 1).
    """

    name: str = "adamw"
    lr: float = 1e-4
    weight_decay: float = 0.01
    max_grad_norm: float | None = 1.0
    momentum: float = 0.0


@dataclass
class SchedulerConfig:
    """Group ``scheduler``: the learning-rate schedule (``make_scheduler_builder``). A key the
    schedule does not use must keep its default (it would be ignored) and is not logged.

    Parameters
    ----------
    name: "none", "linear", "cosine", "constant" (warmup then decay, stepped per optimizer step)
        or "plateau" (ReduceLROnPlateau on ``trainer.metric_to_track_lr`` at each evaluation).
    warmup_ratio: warmup length as a fraction of the planned optimizer steps.
    warmup_steps: warmup length in optimizer steps (used when > 0).
    min_lr_ratio: the learning rate decays to this fraction of ``optimizer.lr``.
    mode: plateau: "max" or "min" (is a higher tracked metric better?).
    factor: plateau: multiply the learning rate by this when the metric stalls.
    patience: plateau: evaluations without improvement before lowering the learning rate.
    """

    name: str = "linear"
    warmup_ratio: float = 0.0
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    mode: str = "max"
    factor: float = 0.5
    patience: int = 1


@dataclass
class MetricsConfig:
    """Group ``metrics``: the evaluation metrics (computed by the component's metrics computer).

    Parameters
    ----------
    name: "entity": strict entity-level precision/recall/F1, micro, macro and per label (equal to
        seqeval's strict mode); "seqeval": the same names computed by seqeval itself
        (``pip install 'medkit_exp[seqeval]'``).
    """

    name: str = "entity"


@dataclass
class TrackingConfig:
    """Group ``tracking``: the MLflow record of a run (``tracking=none`` sets it to null: off).
    A callbacks entry (``callbacks.tracking`` is ``${tracking}``): a factory given the run.

    Parameters
    ----------
    _target_: the factory of the run's tracking callbacks.
    _partial_: true: the factory is completed with the run (``run=``) when the callbacks are built.
    tracking_uri: null: ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the working directory.
    experiment_name: the MLflow experiment (created if missing).
    run_name: the MLflow run name; null: MLflow picks one.
    log_every_n_steps: log training values (loss, learning rate...) every N optimizer steps; the
        latest values skipped are logged at each evaluation and at the end.
    log_checkpoints: upload the best checkpoint as artifacts.
    log_model: log the best checkpoint as a model, through the model hooks.
    plots: draw and upload the learning curves.
    system_metrics: MLflow's system metrics (CPU, memory, GPU...).
    tags: extra tags of the run.
    worker: do the MLflow work in a tracking worker process, off the training's wall time.
    model_hooks: what the component adds to its run: entries (``_target_``, ``_partial_: true``)
        of factories of tracking hooks, each completed with the run; the tagger's
        (``medkit_exp.ner.mlflow.hooks.ner_tracking_hooks``) takes ``register_model_name``,
        ``model_alias``, ``validate_model``, ``dev_report`` and ``prediction_sample_size``.
    """

    _target_: str = "medkit_exp.tracking.factory.mlflow_callbacks"
    _partial_: bool = True
    tracking_uri: str | None = None
    experiment_name: str = "default"
    run_name: str | None = None
    log_every_n_steps: int = 5
    log_checkpoints: bool = True
    log_model: bool = True
    plots: bool = True
    system_metrics: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    worker: bool = True
    model_hooks: list[Any] = field(default_factory=list)


@dataclass
class MedkitExpConfig:
    """The primary config of ``python -m medkit_exp`` (``conf/config.yaml``): top-level keys and groups.

    Parameters
    ----------
    experiment_name: names the run folder (``outputs/<experiment_name>/...``) and the MLflow experiment.
    task_name: what the application does: "train" (``evaluate`` and ``predict`` in their own configs).
    seed: seeds python, numpy and torch before the model is built; null: not seeded.
    optimized_metric: the eval metric that ranks checkpoints and that the task returns to sweepers.
    resume_from: continue a run: a checkpoint folder, or "last" for the run in ``paths.output_dir``.
    paths: see the ``paths`` group.
    component: see the ``component`` group.
    data: see the ``data`` group.
    trainer: see the ``trainer`` group.
    optimizer: see the ``optimizer`` group.
    scheduler: see the ``scheduler`` group.
    metrics: see the ``metrics`` group.
    callbacks: see the ``callbacks`` group: named entries, each a ``_target_`` (null: off).
    tracking: see the ``tracking`` group (null: no tracking).
    """

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
    callbacks: dict[str, Any] = field(default_factory=dict)
    tracking: TrackingConfig | None = field(default_factory=TrackingConfig)


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
    batch_size: windows per forward pass (at most).
    device: -1 for CPU, N for cuda:N.
    precision: "fp32", "bf16" (bfloat16 autocast: fast where the CPU has AVX-512 BF16 or AMX, or
        on a recent GPU) or "int8" (CPU only: linear layers dynamically quantized to int8).
    max_batch_tokens: None, or the most tokens a batch holds once padded (windows x longest).
    progress: a progress bar (documents/s, ETA) on a terminal's stderr and a progress line in
        the log every 10 s; False: neither.
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
    precision: str = "fp32"
    max_batch_tokens: int | None = None
    progress: bool = True
