"""Data-parallel training on ``torch.distributed``, launched by ``torchrun``: the process group.

Under ``torchrun`` (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` in the environment) the Trainer joins
the process group when none is initialised: gloo on CPU, NCCL on CUDA with one GPU per local rank
(``distributed_backend`` "auto" picks), and leaves it at the end of ``train()``. A group that was
already initialised (by the application, to keep it across several Trainers) is used and left
alone. Without torchrun, or with one process, the context has ``world_size == 1`` and no
collective is ever called.

What is per process and what is global: ``batch_size`` is per process; the global batch is
``batch_size x world_size x gradient_accumulation_steps``. Rank 0 is the one writer (output
folder, history, checkpoints, callbacks); the other ranks follow its decisions through
agreements, each one collective at the same point of the loop on every rank (here, and in
:mod:`~medkit_exp.training.rank_zero`); how the data and the loss are shared is told in
:mod:`~medkit_exp.training.shards`, how gradients are kept equal in
:mod:`~medkit_exp.training.data_parallel`.

>>> context = current()   # no torchrun here
>>> context.world_size, context.rank, context.is_main
(1, 0, True)
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from medkit_exp.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "gloo", "nccl")
#: torchrun's variables; WORLD_SIZE alone decides whether a group is needed.
ENV_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK")
T = TypeVar("T")

# Joins made by this process: each uses its own key prefix in torchrun's store, so a process that
# left a group can join a new one (torch reuses the same keys for every default group otherwise).
_joins = 0


class OtherRankError(RuntimeError):
    """Another rank failed where the ranks agree (a checkpoint write, a setup check): this rank stops too."""


@dataclass
class DistributedContext:
    """Where this process stands in the run: ranks, its device, and the groups it talks through.

    ``control_group`` carries the small CPU-side agreements (a gloo group beside NCCL, so they
    never wait on the GPU); None means the default group.
    """

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None
    owns_group: bool = False
    control_group: Any = None
    #: Called before the group is destroyed: what holds the group (DDP's reducer) must go first, or
    #: its destruction at interpreter exit deadlocks with gloo's threads.
    on_leave: dict[str, Callable[[], None]] = field(default_factory=dict)
    left: bool = False  # the group this context created was destroyed (at the end of train())

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    # ------------------------------------------------------------------ collectives (world_size > 1 only)
    def all_gather(self, value: T) -> list[T]:
        """Every rank's ``value`` (picklable), in rank order; ``[value]`` with one process."""
        if not self.is_distributed:
            return [value]
        self._check_joined()
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value, group=self.control_group)
        return gathered

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every rank."""
        if not self.is_distributed:
            return value
        self._check_joined()
        box = [value]
        dist.broadcast_object_list(box, src=0, group=self.control_group)
        return box[0]

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over ranks of ``tensor`` (on this rank's device); ``tensor`` itself with one process."""
        if not self.is_distributed:
            return tensor
        self._check_joined()
        total = tensor.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=self._group_for(total))
        return total

    def max_ints(self, values: list[int]) -> list[int]:
        """The element-wise maximum over ranks of a few integers (CPU agreement)."""
        if not self.is_distributed:
            return list(values)
        self._check_joined()
        tensor = torch.tensor(values, dtype=torch.int64)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=self.control_group)
        return tensor.tolist()

    def main_decides(self, action: Callable[..., T], *args: Any) -> T:
        """Run ``action(*args)`` on rank 0 only and return its result on every rank.

        An exception on rank 0 is raised there and, as :class:`OtherRankError` naming it, on
        every other rank, so no rank waits for a result that will not come.
        """
        if not self.is_distributed:
            return action(*args)
        result, failure = None, None
        if self.is_main:
            try:
                result = action(*args)
            except Exception as error:
                failure = f"{type(error).__name__}: {error}"
                self.broadcast({"failure": failure})
                raise
            return self.broadcast({"result": result})["result"]
        answer = self.broadcast(None)
        if "failure" in answer:
            raise OtherRankError(f"rank 0 failed: {answer['failure']}")
        return answer["result"]

    def close_on_leave(self, key: str, close: Callable[[], None]) -> None:
        """Call ``close`` before the group is left; a later one under the same ``key`` closes it at once."""
        previous = self.on_leave.pop(key, None)
        if previous is not None:
            previous()
        self.on_leave[key] = close

    def _check_joined(self) -> None:
        if self.left:
            raise RuntimeError("the Trainer left the process group it had joined at the end of train(); to use it "
                               "after training, join the group first (medkit_exp.training.distributed.init_from_env) "
                               "and leave it yourself (leave)")

    def _group_for(self, tensor: torch.Tensor) -> Any:
        # NCCL reduces CUDA tensors; CPU tensors go through the gloo control group.
        return self.control_group if tensor.device.type == "cpu" else None


