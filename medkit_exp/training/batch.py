"""BatchData (medkit-compatible) and the deterministic, resumable batch sampler."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch


class BatchData(dict):
    """A dict of columns that also gives rows and slices.

    >>> batch = BatchData(x=[1, 2, 3], y=["a", "b", "c"])
    >>> batch["x"], batch[1], batch[0:2]["y"]
    ([1, 2, 3], {'x': 2, 'y': 'b'}, ['a', 'b'])
    """

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, str):
            return dict.__getitem__(self, index)
        if isinstance(index, slice):
            return BatchData({key: values[index] for key, values in self.items()})
        return {key: values[index] for key, values in self.items()}

    def to_device(self, device: torch.device | str) -> BatchData:
        """A new BatchData with every tensor moved to ``device`` (others kept as they are)."""
        return BatchData(
            {
                key: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
                for key, value in self.items()
            }
        )


class EpochBatchSampler:
    """Yields the batches of indices of one epoch, the same ones for the same seed and epoch.

    The order of epoch ``e`` depends only on ``(seed, e)``, so a run resumed in the middle of
    an epoch sees exactly the batches it would have seen (``start_batch`` skips those done).
    With ``lengths``, items are grouped by length inside shuffled mega-batches of
    ``50 * batch_size`` items, which cuts padding while keeping batches random.
    """

    def __init__(
        self,
        nb_items: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
        lengths: Sequence[int] | None = None,
        drop_last: bool = False,
    ):
        self.nb_items = nb_items
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.lengths = lengths
        self.drop_last = drop_last
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    def batches(self) -> list[list[int]]:
        """Every batch of the current epoch, including those skipped by ``start_batch``."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.shuffle:
            order = torch.randperm(self.nb_items, generator=generator).tolist()
        else:
            order = list(range(self.nb_items))
        if self.lengths is not None:
            mega = 50 * self.batch_size
            order = [
                index
                for start in range(0, len(order), mega)
                for index in sorted(order[start : start + mega], key=lambda i: -self.lengths[i])
            ]
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.lengths is not None and self.shuffle and len(batches) > 1:
            # Keep the longest batch first (surfaces out-of-memory at once), shuffle the rest.
            rest = torch.randperm(len(batches) - 1, generator=generator).tolist()
            batches = [batches[0]] + [batches[1 + i] for i in rest]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches()[self.start_batch :]

    def __len__(self) -> int:
        full, rest = divmod(self.nb_items, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)
