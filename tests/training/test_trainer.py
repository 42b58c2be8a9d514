"""Trainer features beyond medkit, each on the toy classifier."""

from __future__ import annotations

import copy
import json
import math
import os
import pickle

import pytest
import torch

from medkit_exp.errors import ConfigError, NonFiniteLossError
from medkit_exp.training import BatchData, EarlyStoppingCallback, TrainerCallback
from tests.training.toy import AccuracyComputer, HiddenModelClassifier, ToyTextClassifier, make_texts


class Recorder(TrainerCallback):
    def __init__(self):
        self.events: list[tuple] = []

    def on_log(self, logs, step):
        self.events.append(("log", step, dict(logs)))

    def on_evaluate(self, metrics, step):
        self.events.append(("evaluate", step, dict(metrics)))

    def on_save(self, checkpoint_dir):
        self.events.append(("save", checkpoint_dir))

    def of(self, kind):
        return [e for e in self.events if e[0] == kind]


def test_history_has_one_entry_per_evaluation_and_is_written_as_json_lines(make_trainer, tmp_path):
    trainer = make_trainer(nb_training_epochs=2, logging_steps=3)
    history = trainer.train()
    assert len(history) == 2
    assert set(history[0]) == {"train", "eval"}
    assert set(history[0]["eval"]) == {"loss", "accuracy"}
    records = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["type"] == "eval"] == [8, 16]
    assert [r["step"] for r in records if r["type"] == "log"] == [3, 6, 9, 12, 15]
    assert records[-1]["eval"] == history[-1]["eval"]


def test_output_dir_is_created_with_its_parents(make_trainer, tmp_path):
    trainer = make_trainer(output_dir=str(tmp_path / "a" / "b" / "c"), nb_training_epochs=1)
    trainer.train()
    assert (tmp_path / "a" / "b" / "c" / "checkpoints" / "state.json").exists()


def test_train_loss_is_the_true_mean_whatever_the_gradient_accumulation(make_trainer, tmp_path):
    data = make_texts(40, 5)
    expected = None
    for accumulation in (1, 4):
        trainer = make_trainer(
            train=data, eval_data=None, learning_rate=1e-30, batch_size=4, nb_training_epochs=1,
            gradient_accumulation_steps=accumulation, output_dir=str(tmp_path / f"acc{accumulation}"), seed=0,
        )
        history = trainer.train()
        if expected is None:  # mean of the per-batch losses, computed by hand on the unchanged model
            component = trainer.component
            losses = []
            for start in range(0, 40, 4):
                batch = component.collate([component.preprocess(item) for item in data[start : start + 4]])
                losses.append(component.forward(batch, True, True)[1].item())
            expected = sum(losses) / len(losses)
        assert history[0]["train"]["loss"] == pytest.approx(expected, rel=1e-5)


def test_gradient_accumulation_counts_optimizer_steps(make_trainer):
    trainer = make_trainer(batch_size=4, gradient_accumulation_steps=3, nb_training_epochs=2)  # 16 batches/epoch
    trainer.train()
    assert trainer.state.global_step == 2 * 6  # ceil(16 / 3) per epoch


def test_empty_eval_data_trains_and_keeps_the_last_checkpoint_as_best(make_trainer):
    trainer = make_trainer(eval_data=[], nb_training_epochs=2)
    history = trainer.train()
    assert [entry["eval"] for entry in history] == [{}, {}]
    assert trainer.best_checkpoint == trainer.last_checkpoint


def test_evaluation_every_n_steps_and_max_steps(make_trainer):
    recorder = Recorder()
    trainer = make_trainer(eval_strategy="steps", eval_steps=3, max_steps=10, nb_training_epochs=5, callback=[recorder])
    history = trainer.train()
    assert trainer.state.global_step == 10
    assert [e[1] for e in recorder.of("evaluate")] == [3, 6, 9, 10]  # the last one at the end
    assert len(history) == 4


def test_separate_eval_batch_size(make_trainer):
    trainer = make_trainer(eval_batch_size=5)
    assert trainer.eval_dataloader.batch_size == 5 and len(trainer.eval_dataloader) == 5  # 24 items


def test_missing_tracked_metric_fails_before_training_with_the_available_ones(make_trainer):
    with pytest.raises(ConfigError, match="'f1' is never produced; available: accuracy, loss"):
        make_trainer(checkpoint_metric="f1")


