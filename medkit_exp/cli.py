"""The Hydra application: ``python -m medkit_exp +experiment=ner [overrides]``.

Composes ``conf/``, builds data, component, metrics, scheduler and callbacks, trains, prints a
closing summary and returns the objective (the best value of ``optimized_metric``) so that
sweepers can use it. Heavy libraries are imported inside the task, so ``--help`` stays fast.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from medkit_exp.conf_location import config_dir  # noqa: F401 - also medkit_exp.cli.config_dir
from medkit_exp.errors import ConfigError, MedkitExpError
from medkit_exp.run_context import RunContext
from medkit_exp.tracking.options import tracking_on
from medkit_exp.sweeps.trial_context import current_trial

logger = logging.getLogger("medkit_exp")
#: The callbacks entry that is the ``tracking`` group (``${tracking}`` in conf/callbacks/default.yaml).
TRACKING_ENTRY = "callbacks.tracking"
#: What the tagger's tracking hooks run in the MLflow worker (its model logging, the dev report):
#: imported there while the training process starts.
TAGGER_TASKS = ("medkit_exp.ner.mlflow.tasks",)


def _register_schema() -> None:
    from medkit_exp.schema import MedkitExpConfig

    ConfigStore.instance().store(name="medkit_exp_schema", node=MedkitExpConfig)


_register_schema()


def _register_sweeper() -> None:
    """Make ``hydra/sweeper=medkit_optuna`` available. Hydra finds plugins by scanning the
    ``hydra_plugins`` namespace, which an editable install hides from that scan."""
    from hydra.core.plugins import Plugins
    from hydra_plugins.medkit_exp_sweeper.medkit_optuna_sweeper import MedkitOptunaSweeper

    Plugins.instance().register(MedkitOptunaSweeper)


_register_sweeper()


def task(cfg: DictConfig) -> float | None:
    """Train as configured; return the best value of ``optimized_metric``."""
    from medkit_exp.app_setup import quiet_third_party
    from medkit_exp.launch import quiet_other_ranks

    redact_run_records()
    quiet_third_party()  # before transformers and MLflow load: no progress bars, no load report
    quiet_other_ranks()  # under torchrun: rank 0 reports; the others' warnings and errors name their rank
    return report_errors(lambda: train(cfg))


def redact_run_records() -> None:
    """No secret in what the run writes: log records (``cli.log`` too) are redacted as they are
    made, and the YAML files Hydra has just written into the run folder are rewritten redacted."""
    from hydra.core.hydra_config import HydraConfig

    from medkit_exp.redaction import install_log_redaction
    from medkit_exp.tracking.params import redact_yaml_files

    from medkit_exp.launch import is_writer

    install_log_redaction()
    if HydraConfig.initialized() and is_writer():  # under torchrun, rank 0 wrote Hydra's files
        redact_yaml_files(HydraConfig.get().runtime.output_dir)


hydra_main = hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")(task)


def main() -> float | None:
    """``python -m medkit_exp``: the command line's config keys are checked (one line, exit code 2,
    for an unknown one) before Hydra composes, whose own message for them is a multi-line one."""
    from medkit_exp.config_compose import check_command_line_or_exit
    from medkit_exp.schema import MedkitExpConfig

    check_command_line_or_exit(MedkitExpConfig)
    from medkit_exp import launch

    # under torchrun: every process takes rank 0's run folder (before Hydra makes one per clock)
    sys.argv += report_errors(lambda: launch.join_before_hydra(sys.argv[1:]))
    try:
        return hydra_main()
    finally:
        launch.leave()  # the group joined above (the Trainer leaves only one it joined itself)


main.__wrapped__ = task  # type: ignore[attr-defined]  # the task function, as for a @hydra.main function


def report_errors(task: Any) -> Any:
    """Run ``task``; our own errors end the process with one clear line (no traceback), exit code
    2; under torchrun on every process, the line naming its rank (1 when rank 0 failed first)."""
    from medkit_exp.launch import rank_name

    try:
        return task()
    except MedkitExpError as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or current_trial() is not None:
            raise  # a sweep trial: the sweeper records the failure and goes on
        line = rank_name() + one_line(str(error))
        logger.error("%s", line)
        print(f"Error: {line}\n(set HYDRA_FULL_ERROR=1 for the full traceback)", file=sys.stderr)
        sys.exit(2)
    except Exception as error:
        if type(error).__name__ != "OtherRankError" or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if current_trial() is not None:
            raise  # a sweep trial under torchrun: the job fails on this rank too, the sweep goes on
        line = rank_name() + one_line(str(error))  # rank 0 reported its own error, with its traceback
        logger.error("%s", line)
        print(f"Error: {line}", file=sys.stderr)
        sys.exit(1)


def one_line(message: str, limit: int = 1000) -> str:
    """An error as one line (a third-party reason may hold several), at most ``limit`` characters."""
    line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def train(cfg: DictConfig) -> float | None:
    from medkit_exp import launch
    from medkit_exp.app_setup import apply_num_threads
    from medkit_exp.config_check import check_config
    from medkit_exp.ner.data import NERDataConfig, load_corpus
    from medkit_exp.schema import MedkitExpConfig
    from medkit_exp.tracking.params import redacted_yaml
    from medkit_exp.training import Trainer, seed_everything
    from medkit_exp.training.checkpoint import check_resume_choice

    check_config(cfg, MedkitExpConfig)  # unknown keys and misused options: before any work
    launch.check_same_config(OmegaConf.to_container(cfg, resolve=True))  # under torchrun: rank 0's config
    trainer_config = build_trainer_config(cfg)  # its values checked before the corpus and model load
    if launch.world_size() > 1 and trainer_config.max_batch_tokens is not None:  # the Trainer refuses it too, later
        raise ConfigError("trainer.max_batch_tokens", "is not supported with data-parallel training (torchrun); unset it")
    scheduler_builder = build_scheduler(cfg.scheduler)
    # resume_from with nothing to resume, or a new run over a run's checkpoints: refused before
    # anything is written into the folder or loaded
    check_resume_choice(Path(trainer_config.output_dir), cfg.resume_from)
    name_trial_run(cfg)
    writer = launch.is_writer()  # rank 0 under torchrun: prints, writes and tracks; the others train
    if writer:
        print_config(cfg)
    if writer and tracking_on(cfg) and cfg.tracking.worker:  # imports MLflow while we import torch
        from medkit_exp.tracking.worker import prestart

        # the model hooks may draw plots too (the tagger's dev report)
        prestart(cfg.tracking.tracking_uri, plots=cfg.tracking.plots or bool(cfg.tracking.model_hooks),
                 log_model=cfg.tracking.log_model, modules=TAGGER_TASKS if cfg.tracking.model_hooks else ())
    # before any heavy work; the number used is the one recorded (config_resolved.yaml, params)
    cfg.trainer.num_threads = trainer_config.num_threads = apply_num_threads(trainer_config.num_threads)
    output_dir = Path(cfg.paths.output_dir)
    if writer:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config_resolved.yaml").write_text(redacted_yaml(cfg))
    if cfg.seed is not None:
        seed_everything(cfg.seed)  # before anything seeded (the tagger's new head) is built
    splits = load_corpus(OmegaConf.to_object(cfg.data) if isinstance(cfg.data, DictConfig) else NERDataConfig())
    component = build_component(cfg.component, cfg.optimizer)
    metrics_computer = build_metrics(cfg.metrics, component)
    # rank 0's only (one MLflow run): the Trainer runs callbacks there and agrees on their requests
    run = run_context(cfg, splits, component, metrics_computer) if writer else None
    callbacks = build_callbacks(cfg, run) if run is not None else []
    trainer = Trainer(
        component, trainer_config, splits["train"], splits.get("dev"), metrics_computer=metrics_computer,
        lr_scheduler_builder=scheduler_builder, callback=callbacks,
    )
    tagging_report = getattr(component, "report", None)  # a tagger's: entities its tags could not hold, counted
    if writer and callable(getattr(tagging_report, "log", None)):
        tagging_report.log()  # the training and dev data, as the Trainer preprocessed them
    logged = parallel_params(cfg)
    if trainer.global_batch_size != logged.get("global_batch_size", logged.get("max_global_batch_size")):  # the one used
        raise RuntimeError(f"the Trainer's global batch {trainer.global_batch_size} is not the logged one")
    if trainer.precision != precision_params(cfg, component)["precision_used"]:  # the logged value is the one used
        raise RuntimeError(f"the Trainer's precision {trainer.precision} is not the logged one")
    history = trainer.train(resume_from_checkpoint=cfg.resume_from)
    objective = best_value(history, cfg.optimized_metric, trainer_config.minimize_checkpoint_metric)
    if writer:
        print_summary(cfg, trainer, objective, run)
    return objective


def build_component(component_cfg: DictConfig, optimizer_cfg: DictConfig | None = None) -> Any:
    """Instantiate the component; unknown keys name the valid parameters of its class. With the
    ``optimizer`` group, the component builds that optimizer for the Trainer (``use_optimizer``)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from medkit_exp.config_check import check_component_keys

    check_component_keys(component_cfg)  # also done by check_config: for callers that build directly
    settings = OmegaConf.to_container(component_cfg, resolve=True)
    if "model_name_or_path" in settings:
        settings["model_name_or_path"] = resolve_model(settings["model_name_or_path"])
    try:
        component = instantiate(settings, _convert_="all")
    except InstantiationException as error:
        cause = error.__cause__  # Hydra wraps the constructor's errors in its own, over several lines
        if isinstance(cause, ConfigError) and not cause.key.startswith("component."):
            raise ConfigError(f"component.{cause.key}", cause.message, lead=cause.lead) from None
        if isinstance(cause, MedkitExpError):
            raise cause from None
        reason = f"{type(cause).__name__}: {cause}" if cause is not None else str(error)
        raise ConfigError("component", f"cannot build {settings.get('_target_')}: {reason}") from cause
    if optimizer_cfg is not None:
        from medkit_exp.training.optim import use_optimizer

        # The logged optimizer.* values are the ones the Trainer's optimizer is built with.
        use_optimizer(component, optimizer_cfg.name, momentum=optimizer_cfg.get("momentum", 0.0))
    return component


