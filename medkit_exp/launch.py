"""The application under ``torchrun``: one run folder, one writer, the same config on every process.

``torchrun --nproc-per-node=N -m medkit_exp +experiment=ner ...`` starts N copies of the
application. Hydra would give each its own run folder (``hydra.run.dir`` holds ``${now:...}``,
read from each process's clock), so before Hydra starts every process joins the process group
(:func:`join_before_hydra`: ``trainer.distributed_backend``, ``trainer.distributed_timeout_s``) and
takes rank 0's folders as overrides. The other ranks write nothing of Hydra's (no ``.hydra/``, no
log file) and log warnings and errors only. The Trainer finds the group joined and uses it; the
application leaves it at the end (:func:`leave`).

In the task, :func:`check_same_config` compares every rank's resolved config with rank 0's, so that
processes started with different overrides (or environments) stop with one line naming the key.
A sweep (``-m``, ``hparams_search``) runs the same way: every process takes rank 0's sweep folder,
rank 0 runs the study and every rank each trial (:mod:`medkit_exp.sweeps.ranks`).
Without torchrun (``WORLD_SIZE`` unset or 1) nothing here does anything.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from medkit_exp.errors import ConfigError

logger = logging.getLogger(__name__)

#: What the ranks other than 0 add to their command line: Hydra's files and the log file are rank 0's.
OTHER_RANK_OVERRIDES = ("hydra.output_subdir=null", "hydra.job_logging.root.handlers=[console]",
                        "hydra.job_logging.root.level=WARNING")
#: Config keys a process may set for itself: folders on its own machine (the data the Trainer
#: compares by size; the run folder is rank 0's anyway).
PER_MACHINE_KEYS = ("paths",)

_context: Any = None  # the DistributedContext joined before Hydra started; None in one process


def torchrun_world_size() -> int:
    """``WORLD_SIZE`` as torchrun set it; 1 without torchrun (the engine checks the value itself)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 2  # not a number: join_before_hydra's init_from_env names the variable


def context() -> Any:
    """The group this process joined before Hydra, or None (one process)."""
    return _context


def rank_name() -> str:
    """``"rank R of N: "`` under torchrun, "" in one process: what an error line starts with."""
    if _context is not None:
        return f"rank {_context.rank} of {_context.world_size}: "
    if torchrun_world_size() > 1:  # the group not joined yet (or refused): torchrun's variables say
        return f"rank {os.environ.get('RANK', '?')} of {os.environ.get('WORLD_SIZE')}: "
    return ""


def join_before_hydra(argv: Sequence[str]) -> list[str]:
    """Under torchrun: join the process group and return the overrides that give this process rank
    0's run and sweep folders (and, on the other ranks, :data:`OTHER_RANK_OVERRIDES`); ``[]`` in one
    process. A ConfigError (NCCL asked without CUDA, a bad ``RANK``) is raised the same on every rank."""
    global _context
    if torchrun_world_size() <= 1:
        return []
    from medkit_exp.training.distributed import init_from_env

    cfg = _composed(argv)  # a sweep too: rank 0 runs the study, every rank its trials (medkit_exp.sweeps.ranks)
    try:
        _context = init_from_env(cfg.trainer.distributed_backend, cfg.trainer.distributed_timeout_s)
    except ConfigError as error:
        key = error.key if "." in error.key or error.key.isupper() else f"trainer.{error.key}"
        raise ConfigError(key, error.message, lead=error.lead) from None
    if not _context.is_distributed:
        return []
    folders = _context.broadcast(_folders(cfg) if _context.is_main else None)
    overrides = [f"hydra.run.dir={_quoted(folders[0])}", f"hydra.sweep.dir={_quoted(folders[1])}"]
    return overrides + ([] if _context.is_main else list(OTHER_RANK_OVERRIDES))


def _composed(argv: Sequence[str]) -> Any:
    """The command line's config with Hydra's node, composed as Hydra will (already checked)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from medkit_exp.config_check import command_line_args
    from medkit_exp.conf_location import config_dir

    args = command_line_args(list(argv))
    overrides = list(args.overrides) if args is not None else []
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        hydra = GlobalHydra.instance().hydra
        # as Hydra's own get_mode composes: a sweep's overrides (choice(...), ranges) are left to the sweeper
        return hydra.compose_config("config", overrides, run_mode=RunMode.MULTIRUN, with_log_configuration=False,
                                    from_shell=True, validate_sweep_overrides=False)


def _folders(cfg: Any) -> tuple[str, str]:
    """Rank 0's ``hydra.run.dir`` and ``hydra.sweep.dir``, resolved once (one clock for both)."""
    from hydra.core.hydra_config import HydraConfig

    previous = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(cfg)  # so that ${hydra:...} in a folder resolves
    try:
        return str(cfg.hydra.run.dir), str(cfg.hydra.sweep.dir)
    finally:
        HydraConfig.instance().cfg = previous


def _quoted(value: str) -> str:
    """A folder as a quoted override value: any character is taken as it is."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quiet_other_ranks() -> None:
    """On ranks other than 0, once Hydra has set logging up: warnings and errors only, each record
    naming its rank (the engine's :func:`~medkit_exp.training.distributed.quiet_unless_main`)."""
    if _context is not None and not _context.is_main:
        from medkit_exp.training.distributed import quiet_unless_main

        quiet_unless_main(_context)


def is_writer() -> bool:
    """This process writes the run's files, prints and tracks: rank 0, or the only process."""
    return _context is None or _context.is_main


def world_size() -> int:
    return 1 if _context is None else _context.world_size


def check_same_config(config: dict[str, Any]) -> None:
    """Every rank's resolved config is rank 0's (but :data:`PER_MACHINE_KEYS`): else the same
    ConfigError on every rank, naming the first differing key, its values and the rank."""
    if _context is None or not _context.is_distributed:
        return
    mine = {key: value for key, value in _flat(config).items() if key.split(".")[0] not in PER_MACHINE_KEYS}
    everyone = _context.all_gather(mine)
    for rank, theirs in enumerate(everyone[1:], start=1):
        for key in sorted(set(everyone[0]) | set(theirs)):
            if everyone[0].get(key) != theirs.get(key):
                raise ConfigError(key, f"differs between processes: {everyone[0].get(key)!r} on rank 0, "
                                  f"{theirs.get(key)!r} on rank {rank}; start every process with the same "
                                  "command line and environment")


def _flat(config: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"a.b": value}`` (an empty mapping kept as a value)."""
    if not isinstance(config, dict) or not config:
        return {prefix: config}
    flat: dict[str, Any] = {}
    for key, value in config.items():
        flat.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def parallel_params(trainer_config: Any) -> dict[str, int]:
    """What the run's params add under ``trainer``: the number of processes and the global batch
    (``batch_size x world_size x gradient_accumulation_steps``, the Trainer's own rule), named
    ``max_global_batch_size`` when a token budget (``max_batch_tokens``) makes it a bound only."""
    from medkit_exp.training.distributed import global_batch_size

    size = world_size()
    name = "max_global_batch_size" if getattr(trainer_config, "max_batch_tokens", None) else "global_batch_size"
    return {"world_size": size, name: global_batch_size(
        trainer_config.batch_size, size, trainer_config.gradient_accumulation_steps)}


def leave() -> None:
    """Leave the group :func:`join_before_hydra` joined (after the task, failing or not)."""
    global _context
    if _context is not None:
        from medkit_exp.training.distributed import leave as leave_group

        leave_group(_context)
        _context = None
