"""precision="auto": bf16 where the device computes bfloat16 natively, 32 elsewhere; the Trainer
holds, and an application run prints and records, the precision it used."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import medkit_exp.training.precision as precision
from medkit_exp.training.precision import (
    NATIVE_BF16_CPU_FLAGS,
    cpu_flags,
    describe_precision,
    has_native_bf16,
    resolve_precision,
)
from tests.training.toy import TinyBertTagger, token_data, toy_trainer_builder

CPU = torch.device("cpu")
OTHER_FLAGS = ["fpu", "sse2", "avx2", "avx512f", "avx512bw", "avx512_vnni", "amx_tile", "amx_int8"]


def test_auto_on_this_cpu_follows_its_flags():
    native = bool(set(NATIVE_BF16_CPU_FLAGS) & cpu_flags())
    assert has_native_bf16(CPU) is native
    assert resolve_precision("auto", CPU) == ("bf16" if native else "32")
    line = describe_precision("auto", CPU)
    assert line.startswith(f"precision: auto -> {resolve_precision('auto', CPU)} (CPU has")


@given(flags=st.sets(st.sampled_from(OTHER_FLAGS + list(NATIVE_BF16_CPU_FLAGS))))
def test_auto_is_bf16_exactly_when_a_native_bf16_flag_is_there(flags):
    flags = frozenset(flags)
    native = bool(set(NATIVE_BF16_CPU_FLAGS) & flags)
    assert resolve_precision("auto", CPU, flags) == ("bf16" if native else "32")
    for explicit in ("32", "bf16", "fp16"):  # a precision set by hand is used as it is
        assert resolve_precision(explicit, CPU, flags) == explicit


def test_auto_without_the_flags_is_32_and_says_why():
    flags = frozenset({"avx2", "avx512f", "avx512_vnni"})
    assert resolve_precision("auto", CPU, flags) == "32"
    assert describe_precision("auto", CPU, flags) == (
        "precision: auto -> 32 (CPU has no native bfloat16: no avx512_bf16 or amx_bf16 flag)")
    assert describe_precision("auto", CPU, frozenset({"amx_bf16"})) == (
        "precision: auto -> bf16 (CPU has native bfloat16: amx_bf16)")


@pytest.mark.parametrize("flags", [frozenset(), frozenset({"avx512_bf16"})])
def test_the_trainer_holds_the_resolved_precision(tmp_path, monkeypatch, flags):
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)  # the machine the Trainer sees
    trainer = toy_trainer_builder(tmp_path / "run")(precision="auto", nb_training_epochs=1)
    assert trainer.precision == ("bf16" if flags else "32")
    assert trainer.config.precision == "auto"  # the config stays as set
    assert trainer.state.precision == trainer.precision  # what callbacks see


def test_a_library_run_records_the_precision_it_used(tmp_path, monkeypatch, caplog):
    """Without the application, MLflowCallback logs the TrainerConfig as given (trainer.precision
    auto) and trainer.precision_used; the Trainer logs the line saying why."""
    from mlflow import MlflowClient

    from medkit_exp.tracking import MLflowCallback

    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512f"}))  # a CPU without native bf16
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    callback = MLflowCallback(uri, "library-precision", plots=False, log_checkpoints=False,
                              artifact_location=str(tmp_path / "artifacts"))
    with caplog.at_level("INFO", logger="medkit_exp.training.trainer"):
        trainer = toy_trainer_builder(tmp_path / "run")(precision="auto", nb_training_epochs=1, callback=[callback])
    trainer.train()
    assert describe_precision("auto", trainer.device) in caplog.messages
    params = MlflowClient(uri).get_run(callback.run_id).data.params
    assert (params["trainer.precision"], params["trainer.precision_used"]) == ("auto", "32")


def test_bf16_training_of_a_tiny_bert_computes_in_bf16_and_its_loss_is_finite(tmp_path):
    component = TinyBertTagger(vocab_size=200, hidden_size=32)
    dtypes = set()
    layer = component.model.bert.encoder.layer[0].intermediate.dense
    layer.register_forward_hook(lambda module, inputs, output: dtypes.add(output.dtype))
    trainer = toy_trainer_builder(tmp_path / "run")(
        component=component, train=token_data(16, 0, vocab_size=200, lengths=(4, 12)), eval_data=None,
        metrics=False, precision="bf16", batch_size=4, nb_training_epochs=1, learning_rate=1e-3)
    history = trainer.train()
    assert dtypes == {torch.bfloat16}  # autocast is on: the linear layers compute in bf16
    assert trainer.state.global_step == 4 and math.isfinite(history[-1]["train"]["loss"])
    assert all(p.dtype == torch.float32 for p in component.model.parameters())  # fp32 master weights


def test_an_app_run_prints_and_records_the_precision_it_used(tmp_path, monkeypatch, caplog):
    from hydra import compose, initialize_config_dir
    from mlflow import MlflowClient

    import medkit_exp.training as training
    from medkit_exp.cli import config_dir, train

    monkeypatch.chdir(tmp_path)  # MLflow's defaults are relative to the working folder
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    made = []

    class RecordedTrainer(training.Trainer):  # the real class, which records its instance
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(training, "Trainer", RecordedTrainer)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=[
            "+experiment=ner", "debug=fast", "trainer.max_steps=1", f"paths.output_dir={tmp_path / 'run'}",
            f"tracking.tracking_uri={uri}", "tracking.experiment_name=precision-auto", "tracking.log_model=false",
            "tracking.plots=false", "tracking.log_checkpoints=false", "tracking.model_hooks.0.dev_report=false",
        ])
    assert cfg.trainer.precision == "auto"  # the application's default
    with caplog.at_level("INFO", logger="medkit_exp.training.trainer"):
        train(cfg)
    (trainer,) = made
    used = resolve_precision("auto", trainer.device)
    assert trainer.precision == used
    assert caplog.messages.count(describe_precision("auto", trainer.device)) == 1  # said once, by the Trainer
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("precision-auto").experiment_id])
    assert run.data.params["trainer.precision"] == "auto"
    assert run.data.params["trainer.precision_used"] == used