def build_metrics(metrics_cfg: DictConfig, component: Any) -> Any:
    """The metrics computer ``metrics.name`` names: "entity" (the component's own) or "seqeval"."""
    from medkit_exp.ner.seqeval_metrics import make_metrics_computer

    return make_metrics_computer(metrics_cfg.name, component)


def resolve_model(name: str | None) -> str:
    """None: the packaged MiniLM; "tiny-random": a tiny random encoder; else a hub id or a folder."""
    from medkit_exp.ner.tiny import TINY_MODEL_NAME, tiny_encoder

    if name is None:
        from medkit_exp.ner.tagger import default_encoder

        return default_encoder()
    if name == TINY_MODEL_NAME:
        return tiny_encoder()
    # "org/model" is a hub id; a name starting like a path must be an existing folder.
    if name.startswith((".", "/", "~")) and not Path(name).expanduser().is_dir():
        raise ConfigError("component.model_name_or_path", f"model folder not found: {name}")
    return name


def build_trainer_config(cfg: DictConfig) -> Any:
    from medkit_exp.training import TrainerConfig

    # learning_rate, weight_decay and max_grad_norm are the optimizer group's (interpolated in
    # conf/trainer/*.yaml; check_config refuses other values): what is printed and logged is used.
    settings = OmegaConf.to_container(cfg.trainer, resolve=True)
    try:
        return TrainerConfig(**settings)
    except ConfigError as error:
        raise ConfigError(f"trainer.{error.key}", error.message, lead=error.lead) from error


