"""How a data-parallel run splits its data across processes and puts their results back together.

Training: every rank builds the same :class:`~medkit_exp.training.batch.EpochBatchSampler` with
the GLOBAL batch size (``batch_size x world_size``), so the global batches, their order and
their length grouping are exactly those of one process taking ``batch_size x world_size``; each
rank then takes its contiguous share of every global batch (:func:`share`: sizes as equal as
possible, the first ranks taking one more). A rank whose share of a short last batch is empty
runs the batch's first item with a loss weight of 0 (DDP needs every rank in every step): it is
never counted, in the loss, the gradient, the metrics or the sample counts.

Loss: a component's loss is taken as a MEAN over its batch's loss terms: its items, or what
its optional ``nb_loss_terms(input_batch)`` method counts (a token-level loss counts its
labelled tokens). Rank r's loss is weighted by ``n_r x world_size / N`` (``n_r`` its terms,
``N`` the global batch's), so DDP's average of the gradients is the gradient of the mean over
the global batch, as one process computes it, also when the shares are unequal. This is Hugging
Face's ``average_tokens_across_devices=True``; without the method, ranks with the same number of
items count equally whatever their number of tokens.

Evaluation: sequential global batches of ``eval_batch_size x world_size``, each split the same
way (empty shares skipped); the metrics computer's ``prepare_batch`` outputs and the per-batch
losses are gathered to every rank and put back in the single-process order.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import torch

from medkit_exp.errors import ConfigError
from medkit_exp.training.batch import EpochBatchSampler
from medkit_exp.training.distributed import DistributedContext, agree_batch, check_enough_data, check_same_setup
from medkit_exp.training.loading import TrainingData, make_loader
from medkit_exp.training.running_mean import RunningMean

#: The optional component method counting the terms its loss is a mean over.
LOSS_TERMS_METHOD = "nb_loss_terms"


def share_bounds(size: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[start, stop)`` of rank ``rank``'s share of ``size`` items.

    >>> [share_bounds(5, rank, 2) for rank in range(2)]
    [(0, 3), (3, 5)]
    >>> [share_bounds(1, rank, 2) for rank in range(2)]
    [(0, 1), (1, 1)]
    """
    base, extra = divmod(size, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def share(batch: list[int], rank: int, world_size: int) -> list[int]:
    """Rank ``rank``'s contiguous share of a global batch (possibly empty)."""
    start, stop = share_bounds(len(batch), rank, world_size)
    return batch[start:stop]


def share_weight(local_terms: int, global_terms: int, world_size: int) -> float:
    """The factor of a rank's mean loss so that DDP's mean of gradients is the global batch's mean.

    >>> share_weight(3, 5, 2), share_weight(2, 5, 2), share_weight(4, 8, 2)
    (1.2, 0.8, 1.0)
    """
    if global_terms <= 0:
        return 1.0  # no term anywhere: the loss is not finite on every rank and the batch is handled so
    return local_terms * world_size / global_terms


def loss_terms(component: Any, input_batch: Any, nb_items: int) -> int | None:
    """The terms the component's loss averages over: its ``nb_loss_terms`` if it has one (0 for a
    stand-in batch of ``nb_items == 0``), else None: the items, known without looking at the batch."""
    method = getattr(component, LOSS_TERMS_METHOD, None)
    if method is None:
        return None
    return int(method(input_batch)) if nb_items else 0


class ShardedBatchSampler:
    """This rank's share of each global batch of ``sampler`` (an EpochBatchSampler of global batches).

    ``set_epoch``, ``batches`` (global), ``seed`` and ``len`` are the wrapped sampler's, so the
    data position of a run (epoch, batch) is the same on every rank and in a checkpoint.
    """

    def __init__(self, sampler: Any, context: DistributedContext):
        self.sampler = sampler
        self.rank, self.world_size = context.rank, context.world_size

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.sampler:
            yield share(batch, self.rank, self.world_size) or batch[:1]

    def __len__(self) -> int:
        return len(self.sampler)

    def local_sizes(self) -> list[int]:
        """The number of this rank's own items in each batch of the current epoch (0: a stand-in)."""
        return [len(share(batch, self.rank, self.world_size)) for batch in self.sampler.batches()]


def shard_batches(sampler: Any, context: DistributedContext) -> Any:
    """The batch sampler of this rank: ``sampler`` itself with one process."""
    return ShardedBatchSampler(sampler, context) if context.is_distributed else sampler


def shard_training_data(data: TrainingData, component: Any, config: Any, context: DistributedContext) -> TrainingData:
    """This rank's loaders over the same items: global batches of ``batch_size x world_size``
    split in shares, evaluation shares; ``data`` itself with one process.

    The sampler stays the global one (its epoch, batch position and seed are the run's, the
    same on every rank); without a configured seed, rank 0's random one is used everywhere.
    """
    if not context.is_distributed:
        return data
    check_no_token_budget(config)
    check_enough_data(context, len(data.train_items))
    check_same_setup(context, config, {"train_data": len(data.train_items), "eval_data": len(data.eval_items)})
    seed = context.broadcast(data.sampler.seed)
    sampler = EpochBatchSampler(len(data.train_items), config.batch_size * context.world_size, True, seed,
                                data.sampler.lengths)
    workers = config.dataloader_nb_workers
    shares = ShardedBatchSampler(sampler, context)
    train_loader = make_loader(data.train_items, component, workers, batch_sampler=shares)
    eval_loader = None
    if data.eval_items:
        shards = EvalShardSampler(len(data.eval_items), config.eval_batch_size or config.batch_size, context)
        eval_loader = make_loader(data.eval_items, component, workers, batch_sampler=shards)
    return TrainingData(data.train_items, data.eval_items, sampler, train_loader, eval_loader)


def check_no_token_budget(config: Any) -> None:
    """``max_batch_tokens`` is refused with several processes: a budget of each rank's share of
    the global batch is not implemented (the shares would be cut from one global budget)."""
    if getattr(config, "max_batch_tokens", None) is not None:
        raise ConfigError("max_batch_tokens", "is not supported with data-parallel training (torchrun); unset it")


class LossShares:
    """How this rank's loss counts in its global batch's, one training micro-batch at a time.

    With one process it only checks that the loss is finite (no collective).
    """

    def __init__(self, context: DistributedContext, component: Any):
        self.context, self.component = context, component
        self.sizes: list[tuple[int, int]] = []  # (this rank's items, the global batch's) per batch

    def set_epoch_batches(self, batches: list[list[int]]) -> list[int]:
        """The global batches of the epoch; returns their sizes."""
        world, rank = self.context.world_size, self.context.rank
        sizes = [len(batch) for batch in batches]
        if self.context.is_distributed:
            self.sizes = [(stop - start, size) for size in sizes for start, stop in [share_bounds(size, rank, world)]]
        return sizes

    def weigh(self, loss: torch.Tensor, input_batch: Any, index: int) -> tuple[torch.Tensor | None, float]:
        """The global batch's loss (None when it is not finite on some rank: every rank skips or fails
        alike) and the factor of this rank's loss in its backward (one collective per micro-batch)."""
        if not self.context.is_distributed:
            return (loss if math.isfinite(loss.item()) else None), 1.0  # no new tensor per step
        local_items, global_items = self.sizes[index]
        terms = loss_terms(self.component, input_batch, local_items)
        local_terms = local_items if terms is None else terms
        value = float(loss) if local_terms else 0.0  # a stand-in batch counts for nothing
        finite, total_terms, total_loss = agree_batch(self.context, math.isfinite(value), local_terms,
                                                      value * local_terms)
        if not finite:
            return None, 0.0
        total_terms = global_items if terms is None else total_terms
        global_loss = total_loss / total_terms if total_terms else float("nan")
        weight = share_weight(local_terms, total_terms, self.context.world_size)
        return torch.tensor(global_loss, device=loss.device), weight

    def gather_inputs(self, prepared: dict[str, list[Any]], index: int) -> dict[str, list[Any]]:
        """The metrics computer's inputs of the whole global batch, in the single-process order
        (``do_metrics_in_training``; one gather per micro-batch)."""
        if not self.context.is_distributed:
            return prepared
        own = prepared if self.sizes[index][0] else {}
        return merge_in_rank_order(self.context.all_gather(own))


def merge_in_rank_order(parts: list[dict[str, list[Any]]]) -> dict[str, list[Any]]:
    merged: dict[str, list[Any]] = defaultdict(list)
    for part in parts:
        for key, values in part.items():
            merged[key].extend(values)
    return dict(merged)


class EvalShardSampler:
    """This rank's non-empty shares of the sequential global evaluation batches."""

    def __init__(self, nb_items: int, batch_size: int, context: DistributedContext):
        global_size = batch_size * context.world_size
        self.nb_global_batches = math.ceil(nb_items / global_size)
        self.batches: list[list[int]] = []
        self.global_index: list[int] = []
        for index, start in enumerate(range(0, nb_items, global_size)):
            part = share(list(range(start, min(start + global_size, nb_items))), context.rank, context.world_size)
            if part:
                self.batches.append(part)
                self.global_index.append(index)

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches

    def __len__(self) -> int:
        return len(self.batches)


class EvalResults:
    """The loss and the metrics computer's inputs of one evaluation, whole on every rank.

    With one process (or a loader that is not sharded) it sums as a plain loop does; over an
    :class:`EvalShardSampler` it gathers every rank's part once, at the end.
    """

    def __init__(self, trainer: Any, dataloader: Any):
        context, component = trainer.distributed, trainer.component
        sampler = getattr(dataloader, "batch_sampler", None)
        self.shard = sampler if context.is_distributed and isinstance(sampler, EvalShardSampler) else None
        self.context, self.component, self.computer = context, component, trainer.metrics_computer
        self.loss = RunningMean(component.device)
        self.parts: list[tuple[int, float, int, dict[str, list[Any]]]] = []
        self.inputs: dict[str, list[Any]] = defaultdict(list)

    def add(self, index: int, input_batch: Any, output: Any, loss: torch.Tensor) -> None:
        """The loss and the computer's ``prepare_batch`` of batch ``index`` of the loader."""
        prepared = {} if self.computer is None else self.computer.prepare_batch(output, input_batch)
        if self.shard is None:
            self.loss.add(loss.detach())
            for key, values in prepared.items():
                self.inputs[key].extend(values)
            return
        items = len(self.shard.batches[index])
        terms = loss_terms(self.component, input_batch, items)
        terms = items if terms is None else terms
        self.parts.append((self.shard.global_index[index], float(loss.detach().float()) * terms, terms, prepared))

    def metrics(self) -> dict[str, float]:
        """The mean loss and the computer's metrics (one gather under torchrun)."""
        loss, inputs = self.result()
        return {"loss": loss, **({} if self.computer is None else self.computer.compute(inputs))}

    def result(self) -> tuple[float, dict[str, list[Any]]]:
        """The mean loss over (global) batches and the metric inputs in the single-process order."""
        if self.shard is None:
            return (self.loss.mean() if self.loss.count else 0.0), dict(self.inputs)
        by_batch: dict[int, list[tuple[float, int, dict[str, list[Any]]]]] = defaultdict(list)
        for rank_parts in self.context.all_gather(self.parts):  # rank order: shares in batch order
            for index, weighted_loss, terms, prepared in rank_parts:
                by_batch[index].append((weighted_loss, terms, prepared))
        losses = []
        for index in sorted(by_batch):
            total_terms = sum(terms for _, terms, _ in by_batch[index])
            losses.append(sum(w for w, _, _ in by_batch[index]) / total_terms if total_terms else float("nan"))
        inputs = merge_in_rank_order([prepared for index in sorted(by_batch) for _, _, prepared in by_batch[index]])
        return sum(losses) / max(len(losses), 1), inputs
