"""Data-parallel pieces in one process: the split of the data, the loss weights, the single-process
context (no torchrun: nothing changes) and the checks that need no second process."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from medkit_exp.errors import ConfigError, DataError
from medkit_exp.training import distributed
from medkit_exp.training.batch import EpochBatchSampler
from medkit_exp.training.data_parallel import GradientSync
from medkit_exp.training.distributed import DistributedContext
from medkit_exp.training.shards import (
    EvalResults,
    EvalShardSampler,
    ShardedBatchSampler,
    loss_terms,
    share,
    share_weight,
    shard_batches,
)


def contexts(world_size: int) -> list[DistributedContext]:
    return [DistributedContext(world_size=world_size, rank=rank) for rank in range(world_size)]


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_shares_are_the_batch_in_order(world_size):
    for size in range(0, 11):
        batch = list(range(100, 100 + size))
        parts = [share(batch, rank, world_size) for rank in range(world_size)]
        assert sum(parts, []) == batch
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.mark.parametrize("group_by_length", [False, True])
def test_ranks_together_take_the_single_process_batches(group_by_length):
    """Every step: rank 0's share + rank 1's share == the batch one process takes with 2B."""
    lengths = [(i * 7) % 23 for i in range(45)] if group_by_length else None
    single = EpochBatchSampler(45, 8, True, seed=5, lengths=lengths)
    ranks = [ShardedBatchSampler(EpochBatchSampler(45, 8, True, seed=5, lengths=lengths), c) for c in contexts(2)]
    for epoch in (1, 2):
        single.set_epoch(epoch)
        for sampler in ranks:
            sampler.sampler.set_epoch(epoch)
        expected = list(single)
        per_rank = [list(sampler) for sampler in ranks]
        assert len(per_rank[0]) == len(per_rank[1]) == len(expected) == len(single) == len(ranks[0])
        for step, batch in enumerate(expected):
            assert per_rank[0][step] + per_rank[1][step] == batch
        seen = [i for sampler_batches in per_rank for batch in sampler_batches for i in batch]
        assert sorted(seen) == list(range(45))  # nothing repeated, nothing dropped
        sizes = list(zip(ranks[0].local_sizes(), ranks[1].local_sizes()))
        assert sorted(sizes) == [(3, 2)] + [(4, 4)] * 5  # 45 = 5 x 8 + 5: the short batch split 3 + 2


def test_an_empty_share_is_a_stand_in_that_counts_for_nothing():
    sampler = EpochBatchSampler(9, 8, False, seed=0)
    last = ShardedBatchSampler(sampler, DistributedContext(world_size=2, rank=1))
    sampler.set_epoch(1)
    assert list(last) == [[4, 5, 6, 7], [8]]  # the 1-item last batch belongs to rank 0 ...
    assert last.local_sizes() == [4, 0]  # ... rank 1 runs it with weight 0
    assert share_weight(0, 1, 2) == 0.0


def test_weighted_shares_give_the_single_process_gradient():
    """Unequal shares (3 and 2 items; 7 and 2 tokens): the mean of the weighted ranks' gradients is
    the gradient of the global mean (what DDP's average of gradients computes)."""
    torch.manual_seed(0)
    weight = torch.randn(4, requires_grad=True)
    inputs, terms_mask = torch.randn(5, 3, 4), torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 0, 0]])

    def token_loss(rows: slice) -> torch.Tensor:
        values = (inputs[rows] @ weight) ** 2
        return (values * terms_mask[rows]).sum() / terms_mask[rows].sum()

    def item_loss(rows: slice) -> torch.Tensor:
        return ((inputs[rows] @ weight) ** 2).mean(-1).mean()

    def items(rows: slice) -> int:
        return len(range(5)[rows])

    def tokens(rows: slice) -> int:
        return int(terms_mask[rows].sum())

    for loss, count in ((item_loss, items), (token_loss, tokens)):
        (expected,) = torch.autograd.grad(loss(slice(0, 5)), weight)
        shares = [slice(0, 3), slice(3, 5)]
        total = sum(count(rows) for rows in shares)
        grads = [torch.autograd.grad(loss(rows) * share_weight(count(rows), total, 2), weight)[0] for rows in shares]
        assert torch.allclose((grads[0] + grads[1]) / 2, expected, atol=1e-6)


def test_loss_terms_come_from_the_optional_method():
    class Counting:
        def nb_loss_terms(self, batch):
            return int((batch["labels"] != -100).sum())

    batch = {"labels": torch.tensor([[1, -100], [2, 3]])}
    assert loss_terms(Counting(), batch, nb_items=2) == 3
    assert loss_terms(object(), batch, nb_items=2) is None  # the items: known without the batch
    assert loss_terms(Counting(), batch, nb_items=0) == 0  # a stand-in counts nothing


def test_eval_shards_cover_every_item_once_in_order():
    shards = [EvalShardSampler(11, 3, c) for c in contexts(2)]  # global batches of 6: [0..5], [6..10]
    assert shards[0].batches == [[0, 1, 2], [6, 7, 8]] and shards[1].batches == [[3, 4, 5], [9, 10]]
    assert shards[0].nb_global_batches == 2
    tiny = [EvalShardSampler(1, 3, c) for c in contexts(2)]
    assert tiny[0].batches == [[0]] and tiny[1].batches == [] and tiny[1].global_index == []