def test_missing_tracked_metric_of_an_undeclared_computer_fails_before_any_checkpoint(make_trainer, tmp_path):
    class Undeclared(AccuracyComputer):
        metric_names = None  # names known only once compute() has run

    trainer = make_trainer(checkpoint_metric="f1", metrics=Undeclared())  # passes construction
    with pytest.raises(ConfigError, match="available: accuracy, loss"):
        trainer.train()
    assert not list((tmp_path / "run").glob("checkpoints/checkpoint-*"))


def test_keeps_best_k_and_last_and_records_them(make_trainer, tmp_path):
    trainer = make_trainer(
        nb_training_epochs=6, checkpoint_metric="accuracy", minimize_checkpoint_metric=False, keep_best_k=2
    )
    history = trainer.train()
    state = json.loads((tmp_path / "run" / "checkpoints" / "state.json").read_text())
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("checkpoint-*"))
    accuracies = {f"checkpoint-{8 * (i + 1):07d}": e["eval"]["accuracy"] for i, e in enumerate(history)}
    best_two = sorted(accuracies, key=lambda n: (-accuracies[n], n))[:2]
    assert set(names) == set(best_two) | {"checkpoint-0000048"}
    assert state["best"] == best_two[0] and trainer.best_checkpoint.endswith(best_two[0])
    assert state["last"] == "checkpoint-0000048" and trainer.last_checkpoint.endswith("checkpoint-0000048")
    payload = torch.load(f"{trainer.last_checkpoint}/trainer_state.pt", weights_only=False)
    assert {"grad_scaler", "rng", "state", "callbacks", "history_lines"} <= set(payload)
    assert set(payload["rng"]) >= {"python", "numpy", "torch"}
    # the optimizer state is in medkit's file; no scheduler, so no scheduler.pt (as medkit)
    optimizer_state = torch.load(f"{trainer.last_checkpoint}/optimizer.pt", weights_only=False)
    assert optimizer_state["state"] and not os.path.exists(f"{trainer.last_checkpoint}/scheduler.pt")


def test_checkpoint_period_zero_saves_only_at_the_end(make_trainer):
    recorder = Recorder()
    make_trainer(nb_training_epochs=3, checkpoint_period=0, callback=[recorder]).train()
    assert [e[1].rsplit("/", 1)[-1] for e in recorder.of("save")] == ["checkpoint-0000024"]


def test_early_stopping_stops_and_its_state_is_checkpointed(make_trainer):
    stopper = EarlyStoppingCallback(metric="accuracy", patience=1, mode="max", min_delta=1.0)  # never improves
    trainer = make_trainer(nb_training_epochs=10, callback=[stopper])
    history = trainer.train()
    assert len(history) == 2 and trainer.state.stop_reason == "early_stopping"
    payload = torch.load(f"{trainer.last_checkpoint}/trainer_state.pt", weights_only=False)
    assert payload["callbacks"]["EarlyStoppingCallback"]["bad_evaluations"] == 1


def test_without_metrics_computer_only_loss_is_available(make_trainer):
    with pytest.raises(ConfigError, match=r"available: loss\)$"):
        make_trainer(checkpoint_metric="accuracy", metrics=False)


def test_early_stopping_metric_never_produced_fails_at_construction(make_trainer):
    with pytest.raises(ConfigError, match="EarlyStoppingCallback.metric.*'f1' is never produced"):
        make_trainer(callback=[EarlyStoppingCallback(metric="f1")])


def test_a_callback_checks_the_eval_metrics_it_needs_itself(make_trainer):
    seen = []

    class NeedsF1(TrainerCallback):
        monitor = "f1"  # the Trainer never reads a callback's attributes: the callback checks

        def check_metric_names(self, names):
            seen.append(names)

    make_trainer(callback=[NeedsF1()])
    assert seen == [["accuracy", "loss"]]  # declared by the metrics computer, before training


def test_callbacks_see_a_read_only_state(make_trainer):
    class Meddler(TrainerCallback):
        def on_log(self, logs, step):
            assert self.state.global_step == step  # reads the live state
            self.state.global_step = 0

    trainer = make_trainer(nb_training_epochs=1, logging_steps=1, callback=[Meddler()])
    with pytest.raises(AttributeError, match="read-only for callbacks \\(global_step\\)"):
        trainer.train()
    assert trainer.state.global_step == 1
    sent = pickle.loads(pickle.dumps(copy.copy(trainer.callbacks.callbacks[0].state)))  # e.g. to a worker process
    assert sent.global_step == 1 and not hasattr(sent, "no_such_field")
    with pytest.raises(AttributeError):
        sent.global_step = 2


