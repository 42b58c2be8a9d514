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

from medkit_exp.training.distributed import DistributedContext

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
    """The terms the component's loss averages over: its ``nb_loss_terms`` if it has one, else None
    (the items of the batch, known without looking at it)."""
    method = getattr(component, LOSS_TERMS_METHOD, None)
    return None if method is None or nb_items == 0 else int(method(input_batch))


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
    """The loss and the metrics computer's data of one evaluation, whole on every rank.

    With one process (or a data loader that is not sharded) it sums as a plain loop would; over
    an :class:`EvalShardSampler` it gathers every rank's part once, at the end.
    """

    def __init__(self, context: DistributedContext, dataloader: Any):
        sampler = getattr(dataloader, "batch_sampler", None)
        self.shard = sampler if context.is_distributed and isinstance(sampler, EvalShardSampler) else None
        self.context = context
        self.nb_batches = len(dataloader)
        self.total_loss = torch.zeros(())
        self.parts: list[tuple[int, float, int, dict[str, list[Any]]]] = []
        self.data: dict[str, list[Any]] = defaultdict(list)

    def add(self, step: int, loss: torch.Tensor, terms: int | None, prepared: dict[str, list[Any]]) -> None:
        if self.shard is None:
            self.total_loss += loss.detach().float().cpu()
            for key, values in prepared.items():
                self.data[key].extend(values)
            return
        terms = len(self.shard.batches[step]) if terms is None else terms
        self.parts.append((self.shard.global_index[step], float(loss.detach().float()) * terms, terms, prepared))

    def result(self) -> tuple[float, dict[str, list[Any]]]:
        """The mean loss over (global) batches and the metric data in the single-process order."""
        if self.shard is None:
            return (self.total_loss / max(self.nb_batches, 1)).item(), dict(self.data)
        by_batch: dict[int, list[tuple[float, int, dict[str, list[Any]]]]] = defaultdict(list)
        for rank_parts in self.context.all_gather(self.parts):  # rank order: shares in batch order
            for index, weighted_loss, terms, prepared in rank_parts:
                by_batch[index].append((weighted_loss, terms, prepared))
        losses, data = [], defaultdict(list)
        for index in sorted(by_batch):
            parts = by_batch[index]
            total_terms = sum(terms for _, terms, _ in parts)
            losses.append(sum(w for w, _, _ in parts) / total_terms if total_terms else float("nan"))
            for _, _, prepared in parts:
                for key, values in prepared.items():
                    data[key].extend(values)
        return sum(losses) / max(self.shard.nb_global_batches, 1), dict(data)


def gather_metric_data(context: DistributedContext, data: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Training metric data of every rank, concatenated in rank order (``do_metrics_in_training``)."""
    if not context.is_distributed:
        return data
    merged: dict[str, list[Any]] = defaultdict(list)
    for part in context.all_gather(dict(data)):
        for key, values in part.items():
            merged[key].extend(values)
    return dict(merged)