def build_scheduler(scheduler_cfg: DictConfig) -> Any:
    from medkit_exp.config_keys import SCHEDULER_KEYS
    from medkit_exp.training import make_scheduler_builder

    name = scheduler_cfg.name
    keys = SCHEDULER_KEYS.get(name, ())
    return make_scheduler_builder(name, **{key: scheduler_cfg[key] for key in keys})


def build_callbacks(cfg: DictConfig, run: RunContext) -> list[Any]:
    """The callbacks the config's ``callbacks`` entries name, in their order (printer, early
    stopping, tracking, pruning), built by :func:`~medkit_exp.callback_entries.instantiate_callbacks`
    for ``run`` (:func:`run_context`)."""
    from medkit_exp.callback_entries import entry_keys, instantiate_callbacks

    return instantiate_callbacks(OmegaConf.to_container(cfg.callbacks, resolve=True), run, entry_keys(cfg.callbacks))


def run_context(cfg: DictConfig, splits: dict[str, list], component: Any, metrics_computer: Any) -> RunContext:
    """What the factory entries get as ``run``: the config, the params to record, the data..."""
    from hydra.core.hydra_config import HydraConfig

    from medkit_exp.ner.data import corpus_root

    overrides = tuple(HydraConfig.get().overrides.task) if HydraConfig.initialized() else ()
    config = OmegaConf.to_container(cfg, resolve=True)
    params = run_params(config)
    params["component"] = resolved_component_params(params.get("component") or {}, component)
    params["trainer"] = {**params.get("trainer", {}), **parallel_params(cfg), **precision_params(cfg, component)}
    trial = current_trial()
    return RunContext(
        config=config, params=params, config_yaml=OmegaConf.to_yaml(cfg, resolve=True),
        overrides=overrides, splits=splits, data_name=cfg.data.name,
        data_source=str(corpus_root(OmegaConf.to_object(cfg.data))), component=component,
        metrics_computer=metrics_computer, parent_run_id=trial.parent_run_id if trial else None,
        extra_tags=trial.child_tags() if trial else {},
    )