def current() -> DistributedContext:
    """The context of the process group initialised in this process, or of a single process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return DistributedContext()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = dist.get_backend()
    device = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")
    return DistributedContext(dist.get_world_size(), dist.get_rank(), local_rank, device, backend, False,
                              _control_group(backend))


_control_groups: dict[int, Any] = {}


def _control_group(backend: str) -> Any:
    """The gloo group beside an NCCL default group, created once per default group (a collective call:
    every rank asks at the same point)."""
    if backend != "nccl":
        return None
    key = id(dist.group.WORLD)
    if key not in _control_groups:
        _control_groups.clear()
        _control_groups[key] = dist.new_group(backend="gloo")
    return _control_groups[key]


def quiet_unless_main(context: DistributedContext, target: logging.Logger | None = None) -> None:
    """For applications: on ranks other than 0, log warnings and errors only (rank 0 reports the
    run's progress; another rank's failure still shows, its records prefixed with its rank)."""
    if context.is_main:
        return
    target = target or logging.getLogger()
    target.setLevel(logging.WARNING)
    for handler in target.handlers:
        handler.addFilter(_RankPrefix(context.rank))


class _RankPrefix(logging.Filter):
    def __init__(self, rank: int):
        super().__init__()
        self.rank = rank

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("[rank"):
            record.msg = f"[rank {self.rank}] {record.msg}"
        return True


def resolve_backend(requested: str) -> str:
    """The backend for ``distributed_backend``: "auto" is NCCL where CUDA is, gloo elsewhere.

    >>> resolve_backend("gloo")
    'gloo'
    """
    if requested not in BACKENDS:
        raise ConfigError("distributed_backend", f"must be one of {', '.join(BACKENDS)}; got {requested!r}")
    cuda = torch.cuda.is_available()
    if requested == "nccl" and (not cuda or not dist.is_nccl_available()):
        raise ConfigError("distributed_backend", "nccl needs CUDA GPUs and a torch built with NCCL; this machine "
                          "has none: use gloo (CPU) or auto")
    if requested == "auto":
        return "nccl" if cuda and dist.is_nccl_available() else "gloo"
    return requested


def torchrun_world() -> tuple[int, int, int]:
    """``(world_size, rank, local_rank)`` from torchrun's variables; ``(1, 0, 0)`` without them."""
    values = {}
    for name in ENV_VARIABLES:
        raw = os.environ.get(name, "1" if name == "WORLD_SIZE" else "0")
        try:
            values[name] = int(raw)
        except ValueError:
            raise ConfigError(name, f"environment variable must be an integer, got {raw!r}") from None
    world, rank = values["WORLD_SIZE"], values["RANK"]
    if world < 1 or not 0 <= rank < world:
        raise ConfigError("RANK", f"environment variables RANK={rank} and WORLD_SIZE={world} do not fit")
    return world, rank, values["LOCAL_RANK"]