def test_control_requests_stop_save_and_evaluate(make_trainer):
    class Steer(TrainerCallback):
        def on_log(self, logs, step):
            if step == 2:
                self.control.request_save()
            if step == 3:
                self.control.request_evaluate()
            if step == 5:
                self.control.request_stop("enough")

    recorder = Recorder()
    trainer = make_trainer(nb_training_epochs=3, logging_steps=1, callback=[Steer(), recorder])
    trainer.train()
    assert trainer.state.global_step == 5 and trainer.state.stop_reason == "enough"
    assert [e[1] for e in recorder.of("evaluate")] == [3, 5]
    assert [e[1].rsplit("-", 1)[-1] for e in recorder.of("save")] == ["0000002", "0000003", "0000005"]  # period 1: each evaluation saves


def test_on_log_reports_loss_learning_rate_grad_norm_and_throughput(make_trainer):
    recorder = Recorder()
    make_trainer(nb_training_epochs=1, logging_steps=2, callback=[recorder]).train()
    logs = recorder.of("log")
    assert [e[1] for e in logs] == [2, 4, 6, 8]
    assert {"loss", "learning_rate", "grad_norm", "samples_per_second", "steps_per_second", "epoch"} <= set(logs[0][2])
    assert logs[-1][2]["epoch"] == pytest.approx(1.0)
    assert all(math.isfinite(e[2]["grad_norm"]) and e[2]["grad_norm"] > 0 for e in logs)


def test_gradient_clipping_bounds_the_update(make_trainer):
    class SGDToy(ToyTextClassifier):
        def configure_optimizer(self, lr):
            return torch.optim.SGD(self.model.parameters(), lr=lr)

    component = SGDToy(dropout=0.0)
    before = [p.detach().clone() for p in component.model.parameters()]
    make_trainer(component=component, learning_rate=1.0, max_grad_norm=0.05, max_steps=1, eval_data=None).train()
    delta = torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(component.model.parameters(), before)))
    assert delta.item() == pytest.approx(0.05, rel=1e-3)


def test_weight_decay_skips_biases_and_layernorm(make_trainer):
    trainer = make_trainer(weight_decay=0.1)
    decay, no_decay = trainer.optimizer.param_groups
    model = trainer.component.model
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model["embed"].weight), id(model["out"].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(model["norm"].weight), id(model["norm"].bias), id(model["out"].bias)}


def test_bf16_autocast_runs_the_forward_in_bfloat16(make_trainer):
    seen = []

    class Probe(ToyTextClassifier):
        def forward(self, input_batch, return_loss, eval_mode):
            output, loss = super().forward(input_batch, return_loss, eval_mode)
            seen.append(output["logits"].dtype)
            return output, loss

    history = make_trainer(component=Probe(), precision="bf16", nb_training_epochs=1).train()
    assert set(seen) == {torch.bfloat16} and math.isfinite(history[0]["train"]["loss"])


def test_fp16_without_cuda_is_a_clear_error(make_trainer):
    with pytest.raises(ConfigError, match="precision.*fp16 needs a CUDA device"):
        make_trainer(precision="fp16")


def test_nonfinite_loss_stops_with_the_step_or_skips_the_batch(make_trainer):
    class Exploding(ToyTextClassifier):
        calls = 0

        def forward(self, input_batch, return_loss, eval_mode):
            output, loss = super().forward(input_batch, return_loss, eval_mode)
            if not eval_mode:
                Exploding.calls += 1
                if Exploding.calls == 3:
                    loss = loss * float("nan")
            return output, loss

    with pytest.raises(NonFiniteLossError, match="at optimizer step 3 \\(epoch 1, batch 2\\)"):
        make_trainer(component=Exploding()).train()
    Exploding.calls = 0
    trainer = make_trainer(component=Exploding(), on_nonfinite_loss="skip", nb_training_epochs=1)
    history = trainer.train()
    assert trainer.skipped_batches == 1 and math.isfinite(history[0]["train"]["loss"])


def test_exception_reaches_on_exception_and_propagates(make_trainer):
    seen = []

    class Watcher(TrainerCallback):
        def on_exception(self, exception):
            seen.append(exception)

    class Broken(ToyTextClassifier):
        def forward(self, input_batch, return_loss, eval_mode):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        make_trainer(component=Broken(), callback=[Watcher()]).train()
    assert [str(e) for e in seen] == ["boom"]