def parallel_params(cfg: DictConfig) -> dict[str, int]:
    """``trainer.world_size`` and ``trainer.global_batch_size`` (``max_global_batch_size`` with a
    token budget; printed by the Trainer at start)."""
    from medkit_exp.launch import parallel_params as params

    return params(cfg.trainer)


def precision_params(cfg: DictConfig, component: Any) -> dict[str, str]:
    """``trainer.precision_used``: the precision the Trainer computes in on the component's device
    ("bf16", "32", "fp16"). ``trainer.precision`` stays as set ("auto" too): the config as written,
    what reruns it; ``precision_used`` is what this run did, the column that tells runs apart when
    comparing their speed or scores in MLflow."""
    from medkit_exp.training.precision import resolve_precision

    return {"precision_used": resolve_precision(str(cfg.trainer.precision), component.device)}


def name_trial_run(cfg: DictConfig) -> None:
    """A sweep trial's tracked run is named ``trial-<number>`` unless ``tracking.run_name`` names it:
    set in the config itself, so that the record, the printed config and the run agree."""
    trial = current_trial()
    if trial is not None and tracking_on(cfg) and not cfg.tracking.run_name:
        cfg.tracking.run_name = f"trial-{trial.number}"


def run_params(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved config as MLflow params: the values the run uses. Left out: the run's own
    folders (different for every run; the ``output_dir`` tag holds it), the scheduler and
    optimizer keys their choice does not use (check_config made sure they kept their defaults)
    and the run's wiring and tracking settings (tracking.params.experiment_params)."""
    from medkit_exp.config_check import unused_keys
    from medkit_exp.tracking.params import RUN_SPECIFIC_KEYS, experiment_params, without_keys

    return experiment_params(without_keys(config, (*RUN_SPECIFIC_KEYS, *unused_keys(config), TRACKING_ENTRY)))


def resolved_component_params(settings: dict[str, Any], component: Any) -> dict[str, Any]:
    """The component's keys as MLflow params, each a value the run used: a null that the
    component resolved is logged as what it took (the tagging scheme read from the model's
    tags, the stride of its windows, the packaged encoder's folder)."""
    from medkit_exp.redaction import is_secret_key

    resolved = dict(settings)
    for key, value in settings.items():
        if value is not None or key.startswith("_") or is_secret_key(key):
            continue  # a secret stays out of the record even when the component found one
        if key == "model_name_or_path":
            resolved[key] = resolve_model(None)
        elif isinstance(getattr(component, key, None), (str, int, float, bool)):
            resolved[key] = getattr(component, key)
    return resolved


def best_value(history: list[dict[str, dict[str, float]]], metric: str, minimize: bool) -> float | None:
    values = [entry["eval"][metric] for entry in history if metric in entry.get("eval", {})]
    values = [float(v) for v in values if not math.isnan(float(v))]
    if not values:
        return None
    return min(values) if minimize else max(values)


def print_config(cfg: DictConfig) -> None:
    """The resolved config as an indented tree (secrets redacted); not for a sweep trial: the
    sweeper printed the sweep's config once and names each trial's overrides."""
    from medkit_exp.config_tree import config_tree

    if current_trial() is None:
        print(config_tree(cfg), flush=True)


def print_summary(cfg: DictConfig, trainer: Any, objective: float | None, run: RunContext) -> None:
    """The closing lines of a run; a sweep trial's is the sweeper's line for it."""
    if current_trial() is not None:
        return
    shown = "n/a" if objective is None else f"{objective:.4f}"
    lines = [
        "",
        "Run summary",
        f"  best eval {cfg.optimized_metric}: {shown}",
        f"  best checkpoint: {trainer.best_checkpoint}",
        f"  run folder: {cfg.paths.output_dir}",
    ]
    if trainer.state.stop_reason:
        lines.append(f"  stopped early: {trainer.state.stop_reason}")
    run_id = run.tracking_run_id()  # set by the tracking factory; None without tracking
    if run_id:  # the store, and a link that opens the run in the UI's model-training view
        from medkit_exp.tracking.ui_links import summary_lines

        lines.extend(summary_lines(run.tracking_uri() or "", run_id, run.tracking_experiment_id()))
    print("\n".join(lines), flush=True)
