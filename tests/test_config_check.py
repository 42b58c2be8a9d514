"""Config mistakes fail before any work: unknown keys (with or without ``+``) in every group, keys
derived from another key, options that would be ignored; one line, exit code 2, no traceback."""

from __future__ import annotations

import dataclasses
import string
import typing

import pytest
from hydra import compose, initialize_config_dir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medkit_exp.cli import config_dir
from medkit_exp.config_check import check_command_line, check_config
from medkit_exp.config_keys import check_key, schema_fields
from medkit_exp.errors import ConfigError
from medkit_exp.schema import EvaluateConfig, MedkitExpConfig, PredictConfig
from tests.test_cli import run_cli

# Hydra's own files in a run folder: all a refused run may leave.
HYDRA_FILES = {".hydra", ".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "cli.log"}
# (group, misspelt key, the key meant): every group, nested keys and top-level keys.
MISSPELT = [
    ("paths", "paths.data_dirr", "paths.data_dir"),
    ("component", "component.tagging_schem", "component.tagging_scheme"),
    ("data", "data.max_documnts", "data.max_documents"),
    ("trainer", "trainer.batch_sise", "trainer.batch_size"),
    ("optimizer", "optimizer.weight_decy", "optimizer.weight_decay"),
    ("scheduler", "scheduler.warmup_ration", "scheduler.warmup_ratio"),
    ("metrics", "metrics.nme", "metrics.name"),
    ("callbacks", "callbacks.printer.progress_barr", "callbacks.printer.progress_bar"),
    ("tracking", "tracking.log_modl", "tracking.log_model"),
    ("top-level", "seeed", "seed"),
]


def composed(*overrides: str, config_name: str = "config"):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name, overrides=["paths.output_dir=/tmp/unused", *overrides])


def left_in(folder) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


@pytest.mark.parametrize("plus", ["+", ""], ids=["added", "set"])
@pytest.mark.parametrize(("group", "key", "meant"), MISSPELT, ids=[m[0] for m in MISSPELT])
def test_unknown_key_in_any_group_is_one_line_exit_2_before_any_work(tmp_path, group, key, meant, plus):
    result = run_cli(tmp_path, "+experiment=ner", "debug=fast", f"{plus}{key}=8", "hydra.run.dir=run",
                     f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}")
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"Error: config key '{key}': ") and f"; did you mean {meant}" in errors[0], errors
    assert "Traceback" not in result.stderr
    # nothing loaded, nothing written: Hydra's own files at most (the check runs before Hydra composes)
    assert left_in(tmp_path) <= {"run", *(f"run/{name}" for name in HYDRA_FILES)}, left_in(tmp_path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["+component.dropout=0.1"], "config key 'component.dropout': not a parameter of "
                                     "medkit_exp.ner.tagger.HFEntityMatcherTrainable"),
        (["component.dropout=0.1"], "config key 'component.dropout': not in conf/component"),
        (["+trainer.learning_rate=0.1"], "config key 'trainer.learning_rate': takes its value from optimizer.lr"),
        (["trainer.max_grad_norm=2"], "config key 'trainer.max_grad_norm': takes its value from optimizer.max_grad_norm"),
        (["optimizer.name=adam"], "config key 'optimizer.name': unknown optimizer 'adam'; did you mean adamw?"),
        (["optimizer.momentum=0.9"], "config key 'optimizer.momentum': not used by optimizer 'adamw'"),
        (["scheduler=plateau", "scheduler.warmup_ratio=0.2"], "config key 'scheduler.warmup_ratio': not used by scheduler 'plateau'"),
        (["+hparams_search=ner_optuna", "+trainer.batch_sise=8"], "config key 'trainer.batch_sise': unknown config key"),
    ],
)
def test_keys_refused_before_any_work(tmp_path, args, message):
    result = run_cli(tmp_path, "+experiment=ner", "debug=fast", *args, "hydra.run.dir=run", "hydra.sweep.dir=sweep",
                     f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}")
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"Error: {message}" in result.stderr and "Traceback" not in result.stderr
    assert left_in(tmp_path) <= {"run", *(f"run/{name}" for name in HYDRA_FILES)}, left_in(tmp_path)


