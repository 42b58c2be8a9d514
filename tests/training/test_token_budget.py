"""Training batches bounded by a token budget (TrainerConfig.max_batch_tokens) as well as a count."""

from __future__ import annotations

import logging

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from medkit_exp.errors import ConfigError
from medkit_exp.training import TrainerConfig
from medkit_exp.training.batch import EpochBatchSampler
from medkit_exp.training.distributed import DistributedContext
from medkit_exp.training.loading import item_lengths, item_rows
from medkit_exp.training.shards import shard_training_data
from tests.training.toy import make_texts

items = st.lists(st.tuples(st.integers(1, 40), st.integers(1, 3)), min_size=1, max_size=120)


@settings(max_examples=60, deadline=None)
@given(items=items, batch_size=st.integers(1, 12), budget=st.integers(1, 200), seed=st.integers(0, 2**31),
       multiple=st.sampled_from([1, 8]))
def test_budget_batches_hold_every_item_once_within_count_and_budget(items, batch_size, budget, seed, multiple):
    lengths, rows = [length for length, _ in items], [row for _, row in items]
    sampler = EpochBatchSampler(len(items), batch_size, True, seed, lengths, max_tokens=budget, rows=rows,
                                pad_multiple=multiple)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = sampler.batches()
        assert sorted(i for batch in batches for i in batch) == list(range(len(items)))
        assert len(batches) == len(sampler)  # the same number every epoch: the scheduler's and resume's count
        assert all(1 <= len(batch) <= batch_size for batch in batches)
        over = [batch for batch in batches if sampler.padded_tokens(batch) > budget]
        assert all(len(batch) == 1 for batch in over)  # only an item over the budget on its own exceeds it
        assert len(over) == sampler.nb_oversized
        # the padded size is rows x the longest length rounded up to the padding multiple
        for batch in batches:
            longest = -(-max(lengths[i] for i in batch) // multiple) * multiple
            assert sampler.padded_tokens(batch) == sum(rows[i] for i in batch) * longest


@settings(max_examples=30, deadline=None)
@given(lengths=st.lists(st.integers(1, 30), min_size=2, max_size=80), seed=st.integers(0, 2**31),
       epoch=st.integers(0, 5), start=st.integers(0, 80))
def test_same_seed_and_epoch_give_the_same_batches_and_a_resumed_position_skips_those_done(lengths, seed, epoch, start):
    def sampler():
        return EpochBatchSampler(len(lengths), 4, True, seed, lengths, max_tokens=48)

    first, second = sampler(), sampler()
    first.set_epoch(epoch)
    second.set_epoch(epoch, start_batch=min(start, len(second)))
    assert list(second) == first.batches()[min(start, len(first)):]


def test_budget_packs_batches_by_tokens_and_changes_them_between_epochs():
    lengths = [5] * 40 + [20] * 10
    sampler = EpochBatchSampler(50, 16, True, 0, lengths, max_tokens=60)
    sampler.set_epoch(1)
    batches = sampler.batches()
    # three items of 20 fill a budget of 60; the tenth opens a batch that two items of 5 fill (padded
    # to 20); then 12 items of 5 fill it, not the count of 16; the last 2 remain
    assert sorted(len(batch) for batch in batches) == [2] + [3] * 4 + [12] * 3
    sampler.set_epoch(2)
    assert sampler.batches() != batches and len(sampler.batches()) == len(batches)


@pytest.mark.parametrize("value", [0, -3, 1.5, True, "2048"])
def test_max_batch_tokens_must_be_a_positive_integer(tmp_path, value):
    with pytest.raises(ConfigError, match="max_batch_tokens"):
        TrainerConfig(output_dir=str(tmp_path), group_by_length=True, max_batch_tokens=value)


def test_max_batch_tokens_needs_group_by_length(tmp_path):
    with pytest.raises(ConfigError, match="config key 'max_batch_tokens': needs group_by_length=true"):
        TrainerConfig(output_dir=str(tmp_path), max_batch_tokens=64)


def test_trainer_batches_stay_within_the_budget_and_oversized_items_are_said(make_trainer, caplog):
    data = make_texts(60, 1) + [(" ".join(["fever"] * 30), 1)]  # one item of 30 tokens, over a budget of 24
    seen = []

    class Recorder:
        def on_step_begin(self, index, nb_batches, phase):
            if phase == "train":
                seen.append(nb_batches)

    with caplog.at_level(logging.INFO):
        trainer = make_trainer(train=data, group_by_length=True, max_batch_tokens=24, batch_size=8,
                               nb_training_epochs=2, callback=[Recorder()])
    assert "1 training item(s) longer than max_batch_tokens=24 once padded" in caplog.text
    lengths = item_lengths(trainer.train_items)
    counts = []
    for epoch in (1, 2):
        trainer.sampler.set_epoch(epoch)
        batches = trainer.sampler.batches()
        counts.append(len(batches))
        assert all(len(b) * max(lengths[i] for i in b) <= 24 or len(b) == 1 for b in batches)
    assert counts[0] == counts[1] == len(trainer.sampler) == trainer.state.nb_batches_per_epoch
    assert len(trainer.sampler) > len(data) / 8  # the budget, not the count, cut most batches
    history = trainer.train()
    assert trainer.state.global_step == 2 * len(trainer.sampler)  # every batch of both epochs trained
    assert set(seen) == {len(trainer.sampler)} and len(history) == 2


def test_resumed_mid_epoch_run_with_a_budget_ends_like_the_uninterrupted_one(make_trainer, tmp_path):
    config = {"group_by_length": True, "max_batch_tokens": 30, "nb_training_epochs": 2}
    full = make_trainer(output_dir=str(tmp_path / "full"), **config)
    history = full.train()
    nb_batches = len(full.sampler)
    make_trainer(output_dir=str(tmp_path / "part"), max_steps=nb_batches + 3, **config).train()
    resumed = make_trainer(output_dir=str(tmp_path / "part"), **config)
    # the interrupted run evaluated at its max_steps, so its last training window is shorter: the
    # evaluation and the weights are what must match
    assert resumed.train(resume_from_checkpoint="last")[-1]["eval"] == history[-1]["eval"]
    for name, value in full.component.model.state_dict().items():
        assert torch.equal(value, resumed.component.model.state_dict()[name]), name


def test_item_rows_count_a_documents_windows():
    assert item_rows([{"input_ids": [1, 2]}, {"windows": [{}, {}, {}], "length": 5}, {"nb_rows": 4}]) == [1, 3, 4]


def test_data_parallel_training_refuses_a_token_budget(tmp_path):
    config = TrainerConfig(output_dir=str(tmp_path), group_by_length=True, max_batch_tokens=64)
    context = DistributedContext(world_size=2, rank=0, local_rank=0, device=torch.device("cpu"))
    with pytest.raises(ConfigError, match="max_batch_tokens': is not supported with data-parallel training"):
        shard_training_data(None, None, config, context)  # refused before the data is looked at


def test_the_app_takes_max_batch_tokens_from_the_command_line():
    from hydra import compose, initialize_config_dir

    from medkit_exp.cli import build_trainer_config, config_dir
    from medkit_exp.config_check import check_config
    from medkit_exp.schema import MedkitExpConfig

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        default = compose("config", overrides=["+experiment=ner", "paths.output_dir=/tmp/unused"])
        cfg = compose("config", overrides=["+experiment=ner", "paths.output_dir=/tmp/unused", "trainer.max_batch_tokens=2048"])
    assert default.trainer.max_batch_tokens is None and default.trainer.precision == "auto"
    check_config(cfg, MedkitExpConfig)
    assert build_trainer_config(cfg).max_batch_tokens == 2048


def test_the_command_line_refuses_a_budget_without_length_grouping_in_one_line_exit_2(tmp_path):
    from tests.test_cli import run_cli

    result = run_cli(tmp_path, "+experiment=ner", "debug=fast", "trainer.max_batch_tokens=64",
                     "trainer.group_by_length=false", "hydra.run.dir=run")
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: config key 'trainer.max_batch_tokens': needs group_by_length=true "
                      "(batches are cut from items sorted by length)"], result.stderr


