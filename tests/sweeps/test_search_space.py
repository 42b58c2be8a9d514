"""The search space grammar (Hydra's Optuna sweeper's), its validation against the composed
config, and the samplers, pruners and storages the config names: no trial needed."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from medkit_exp.cli import config_dir
from medkit_exp.errors import ConfigError
from medkit_exp.sweeps.factories import make_pruner, make_sampler, make_storage, redact_url
from medkit_exp.sweeps.search_space import (
    format_override,
    grid_space,
    parse_search_space,
    probe_values,
    validate_keys,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("interval(0.0, 0.1)", FloatDistribution(0.0, 0.1)),
        ("tag(log, interval(1e-5, 1e-3))", FloatDistribution(1e-5, 1e-3, log=True)),
        ("int(interval(8, 64))", IntDistribution(8, 64)),
        ("tag(int, interval(8, 64))", IntDistribution(8, 64)),
        ("tag(log, int(interval(8, 64)))", IntDistribution(8, 64, log=True)),
        ("range(8, 64, step=8)", IntDistribution(8, 64, step=8)),
        ("range(0.1, 0.5, step=0.1)", FloatDistribution(0.1, 0.5, step=0.1)),
        ("choice(8, 16, 32)", CategoricalDistribution([8, 16, 32])),
        ("8,16,32", CategoricalDistribution([8, 16, 32])),
        ("choice(linear, cosine)", CategoricalDistribution(["linear", "cosine"])),
    ],
)
def test_hydra_optuna_grammar_gives_optuna_distributions(value, expected):
    space = parse_search_space({"some.key": value})
    assert space.distributions == {"some.key": expected}
    assert space.fixed == {}


def test_command_line_adds_replaces_and_fixes_parameters():
    space = parse_search_space(
        {"optimizer.lr": "tag(log, interval(1e-5, 1e-3))", "trainer.batch_size": "choice(8, 16)"},
        ["+experiment=ner", "trainer.batch_size=4", "optimizer.weight_decay=interval(0, 0.1)", "scheduler=linear,cosine"],
    )
    assert set(space.distributions) == {"optimizer.lr", "optimizer.weight_decay", "scheduler"}
    assert space.fixed == {"+experiment": "+experiment=ner", "trainer.batch_size": "trainer.batch_size=4"}
    overrides = space.overrides({"optimizer.lr": 3e-4, "optimizer.weight_decay": 0.05, "scheduler": "cosine"})
    assert overrides == [
        "+experiment=ner", "trainer.batch_size=4", "optimizer.lr=0.0003", "optimizer.weight_decay=0.05", "scheduler=cosine",
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("interval(0.1, 0.1)", "empty interval"),
        ("interval(1e-3, 1e-5)", "empty interval"),
        ("range(5, 5)", "empty range"),
        ("range(1, 10, step=0)", "step must be > 0"),
        ("tag(log, interval(0, 1))", "log scale needs low > 0"),
        ("tag(log, range(1, 10))", "log scale cannot have a step"),
        ("tag(exp, interval(0, 1))", "unknown tag"),
        ("choice(a, a)", "lists a value twice"),
        ("choice()", "empty choice"),
        ("interval(0, 1", "cannot parse"),
    ],
)
def test_bad_ranges_name_the_parameter(value, message):
    with pytest.raises(ConfigError, match=message) as caught:
        parse_search_space({"optimizer.lr": value})
    assert caught.value.key == "hydra.sweeper.params.optimizer.lr"


def test_values_are_written_in_hydra_grammar():
    assert format_override("a", 1e-5) == "a=1e-05"
    assert format_override("a", True) == "a=true"
    assert format_override("a", None) == "a=null"
    assert format_override("a", "cosine") == "a=cosine"
    assert format_override("a", "two words") == "a='two words'"
    assert format_override("a", "null") == "a='null'"


@pytest.fixture(scope="module")
def composed():
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        yield compose("config", overrides=["+experiment=ner"], return_hydra_config=True)


def test_unknown_config_path_is_named_with_near_keys(composed):
    space = parse_search_space({"optimizer.lrr": "interval(0.1, 0.2)"})
    with pytest.raises(ConfigError, match=r"unknown config key 'optimizer.lrr'; did you mean optimizer.lr") as caught:
        validate_keys(space, composed, {})
    assert caught.value.key == "hydra.sweeper.params.optimizer.lrr"


def test_config_group_choices_must_be_options_of_the_group(composed):
    groups = {"scheduler": ["constant", "cosine", "linear", "none", "plateau"]}
    validate_keys(parse_search_space({"scheduler": "choice(linear, cosine)"}), composed, groups)
    with pytest.raises(ConfigError, match="'triangle' is not an option of config group 'scheduler'"):
        validate_keys(parse_search_space({"scheduler": "choice(linear, triangle)"}), composed, groups)


def test_new_keys_may_be_added_with_plus(composed):
    validate_keys(parse_search_space({}, ["+component.dropout=interval(0.0, 0.3)"]), composed, {})


def test_probes_cover_bounds_and_every_choice():
    space = parse_search_space({"a": "interval(0.0, 1.0)", "b": "choice(x, y, z)"})
    probes = probe_values(space)
    assert {p["a"] for p in probes} == {0.0, 1.0}
    assert {p["b"] for p in probes} == {"x", "y", "z"}


def test_grid_needs_discrete_parameters():
    space = parse_search_space({"a": "range(8, 32, step=8)", "b": "choice(x, y)"})
    assert grid_space(space) == {"a": [8, 16, 24, 32], "b": ["x", "y"]}
    with pytest.raises(ConfigError, match="grid sampler needs choice"):
        grid_space(parse_search_space({"a": "interval(0, 1)"}))


def test_samplers_and_pruners_by_name_or_target():
    import optuna

    assert isinstance(make_sampler({"name": "tpe", "seed": 3, "n_startup_trials": 2}), optuna.samplers.TPESampler)
    assert isinstance(make_sampler({"_target_": "optuna.samplers.RandomSampler", "seed": 1}), optuna.samplers.RandomSampler)
    grid = make_sampler({"name": "grid", "seed": 0}, {"a": [1, 2]})
    assert isinstance(grid, optuna.samplers.GridSampler)
    assert isinstance(make_pruner({"name": "hyperband", "min_resource": 2}), optuna.pruners.HyperbandPruner)
    assert isinstance(make_pruner({"name": "successive_halving"}), optuna.pruners.SuccessiveHalvingPruner)
    assert isinstance(make_pruner({"name": "none"}), optuna.pruners.NopPruner)


@pytest.mark.parametrize(
    ("build", "key", "message"),
    [
        (lambda: make_sampler({"name": "annealing"}), "hydra.sweeper.sampler.name", "unknown sampler 'annealing'; valid: tpe"),
        (lambda: make_pruner({"name": "mediane"}), "hydra.sweeper.pruner.name", "unknown pruner 'mediane'; valid: median"),
        (lambda: make_sampler({"name": "tpe", "n_startup": 3}), "hydra.sweeper.sampler.n_startup", "not a parameter of TPESampler"),
        (lambda: make_pruner({"_target_": "optuna.pruners.NoSuchPruner"}), "hydra.sweeper.pruner._target_", "cannot import"),
        (lambda: make_pruner({"name": "percentile"}), "hydra.sweeper.pruner", "PercentilePruner"),
    ],
)
def test_unknown_sampler_or_pruner_is_a_clear_error(build, key, message):
    with pytest.raises(ConfigError, match=message) as caught:
        build()
    assert caught.value.key == key


def test_storages(tmp_path):
    from optuna.storages import JournalStorage, RDBStorage

    assert make_storage(None) is None
    assert isinstance(make_storage(f"journal:{tmp_path}/new/optuna.journal"), JournalStorage)
    assert isinstance(make_storage(f"sqlite:///{tmp_path}/optuna.db"), RDBStorage)
    assert redact_url("postgresql://me:s3cret@host:5432/db") == "postgresql://me:***@host:5432/db"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("optuna.db", "is not a storage"),
        ("sqlite:////no/such/folder/optuna.db", "folder of the SQLite file not found"),
        ("postgresql://me:s3cret@127.0.0.1:1/db", "cannot reach the storage postgresql://me:\\*\\*\\*@127.0.0.1:1/db"),
        ("journal:", "needs a file path"),
    ],
)
def test_unusable_storage_is_a_clear_error(url, message):
    with pytest.raises(ConfigError, match=message) as caught:
        make_storage(url)
    assert caught.value.key == "hydra.sweeper.storage"
    assert "s3cret" not in str(caught.value)


def test_a_sampler_or_pruner_given_by_target_reaches_the_sweeper_as_written():
    """Hydra's Optuna sweeper's form (`_target_: optuna.samplers.RandomSampler`) builds that class: Hydra
    leaves the entry to the sweeper (its config is not instantiated recursively), which checks its keys."""
    import optuna
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from medkit_exp.sweeps.config import MedkitOptunaSweeperConf
    from medkit_exp.sweeps.factories import make_pruner, make_sampler

    config = OmegaConf.structured(MedkitOptunaSweeperConf)
    config.sampler = {"_target_": "optuna.samplers.RandomSampler", "seed": 3}
    config.pruner = {"_target_": "optuna.pruners.ThresholdPruner", "lower": 0.5}
    sweeper = instantiate(config)
    assert isinstance(make_sampler(OmegaConf.to_container(sweeper.raw_settings["sampler"])), optuna.samplers.RandomSampler)
    assert isinstance(make_pruner(OmegaConf.to_container(sweeper.raw_settings["pruner"])), optuna.pruners.ThresholdPruner)


def test_ner_optuna_default_pruner_is_the_top_quarter_percentile_pruner(composed):
    """hparams_search=ner_optuna composes top_quarter, which builds the pruner the docs describe;
    another pruner picked on the command line replaces it whole."""
    import optuna
    from omegaconf import OmegaConf

    # (the `composed` fixture holds Hydra initialised on conf/ for this module)
    default = compose("config", overrides=["+experiment=ner", "hparams_search=ner_optuna"], return_hydra_config=True)
    median = compose("config", overrides=["+experiment=ner", "hparams_search=ner_optuna", "hydra/sweeper/pruner=median"],
                     return_hydra_config=True)
    pruner = make_pruner(OmegaConf.to_container(default.hydra.sweeper.pruner))
    assert isinstance(pruner, optuna.pruners.PercentilePruner)
    assert (pruner._percentile, pruner._n_startup_trials, pruner._n_warmup_steps) == (25.0, 2, 0)
    assert OmegaConf.to_container(median.hydra.sweeper.pruner) == {"name": "median"}