def init_from_env(backend: str = "auto", timeout_s: float = 1800.0) -> DistributedContext:
    """Join the process group torchrun's environment describes, unless one is initialised.

    The returned context ``owns_group`` when this call created the group: :func:`leave` then
    destroys it. ``timeout_s`` bounds every collective, so a rank that died without closing its
    connections makes the others fail instead of waiting for ever.
    """
    if dist.is_available() and dist.is_initialized():
        context = current()
        if backend != "auto" and context.is_distributed and context.backend != backend:
            raise ConfigError("distributed_backend", f"asks {backend}, but the process group in use is "
                              f"{context.backend} (initialised before the Trainer)")
        return context
    world, rank, local_rank = torchrun_world()
    chosen = resolve_backend(backend)  # checked also in one process: the same config fails the same everywhere
    if world == 1:
        return DistributedContext()
    if not dist.is_available():
        raise ConfigError("distributed_backend", "this torch has no torch.distributed; run one process")
    device = torch.device("cpu")
    if chosen == "nccl":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError("LOCAL_RANK", f"is {local_rank}, but this machine has {torch.cuda.device_count()} "
                              "GPU(s): start at most one process per GPU (--nproc-per-node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    _join(chosen, rank, world, timeout_s)
    timeout = datetime.timedelta(seconds=timeout_s)
    control = dist.new_group(backend="gloo", timeout=timeout) if chosen == "nccl" else None
    logger.info("Joined the %s process group: rank %d of %d (local rank %d, %s)", chosen, rank, world, local_rank,
                device)
    context = DistributedContext(world, rank, local_rank, device, chosen, True, control)
    # Left at exit too when train() never ran or ended (a failed construction): destroyed by the
    # interpreter's teardown instead, a group still held by DDP's reducer can deadlock.
    atexit.register(leave, context)
    return context


def _join(backend: str, rank: int, world: int, timeout_s: float) -> None:
    global _joins
    timeout = datetime.timedelta(seconds=timeout_s)
    store, _, _ = next(dist.rendezvous("env://", rank=rank, world_size=world, timeout=timeout))
    dist.init_process_group(backend, store=dist.PrefixStore(f"medkit_exp/{_joins}", store), rank=rank,
                            world_size=world, timeout=timeout)
    _joins += 1


def leave(context: DistributedContext) -> None:
    """Destroy the process group if ``context`` created it (a group found initialised stays)."""
    while context.on_leave:
        context.on_leave.pop(next(iter(context.on_leave)))()
    if context.owns_group and dist.is_initialized():
        dist.destroy_process_group()
        context.owns_group, context.left = False, True


@contextlib.contextmanager
def left_at_end(context: DistributedContext) -> Iterator[None]:
    """Leave the group this context created once the block ends, failing or not."""
    try:
        yield
    finally:
        leave(context)


# ---------------------------------------------------------------------- agreements at start
def check_same_setup(context: DistributedContext, config: Any, data_sizes: dict[str, int]) -> None:
    """Every rank has the same TrainerConfig (its output folder included) and data sizes.

    One gather of small values at start; a difference is the same ConfigError (or DataError) on
    every rank, naming the first differing key and the ranks.
    """
    if not context.is_distributed:
        return
    settings = config if isinstance(config, dict) else {"output_dir": str(Path(config.output_dir).resolve()),
                                                        **config.to_dict()}
    everyone = context.all_gather({"config": settings, "data": data_sizes})
    first = everyone[0]
    for rank, theirs in enumerate(everyone[1:], start=1):
        for key in sorted(set(first["config"]) | set(theirs["config"])):
            if first["config"].get(key) != theirs["config"].get(key):
                raise ConfigError(key, f"differs between processes: {first['config'].get(key)!r} on rank 0, "
                                  f"{theirs['config'].get(key)!r} on rank {rank}; every process must use the same "
                                  "trainer config")
        for name, size in first["data"].items():
            if theirs["data"][name] != size:
                raise DataError(f"{name} differs between processes: {size} items on rank 0, "
                                f"{theirs['data'][name]} on rank {rank}; every process must read the same data")


def check_same_parameters(context: DistributedContext, parameters: list[torch.Tensor]) -> None:
    """Every rank trains parameters of the same shapes (a digest gathered): else a ConfigError on each."""
    if not context.is_distributed:
        return
    shapes = [f"{tuple(p.shape)}:{p.dtype}" for p in parameters]
    everyone = context.all_gather((_digest(shapes), len(shapes)))
    for rank, (digest, count) in enumerate(everyone[1:], start=1):
        if digest != everyone[0][0]:
            raise ConfigError("component", f"cannot be synchronised: its trainable parameters differ between "
                              f"processes ({everyone[0][1]} on rank 0, {count} on rank {rank}, or their shapes "
                              "differ); every process must build the same model")


def global_batch_size(batch_size: int, world_size: int, accumulation_steps: int) -> int:
    """Items per optimizer step over every process: the one rule, for the Trainer and the run's params."""
    return batch_size * world_size * accumulation_steps


def global_batch(context: DistributedContext, config: Any) -> int:
    """Items per optimizer step over every process (logged once, at start); with a token budget
    (``max_batch_tokens``) the most items a step takes: batches of long items hold fewer."""
    size = global_batch_size(config.batch_size, context.world_size, config.gradient_accumulation_steps)
    budget = getattr(config, "max_batch_tokens", None)
    bound = "at most " if budget else ""
    logger.info("Global batch: %s%d items per optimizer step = batch_size %d per process x %d process(es) x %d "
                "gradient accumulation step(s)%s", bound, size, config.batch_size, context.world_size,
                config.gradient_accumulation_steps,
                f"; each batch also holds at most max_batch_tokens={budget} padded tokens" if budget else "")
    return size


def check_enough_data(context: DistributedContext, nb_items: int) -> None:
    """Every process needs at least one training item of its own."""
    if nb_items < context.world_size:
        raise DataError(f"train_data has {nb_items} item(s), fewer than the {context.world_size} processes "
                        "(WORLD_SIZE): start fewer processes or give more data")


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


# ---------------------------------------------------------------------- agreements during training
def agree_batch(context: DistributedContext, finite: bool, terms: int, weighted_loss: float) -> tuple[bool, int, float]:
    """Whether the loss is finite on every rank, the global batch's loss terms and the sum of the
    ranks' ``loss x terms``: one collective per micro-batch, so no rank skips a batch (or fails) alone.
    """
    if not context.is_distributed:
        return finite, terms, weighted_loss
    values = [0.0 if finite else 1.0, float(terms), weighted_loss if finite else 0.0]
    nonfinite, total_terms, total_loss = context.sum(torch.tensor(values, dtype=torch.float64)).tolist()
    return nonfinite == 0, int(total_terms), total_loss
