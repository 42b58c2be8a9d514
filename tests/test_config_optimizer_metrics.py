"""optimizer.name and metrics.name select what runs: the optimizer the Trainer uses is the one the
record names, with the recorded lr, momentum and weight decay; metrics.name=seqeval computes the
entity metrics with seqeval itself (optional: without it, one line naming the key and the extra)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from medkit_exp.conf_location import config_dir
from medkit_exp.cli import build_component, build_metrics, build_trainer_config, run_params
from medkit_exp.config_check import check_config
from medkit_exp.errors import ConfigError
from medkit_exp.ner.data import NERDataConfig, load_corpus
from medkit_exp.ner.metrics import EntityMetricsComputer
from medkit_exp.ner.seqeval_metrics import SeqevalMetricsComputer
from medkit_exp.schema import MedkitExpConfig
from medkit_exp.training import Trainer
from medkit_exp.training.optim import build_optimizer, use_optimizer
from tests.test_cli import run_cli


def composed(tmp_path: Path, *overrides: str):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose("config", overrides=["+experiment=ner", "debug=fast", f"paths.output_dir={tmp_path / 'run'}",
                                            "tracking=none", *overrides])


@pytest.mark.parametrize(("preset", "expected"), [(["optimizer=sgd", "optimizer.weight_decay=0.02"], torch.optim.SGD),
                                                  (["optimizer.weight_decay=0.03"], torch.optim.AdamW)])
def test_the_optimizer_used_is_the_one_recorded(tmp_path, tiny_bert_dir, preset, expected):
    cfg = composed(tmp_path, f"component.model_name_or_path={tiny_bert_dir}", "trainer.max_steps=2", *preset)
    check_config(cfg, MedkitExpConfig)
    recorded = run_params(OmegaConf.to_container(cfg, resolve=True))["optimizer"]
    component = build_component(cfg.component, cfg.optimizer)
    splits = load_corpus(NERDataConfig(max_documents=8))
    trainer = Trainer(component, build_trainer_config(cfg), splits["train"], splits["dev"],
                      metrics_computer=build_metrics(cfg.metrics, component), callback=[])
    trainer.train()
    optimizer = trainer.optimizer
    assert type(optimizer) is expected
    decayed, plain = optimizer.param_groups
    assert optimizer.defaults["lr"] == recorded["lr"]
    assert decayed["weight_decay"] == recorded["weight_decay"] and plain["weight_decay"] == 0.0
    assert len(plain["params"]) > 0 and len(decayed["params"]) > 0  # biases and LayerNorms: no decay
    if expected is torch.optim.SGD:
        assert recorded == {"name": "sgd", "lr": 0.01, "weight_decay": 0.02, "max_grad_norm": 1.0, "momentum": 0.9}
        assert decayed["momentum"] == plain["momentum"] == recorded["momentum"]
        assert all("momentum_buffer" in state for state in optimizer.state.values())  # SGD stepped
    else:
        assert "momentum" not in recorded  # AdamW has none: not recorded (and must keep its default)
        assert all("exp_avg" in state for state in optimizer.state.values())


def test_sgd_through_the_command_line_writes_sgd_state_in_the_checkpoint(tmp_path):
    result = run_cli(tmp_path, "+experiment=ner", "debug=fast", "optimizer=sgd", "optimizer.momentum=0.8",
                     "scheduler=none", "tracking=none", "hydra.run.dir=run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert OmegaConf.load(tmp_path / "run" / "config_resolved.yaml").optimizer.name == "sgd"
    (state_file,) = sorted((tmp_path / "run" / "checkpoints").glob("*/optimizer.pt"))[-1:]
    state = torch.load(state_file, weights_only=False)
    assert {group["momentum"] for group in state["param_groups"]} == {0.8}
    assert {group["lr"] for group in state["param_groups"]} == {0.01}
    assert [group["weight_decay"] for group in state["param_groups"]] == [0.0, 0.0]
    assert all("momentum_buffer" in item and "exp_avg" not in item for item in state["state"].values())


class NoModel:
    """A component that exposes no model: its own optimizer must be of the named class."""

    def __init__(self):
        self.weights = torch.nn.Linear(2, 2)

    def configure_optimizer(self, lr: float) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.weights.parameters(), lr=lr)


def test_a_component_without_model_keeps_its_optimizer_only_when_it_is_the_named_one():
    assert type(build_optimizer(use_optimizer(NoModel(), "adamw"), 0.1, 0.0)) is torch.optim.AdamW
    with pytest.raises(ConfigError, match=r"'optimizer.name': 'sgd', but the component exposes no `model`"):
        build_optimizer(use_optimizer(NoModel(), "sgd"), 0.1, 0.0)
    with pytest.raises(ConfigError, match=r"'optimizer.momentum': is SGD's"):
        use_optimizer(NoModel(), "adamw", momentum=0.9)


# ----------------------------------------------------------------------------- seqeval
LABELS = ["DISO", "CHEM"]


@st.composite
def tag_pairs(draw, scheme: str):
    prefixes = "BI" if scheme == "iob2" else "BILU"
    tags = ["O", *(f"{p}-{label}" for p in prefixes for label in LABELS)]
    lengths = draw(st.lists(st.integers(0, 12), min_size=1, max_size=6))
    references = [draw(st.lists(st.sampled_from(tags), min_size=n, max_size=n)) for n in lengths]
    predictions = [draw(st.lists(st.sampled_from(tags), min_size=n, max_size=n)) for n in lengths]
    return tags, references, predictions


def seqeval_direct(references, predictions, scheme: str) -> dict[str, float]:
    """The metric names, computed here with seqeval's own functions."""
    import seqeval.scheme
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.metrics.v1 import precision_recall_fscore_support

    options = {"mode": "strict", "scheme": getattr(seqeval.scheme, {"iob2": "IOB2", "bilou": "BILOU"}[scheme]),
               "zero_division": 0}
    scores = {}
    for prefix, average in (("", "micro"), ("macro_", "macro")):
        for name, function in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score)):
            value = float(function(references, predictions, average=average, **options))
            scores[prefix + name] = 0.0 if value != value else value
    from seqeval.scheme import Entities

    seen = sorted(set().union(*(Entities(seqs, options["scheme"]).unique_tags for seqs in (references, predictions))))
    if seen:
        p, r, f, s = precision_recall_fscore_support(references, predictions, average=None, **options)
        per_label = dict(zip(sorted(seen), zip(p, r, f, s)))
    else:
        per_label = {}
    for label in LABELS:
        values = per_label.get(label, (0.0, 0.0, 0.0, 0))
        scores.update({f"labels/{label}/{m}": float(v) for m, v in zip(("precision", "recall", "f1", "support"), values)})
    return scores