@pytest.mark.parametrize("multiple", [None, 8])
def test_a_taggers_collated_batches_stay_within_the_budget(tiny_bert_dir, multiple):
    """Documents of several windows: the budget counts the rows the collated batch really has."""
    from medkit_exp.ner.tagger import HFEntityMatcherTrainable
    from medkit_exp.training.loading import padding_multiple, training_sampler
    from tests.ner.test_tagger import LABELS, example_document, long_document

    tagger = HFEntityMatcherTrainable(tiny_bert_dir, labels=LABELS, tokenizer_max_length=16, pad_to_multiple_of=multiple)
    documents = [long_document(n) for n in (1, 2, 3, 5, 8)] * 2 + [example_document()] * 4
    items = [tagger.preprocess(document) for document in documents]
    assert max(item_rows(items)) > 1  # long documents are split into windows
    config = TrainerConfig(output_dir="unused", batch_size=8, group_by_length=True, max_batch_tokens=64)
    sampler = training_sampler(items, config, 0, item_lengths(items), padding_multiple(tagger))
    sampler.set_epoch(1)
    sizes = []
    for batch in sampler.batches():
        shape = tagger.collate([items[i] for i in batch])["input_ids"].shape
        assert shape[0] * shape[1] == sampler.padded_tokens(batch)  # what the sampler counts is what is padded
        assert shape[0] * shape[1] <= 64 or len(batch) == 1
        sizes.append(shape[0] * shape[1])
    assert len(sizes) == len(sampler) and max(sizes) > 64 and sampler.nb_oversized >= 1
