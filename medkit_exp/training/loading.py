"""From raw data items to batches: preprocessing (cached or lazy) and the data loaders."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from medkit_exp.errors import ConfigError, DataError
from medkit_exp.training.batch import EpochBatchSampler
from medkit_exp.training.callbacks import Timer
from medkit_exp.training.component import TrainableComponent
from medkit_exp.training.config import TrainerConfig

logger = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """The preprocessed items of a run, the resumable sampler of the training batches, the loaders."""

    train_items: Any
    eval_items: Any
    sampler: EpochBatchSampler
    train_dataloader: DataLoader
    eval_dataloader: DataLoader | None


def build_training_data(
    component: TrainableComponent, config: TrainerConfig, train_data: Sequence[Any], eval_data: Sequence[Any] | None
) -> TrainingData:
    """Preprocess both sets and build their loaders; empty training data is a DataError."""
    train_items = preprocess_items(component, train_data, "train_data", config.cache_preprocessed)
    if not train_items:
        raise DataError("train_data is empty: nothing to train on")
    eval_items = [] if eval_data is None else preprocess_items(
        component, eval_data, "eval_data", config.cache_preprocessed
    )
    if not eval_items and config.eval_strategy != "no":
        logger.warning("No evaluation data: no eval metrics; the last checkpoint is also the best")
    # The batch order of each epoch comes from this seed alone (resumable, see EpochBatchSampler).
    sampler_seed = config.seed if config.seed is not None else int(torch.randint(0, 2**31, ()).item())
    lengths = item_lengths(train_items) if config.group_by_length else None
    sampler = training_sampler(train_items, config, sampler_seed, lengths, padding_multiple(component))
    workers = config.dataloader_nb_workers
    train_loader = make_loader(train_items, component, workers, batch_sampler=sampler)
    eval_loader = None
    if eval_items:
        eval_batch_size = config.eval_batch_size or config.batch_size
        eval_loader = make_loader(eval_items, component, workers, batch_size=eval_batch_size)
    return TrainingData(train_items, eval_items, sampler, train_loader, eval_loader)


def training_sampler(
    items: Any, config: TrainerConfig, seed: int, lengths: list[int] | None, pad_multiple: int = 1
) -> EpochBatchSampler:
    """The sampler of the training batches: ``batch_size`` items each, and with ``max_batch_tokens``
    a padded size within that budget too (items over it alone: said once, with their number)."""
    if config.max_batch_tokens is None:
        return EpochBatchSampler(len(items), config.batch_size, True, seed, lengths)
    assert lengths is not None  # TrainerConfig requires group_by_length with max_batch_tokens
    sampler = EpochBatchSampler(len(items), config.batch_size, True, seed, lengths, max_tokens=config.max_batch_tokens,
                                rows=item_rows(items), pad_multiple=pad_multiple)
    logger.info("max_batch_tokens=%d: %d training batches per epoch (%d items, at most %d per batch)",
                config.max_batch_tokens, len(sampler), len(items), config.batch_size)
    if sampler.nb_oversized:
        logger.warning("%d training item(s) longer than max_batch_tokens=%d once padded: each is a batch of its own",
                       sampler.nb_oversized, config.max_batch_tokens)
    return sampler


def padding_multiple(component: Any) -> int:
    """What the component's ``collate`` rounds a batch's longest length up to: its
    ``padding_multiple`` attribute (a tagger's), else 1."""
    multiple = getattr(component, "padding_multiple", 1)
    return multiple if isinstance(multiple, int) and not isinstance(multiple, bool) and multiple >= 1 else 1


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
        items, collate_fn=component.collate, num_workers=nb_workers, generator=torch.Generator().manual_seed(0),
        **kwargs,
    )


def item_lengths(items: Any) -> list[int]:
    """The length of each preprocessed item (its ``length`` entry, else its number of ``input_ids``)."""
    return [_item_length(item) for item in items]


def item_rows(items: Any) -> list[int]:
    """The rows each preprocessed item adds to a padded batch: its ``nb_rows`` entry, else the
    number of its ``windows`` (a tagger's document, split into windows), else 1."""
    return [_item_rows(item) for item in items]


def _item_rows(item: dict[str, Any]) -> int:
    if "nb_rows" in item:
        return int(item["nb_rows"])
    if "windows" in item:
        return max(1, len(item["windows"]))
    return 1


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
