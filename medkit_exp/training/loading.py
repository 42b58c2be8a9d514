"""From raw data items to batches: preprocessing (cached or lazy) and the data loaders."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from medkit_exp.errors import ConfigError
from medkit_exp.training.callbacks import Timer

logger = logging.getLogger(__name__)


def preprocess_items(component: Any, data: Any, name: str, cache: bool) -> Any:
    """``component.preprocess`` of every item: once, now (``cache``), or on each access, as medkit does."""
    if not cache:
        return LazyPreprocessed(data, component)
    timer = Timer()
    items = [component.preprocess(item) for item in data]
    logger.info("Preprocessed %d %s items in %.2fs (cached for every epoch)", len(items), name, timer.elapsed())
    return items


def make_loader(items: Any, component: Any, nb_workers: int, **kwargs: Any) -> DataLoader:
    """A DataLoader batching with ``component.collate``."""
    # An own generator keeps DataLoader iterators from drawing on the global RNG,
    # which a resumed run would otherwise consume at other points than the original one.
    return DataLoader(
        items, collate_fn=component.collate, num_workers=nb_workers, generator=torch.Generator().manual_seed(0), **kwargs
    )


def item_lengths(items: Any) -> list[int]:
    """The length of each preprocessed item (its ``length`` entry, else its number of ``input_ids``)."""
    return [_item_length(item) for item in items]


def _item_length(item: dict[str, Any]) -> int:
    if "length" in item:
        return int(item["length"])
    if "input_ids" in item:
        return len(item["input_ids"])
    raise ConfigError("group_by_length", "preprocessed items need a 'length' or 'input_ids' entry")


class LazyPreprocessed(Dataset):
    """Preprocess on access (``cache_preprocessed=False``)."""

    def __init__(self, data: Any, component: Any):
        self.data, self.component = data, component

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.component.preprocess(self.data[index])