def test_single_process_eval_results_are_the_plain_sums():
    class Computer:
        def prepare_batch(self, output, batch):
            return {"p": output}

        def compute(self, inputs):
            return {"n": len(inputs["p"])}

    trainer = SimpleNamespace(distributed=DistributedContext(), component=SimpleNamespace(device=torch.device("cpu")),
                              metrics_computer=Computer())
    results = EvalResults(trainer, [None, None])
    results.add(0, {}, [1, 2], torch.tensor(1.0))
    results.add(1, {}, [3], torch.tensor(2.0))
    assert results.result() == (1.5, {"p": [1, 2, 3]}) and results.metrics() == {"loss": 1.5, "n": 3}


def test_without_torchrun_nothing_joins(monkeypatch):
    for name in distributed.ENV_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    context = distributed.init_from_env()
    assert (context.world_size, context.rank, context.is_main, context.owns_group) == (1, 0, True, False)
    assert not torch.distributed.is_initialized()
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun --nproc-per-node=1: one process, no group either
    assert distributed.init_from_env().world_size == 1 and not torch.distributed.is_initialized()
    distributed.leave(context)  # nothing to leave


def test_single_process_collectives_call_nothing(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a collective was called with one process")

    for name in ("all_reduce", "all_gather_object", "broadcast_object_list", "broadcast"):
        monkeypatch.setattr(torch.distributed, name, forbidden)
    context = DistributedContext()
    assert context.all_gather(3) == [3] and context.broadcast(4) == 4 and context.max_ints([1, 0]) == [1, 0]
    assert distributed.agree_batch(context, True, 3, 1.5) == (True, 3, 1.5)
    model = torch.nn.Linear(2, 1)

    class Component:
        pass

    component = Component()
    component.model = model
    sync = GradientSync(context, component, torch.optim.SGD(model.parameters(), lr=0.1))
    with sync.forward(sync=False):
        model(torch.ones(1, 2)).sum().backward()
    sync.average_gradients()
    assert component.model is model and sync.ddp is None
    assert shard_batches(sampler := EpochBatchSampler(4, 2, False, 0), context) is sampler


def test_nccl_without_cuda_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="distributed_backend.*nccl needs CUDA"):
        distributed.resolve_backend("nccl")
    assert distributed.resolve_backend("auto") == "gloo"
    with pytest.raises(ConfigError, match="distributed_backend.*one of auto, gloo, nccl"):
        distributed.resolve_backend("mpi")


def test_bad_torchrun_variables_are_named(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE"):
        distributed.torchrun_world()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ConfigError, match="RANK=2 and WORLD_SIZE=2"):
        distributed.torchrun_world()


def test_more_processes_than_training_items_is_refused():
    with pytest.raises(DataError, match="train_data has 3 item\\(s\\), fewer than the 4 processes"):
        distributed.check_enough_data(DistributedContext(world_size=4), 3)
    distributed.check_enough_data(DistributedContext(world_size=4), 4)


def test_the_backend_option_is_honoured_or_refused(tmp_path, monkeypatch):
    from tests.training.toy import toy_trainer_builder

    build = toy_trainer_builder(tmp_path / "run")
    with pytest.raises(ConfigError, match="distributed_backend.*one of auto, gloo, nccl"):
        build(distributed_backend="mpi")
    with pytest.raises(ConfigError, match="distributed_timeout_s"):
        build(distributed_timeout_s=0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="distributed_backend.*nccl needs CUDA GPUs"):
        build(distributed_backend="nccl")  # refused before anything is read or written
    assert not (tmp_path / "run").exists()
    trainer = build(distributed_backend="gloo")  # one process: no group, the option has nothing to do
    assert trainer.distributed.world_size == 1 and trainer.global_batch_size == 8
    assert not torch.distributed.is_initialized()


def test_a_context_left_says_so():
    context = DistributedContext(world_size=2, left=True)
    with pytest.raises(RuntimeError, match="left the process group it had joined at the end of train"):
        context.all_gather(1)


def test_a_single_process_training_calls_no_collective(tmp_path, monkeypatch):
    """Without torchrun nothing changes: the whole loop (accumulation, evaluation, checkpoints, resume)
    runs without one torch.distributed call."""
    from tests.training.toy import toy_trainer_builder

    def forbidden(*args, **kwargs):
        raise AssertionError("a torch.distributed call in a single-process run")

    for name in ("init_process_group", "all_reduce", "all_gather_object", "broadcast_object_list", "broadcast",
                 "new_group", "destroy_process_group"):
        monkeypatch.setattr(torch.distributed, name, forbidden)
    build = toy_trainer_builder(tmp_path / "run")
    settings = {"gradient_accumulation_steps": 2, "eval_strategy": "steps", "eval_steps": 2, "group_by_length": True,
                "do_metrics_in_training": True}
    history = build(**settings, nb_training_epochs=1).train()
    resumed = build(**settings, nb_training_epochs=2).train(resume_from_checkpoint="last")
    assert history and len(resumed) > len(history)


def test_other_ranks_log_warnings_only_with_their_rank():
    import logging

    target, records = logging.getLogger("ddp-test-quiet"), []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    target.addHandler(Keep())
    target.propagate = False
    distributed.quiet_unless_main(DistributedContext(world_size=2, rank=0), target)
    target.setLevel(logging.INFO)
    target.info("progress")
    distributed.quiet_unless_main(DistributedContext(world_size=2, rank=1), target)
    target.info("progress")
    target.error("broke")
    assert records == ["progress", "[rank 1] broke"]