def test_same_seed_same_run_other_seed_other_run(make_trainer, tmp_path):
    def final_loss(seed, name):
        component = ToyTextClassifier(dropout=0.3)
        return make_trainer(component=component, seed=seed, output_dir=str(tmp_path / name)).train()[-1]

    assert final_loss(5, "a") == final_loss(5, "b")
    assert final_loss(5, "c") != final_loss(6, "d")


def test_deterministic_option_turns_on_torch_determinism(make_trainer):
    try:
        make_trainer(deterministic=True, seed=1)
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


def test_group_by_length_puts_similar_lengths_together(make_trainer):
    data = [(" ".join(["the"] * n), n % 2) for n in range(1, 81)]
    grouped = make_trainer(train=data, group_by_length=True, batch_size=8)
    plain = make_trainer(train=data, batch_size=8)

    def padding(trainer):
        lengths = [len(item["input_ids"]) for item in trainer.train_items]
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in trainer.sampler.batches())

    assert padding(grouped) < padding(plain) / 4


def test_preprocess_runs_once_when_cached(make_trainer, tmp_path):
    counter = {"n": 0}

    class Counting(ToyTextClassifier):
        def preprocess(self, data_item):
            counter["n"] += 1
            return super().preprocess(data_item)

    make_trainer(component=Counting(), nb_training_epochs=3).train()
    assert counter["n"] == 64 + 24
    counter["n"] = 0
    # a second run: a folder of its own (a new run never replaces an earlier run's checkpoints)
    make_trainer(component=Counting(), nb_training_epochs=3, cache_preprocessed=False,
                 output_dir=str(tmp_path / "uncached")).train()
    assert counter["n"] > 3 * 64


def test_progress_bars_show_when_forced_and_stay_quiet_off_a_terminal(make_trainer, capsys, tmp_path):
    from medkit_exp.training import DefaultPrinterCallback

    make_trainer(nb_training_epochs=1, callback=[DefaultPrinterCallback(progress_bar=True)]).train()
    assert "step/s" in capsys.readouterr().err  # the run's bar counts optimizer steps
    make_trainer(nb_training_epochs=1, callback=[DefaultPrinterCallback()], output_dir=str(tmp_path / "quiet")).train()
    quiet = capsys.readouterr().err  # pytest's stderr is not a terminal
    assert "step/s" not in quiet and "batch/s" not in quiet


def test_batchdata_rows_columns_slices_and_device():
    batch = BatchData(x=torch.arange(3), y=["a", "b", "c"])
    assert batch[1]["y"] == "b" and batch["y"] == ["a", "b", "c"]
    assert batch[1:]["y"] == ["b", "c"] and isinstance(batch[1:], BatchData)
    assert batch.to_device("cpu")["x"].device.type == "cpu"


@pytest.mark.slow  # inductor compiles C++ kernels: ~45 s on 2 cores
def test_compile_compiles_the_exposed_model_in_place_and_checkpoints_stay_loadable(make_trainer):
    class Compiled(ToyTextClassifier):
        def forward(self, input_batch, return_loss, eval_mode):  # through the module, so compile applies
            self.model.train(not eval_mode)
            logits = self.model(input_batch)
            return BatchData(logits=logits), self.loss(logits, input_batch["labels"]) if return_loss else None

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.out = torch.nn.EmbeddingBag(64, 8), torch.nn.Linear(8, 2)

        def forward(self, batch):
            return self.out(self.embed(batch["input_ids"], batch["offsets"]))

    component = Compiled()
    component.model = Net()
    trainer = make_trainer(component=component, compile=True, nb_training_epochs=1)
    assert component.model._compiled_call_impl is not None
    trainer.train()
    saved = torch.load(f"{trainer.last_checkpoint}/toy_model.pt")
    assert set(saved) == {"embed.weight", "out.weight", "out.bias"}  # no _orig_mod. prefix


def test_compile_needs_an_exposed_model(make_trainer):
    with pytest.raises(ConfigError, match="compile"):
        make_trainer(component=HiddenModelClassifier(), compile=True)


def test_retain_freed_memory_settings_are_accepted_by_glibc():
    import platform

    import pytest

    from medkit_exp.training.memory import retain_freed_memory

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    assert retain_freed_memory() is True  # mallopt returned 1 for each setting
