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

    With ``max_tokens`` (needs ``lengths``), a batch also keeps its padded size, ``rows x
    longest length`` (the longest rounded up to ``pad_multiple``; ``rows[i]``: the rows item ``i``
    adds to the padded tensor, 1 each by default), within ``max_tokens``: the items of the whole
    epoch, sorted by length (longest first; items of equal length and rows in a new random order
    each epoch), are cut greedily into batches of at most ``batch_size`` items, and the order of
    the batches is shuffled (the longest batch stays first). The whole epoch is sorted, not
    mega-batches, because then the number of batches depends only on the items' lengths: it is
    the same every epoch (``len``, the scheduler's steps, a resumed position stay right). An item
    whose own padded size exceeds ``max_tokens`` forms a batch alone (``nb_oversized`` counts them).
    """

    def __init__(
        self,
        nb_items: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
        lengths: Sequence[int] | None = None,
        drop_last: bool = False,
        max_tokens: int | None = None,
        rows: Sequence[int] | None = None,
        pad_multiple: int = 1,
    ):
        if max_tokens is not None and (lengths is None or drop_last):
            raise ValueError("max_tokens needs the items' lengths and keeps every item (no drop_last)")
        self.nb_items = nb_items
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.lengths = lengths
        self.drop_last = drop_last
        self.max_tokens = max_tokens
        self.rows = rows if rows is not None else [1] * nb_items
        self.pad_multiple = pad_multiple
        self.epoch = 0
        self.start_batch = 0
        self.nb_oversized = 0
        self._nb_budget_batches = 0
        if max_tokens is not None:
            # The cut depends only on the sequence of (length, rows) sorted: the same every epoch.
            sizes = self._budget_cut(self._by_length(list(range(nb_items))))
            self._nb_budget_batches = len(sizes)
            self.nb_oversized = sum(1 for batch in sizes if self.padded_tokens(batch) > max_tokens)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    def padded_tokens(self, batch: Sequence[int]) -> int:
        """The padded size of ``batch``: its rows x its longest length rounded up to ``pad_multiple``."""
        assert self.lengths is not None
        longest = max(self.lengths[i] for i in batch)
        longest = -(-longest // self.pad_multiple) * self.pad_multiple
        return sum(self.rows[i] for i in batch) * longest

    def batches(self) -> list[list[int]]:
        """Every batch of the current epoch, including those skipped by ``start_batch``."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.shuffle:
            order = torch.randperm(self.nb_items, generator=generator).tolist()
        else:
            order = list(range(self.nb_items))
        if self.max_tokens is not None:
            batches = self._budget_cut(self._by_length(order))
        else:
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

    def _by_length(self, order: list[int]) -> list[int]:
        """``order`` sorted longest first, then most rows first; a stable sort keeps ties in ``order``'s order."""
        assert self.lengths is not None
        return sorted(order, key=lambda i: (-self.lengths[i], -self.rows[i]))

    def _budget_cut(self, order: list[int]) -> list[list[int]]:
        """Items sorted longest first, cut into batches of at most ``batch_size`` items whose padded
        size stays within ``max_tokens`` (an item over it alone). The first item of a batch is its
        longest, so its padded length is known when the batch opens."""
        assert self.lengths is not None and self.max_tokens is not None
        batches: list[list[int]] = []
        batch: list[int] = []
        padded_length = rows = 0
        for index in order:
            if batch and len(batch) < self.batch_size and (rows + self.rows[index]) * padded_length <= self.max_tokens:
                batch.append(index)
                rows += self.rows[index]
                continue
            if batch:
                batches.append(batch)
            batch, rows = [index], self.rows[index]
            padded_length = -(-self.lengths[index] // self.pad_multiple) * self.pad_multiple
        if batch:
            batches.append(batch)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches()[self.start_batch :]

    def __len__(self) -> int:
        if self.max_tokens is not None:
            return self._nb_budget_batches
        full, rest = divmod(self.nb_items, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)