@pytest.mark.parametrize("scheme", ["iob2", "bilou"])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_seqeval_computer_equals_seqeval_and_has_the_entity_metric_names(scheme, data):
    tags, references, predictions = data.draw(tag_pairs(scheme))
    computer = SeqevalMetricsComputer(tags, tagging_scheme=scheme)
    scores = computer.compute({"references": references, "predictions": predictions})
    expected = seqeval_direct(references, predictions, scheme)
    entity = EntityMetricsComputer(tags, tagging_scheme=scheme)
    supports = {f"labels/{label}/support": float(count) for label, count in computer.supports.items()}
    assert set(scores) == set(entity.metric_names) and set(scores) | set(supports) == set(expected)
    for name, value in expected.items():
        assert {**scores, **supports}[name] == pytest.approx(value, abs=1e-12), name


def test_metrics_name_builds_the_named_computer(tmp_path, tiny_bert_dir):
    cfg = composed(tmp_path, f"component.model_name_or_path={tiny_bert_dir}", "metrics=seqeval")
    component = build_component(cfg.component)
    assert type(build_metrics(cfg.metrics, component)) is SeqevalMetricsComputer
    assert type(build_metrics(OmegaConf.create({"name": "entity"}), component)) is EntityMetricsComputer


def test_without_seqeval_metrics_seqeval_is_one_line_naming_the_key_and_the_extra(tmp_path, monkeypatch):
    cfg = composed(tmp_path, "metrics=seqeval")
    check_config(cfg, MedkitExpConfig)
    monkeypatch.setitem(sys.modules, "seqeval", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"^config key 'metrics.name': 'seqeval' needs seqeval, which is not "
                                          r"installed: pip install 'medkit_exp\[seqeval\]'$"):
        check_config(cfg, MedkitExpConfig)


def test_without_seqeval_the_command_line_stops_before_any_work(tmp_path):
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['seqeval'] = None\n")
    pythonpath = os.pathsep.join([str(hide), str(Path(__file__).resolve().parents[1])])
    result = run_cli(tmp_path, "+experiment=ner", "debug=fast", "metrics=seqeval", "tracking=none", "hydra.run.dir=run",
                     env={"PYTHONPATH": pythonpath})
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("Error: config key 'metrics.name': 'seqeval' needs seqeval"), result.stderr
    assert "medkit_exp[seqeval]" in result.stderr and not (tmp_path / "run").exists()