def test_trainer_optimisation_keys_are_the_optimizer_groups():
    cfg = composed("+experiment=ner", "optimizer.lr=3e-4", "optimizer.weight_decay=0.05", "optimizer.max_grad_norm=null")
    check_config(cfg, MedkitExpConfig)
    assert (cfg.trainer.learning_rate, cfg.trainer.weight_decay, cfg.trainer.max_grad_norm) == (3e-4, 0.05, None)
    gpu = composed("+experiment=ner", "trainer=gpu", "optimizer.lr=2e-5")
    assert gpu.trainer.learning_rate == 2e-5


@pytest.mark.parametrize(("config_name", "schema"), [("config", MedkitExpConfig), ("evaluate", EvaluateConfig),
                                                     ("predict", PredictConfig)])
def test_every_application_config_passes_and_refuses_added_keys(config_name, schema):
    import medkit_exp.evaluate  # noqa: F401 - registers the evaluate and predict schemas
    import medkit_exp.predict  # noqa: F401

    check_config(composed("+experiment=ner", config_name=config_name), schema)
    with pytest.raises(ConfigError, match=r"config key 'trainer.batch_sise': unknown config key; did you mean trainer.batch_size"):
        check_config(composed("+experiment=ner", "+trainer.batch_sise=8", config_name=config_name), schema)
    with pytest.raises(ConfigError, match=r"config key 'sed': unknown config key; did you mean seed\?"):
        check_command_line(schema, ["+experiment=ner", "sed=1"])


def test_open_mappings_groups_and_hydra_keys_are_not_refused():
    check_command_line(MedkitExpConfig, ["+experiment=ner", "trainer=gpu", "+tracking.tags.team=nlp",
                                         "+data.label_map.Disease=DISO", "hydra.job.chdir=false", "~seed",
                                         "--multirun", "optimizer.lr=1e-4,2e-4"])
    check_command_line(MedkitExpConfig, ["--help", "nonsense=1"])  # Hydra runs no task
    check_config(composed("+experiment=ner", "+tracking.tags.team=nlp", "+data.label_map.Disease=DISO"), MedkitExpConfig)


def all_keys(schema: type, prefix: str = "") -> list[str]:
    keys = []
    for name, kind in schema_fields(schema).items():
        if dataclasses.is_dataclass(kind):
            keys += all_keys(kind, f"{prefix}{name}.")
        elif name != "component":
            keys.append(f"{prefix}{name}")
    return keys


KEYS = all_keys(MedkitExpConfig)
ALL = set(KEYS) | {k.rsplit(".", 1)[0] for k in KEYS if "." in k}


@st.composite
def misspelt_keys(draw) -> tuple[str, str]:
    """A valid key with its last part changed by one to three edits (never into another valid key)."""
    key = draw(st.sampled_from(KEYS))
    head, _, last = key.rpartition(".")
    for _ in range(draw(st.integers(1, 3))):
        position = draw(st.integers(0, len(last)))
        letter = draw(st.sampled_from(string.ascii_lowercase + "_"))
        edit = draw(st.sampled_from(["insert", "replace", "delete"]))
        if edit == "insert" or not last:
            last = last[:position] + letter + last[position:]
        elif edit == "replace":
            last = last[:position] + letter + last[position + 1:]
        else:
            last = last[:position] + last[position + 1:]
    misspelt = f"{head}.{last}" if head else last
    return key, misspelt


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(misspelt_keys(), st.booleans())
def test_misspelt_keys_are_always_refused_naming_the_key(pair, added):
    key, misspelt = pair
    if misspelt in ALL or not misspelt.rpartition(".")[2].isidentifier() or misspelt.split(".")[0] == "component":
        return  # still a valid key (or not a key at all)
    with pytest.raises(ConfigError) as caught:
        check_command_line(MedkitExpConfig, [f"{'+' if added else ''}{misspelt}=1"])
    assert caught.value.key == misspelt
    message = str(caught.value)
    assert message.count("\n") == 0 and (" did you mean " in message or " valid keys: " in message)
    # the intended key is offered whenever the slip is small (one edit of a long enough name)
    if len(key.rpartition(".")[2]) >= 6 and _distance(key, misspelt) == 1:
        assert key in message, message


def _distance(a: str, b: str) -> int:
    """Levenshtein distance."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def test_check_key_types_resolve_for_every_schema():
    for schema in (MedkitExpConfig, EvaluateConfig, PredictConfig):
        assert typing.get_type_hints(schema) and schema_fields(schema)["trainer"].__name__ == "TrainerConfig"
    with pytest.raises(ConfigError, match="did you mean checkpoint"):
        check_key("checkpont", EvaluateConfig)


@pytest.mark.parametrize("module", ["medkit_exp.evaluate", "medkit_exp.predict"])
@pytest.mark.parametrize("plus", ["+", ""], ids=["added", "set"])
def test_evaluate_and_predict_refuse_unknown_keys_in_one_line_before_any_work(tmp_path, module, plus):
    target = "checkpoint" if module.endswith("evaluate") else "model"
    result = run_cli(tmp_path, "+experiment=ner", f"{target}={tmp_path / 'no-such-run'}", f"{plus}batch_sise=3",
                     "hydra.run.dir=run", module=module)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [errors[0]] and errors[0].startswith("Error: config key 'batch_sise': ") and "batch_size" in errors[0]
    assert "Traceback" not in result.stderr
    assert left_in(tmp_path) <= {"run", *(f"run/{name}" for name in HYDRA_FILES)}, left_in(tmp_path)


# ----------------------------------------------------------------------------- nested entities (issue 18)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data.nested=keep"], "config key 'data.nested': 'keep' keeps nested and overlapping entities, which the "
                               "flat tagger (one tag per word) cannot learn: use component=hf_nested_tagger"),
        (["component=hf_nested_tagger", "metrics=seqeval"], "config key 'metrics.name': 'seqeval' scores flat tag "
                                                            "sequences, not the nested tagger's layers"),
        (["component=hf_nested_tagger", "component.nesting_depth=1"], "config key 'component.nesting_depth': "
                                                                      "must be an integer >= 2"),
        (["component=hf_nested_tagger", "component.tag_subtokens=true"], "config key 'component.tag_subtokens': "
                                                                         "the nested tagger tags each word's first"),
    ],
    ids=["flat-tagger-nested-keep", "nested-tagger-seqeval", "nested-depth-1", "nested-tag-subtokens"],
)
def test_a_tagger_that_cannot_learn_the_data_as_configured_is_one_line_exit_2(tmp_path, args, message):
    result = run_cli(tmp_path, "+experiment=ner", "debug=fast", *args, "hydra.run.dir=run",
                     f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}")
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: {message}"), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert left_in(tmp_path) <= {"run", *(f"run/{name}" for name in HYDRA_FILES)}, left_in(tmp_path)


def test_quaero_experiment_composes_with_the_nested_tagger(tmp_path):
    cfg = composed("+experiment=ner_quaero", f"paths.data_dir={tmp_path}")
    check_config(cfg, MedkitExpConfig)  # the nested tagger with data.nested=keep passes the checks
    assert cfg.component._target_ == "medkit_exp.ner.nested_tagger.NestedEntityTagger"
    assert (cfg.data.nested, cfg.data.discontinuous, cfg.component.nesting_depth) == ("keep", "drop", 3)
    with pytest.raises(ConfigError, match="component=hf_nested_tagger"):
        check_config(composed("+experiment=ner_quaero", "component=hf_tagger", f"paths.data_dir={tmp_path}"),
                     MedkitExpConfig)
    check_config(composed("+experiment=ner_quaero", "component=hf_tagger", "data.nested=keep_longest",
                          f"paths.data_dir={tmp_path}"), MedkitExpConfig)
    # evaluate and predict load a checkpoint: a flat component group with data.nested=keep is fine there
    import medkit_exp.evaluate  # noqa: F401 - registers the evaluate and predict schemas
    import medkit_exp.predict  # noqa: F401

    for config_name, schema in (("evaluate", EvaluateConfig), ("predict", PredictConfig)):
        check_config(composed("+experiment=ner", "data.nested=keep", config_name=config_name), schema)
