"""The run's callbacks are config entries built by one instantiator: an added entry runs, null turns
one off, a factory gets the run, a bad entry is one line naming its key before any work."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from medkit_exp.callback_entries import check_callback_entries, instantiate_callbacks
from medkit_exp.errors import ConfigError
from medkit_exp.run_context import RunContext
from medkit_exp.training.callbacks import TrainerCallback
from tests.test_cli import run_cli
from tests.test_config_check import composed

PRINTER = "medkit_exp.training.printer.DefaultPrinterCallback"


class EventsFileCallback(TrainerCallback):
    """A callback of the tests only: writes the events it saw to ``path`` when training ends."""

    def __init__(self, path: str, label: str = "events"):
        self.path, self.label = Path(path), label
        self.seen: dict[str, int] = {"begin": 0, "log": 0, "evaluate": 0}

    def on_train_begin(self, config: Any) -> None:
        self.seen["begin"] += 1

    def on_log(self, logs: dict[str, float], step: int) -> None:
        self.seen["log"] += 1

    def on_evaluate(self, metrics: dict[str, float], step: int) -> None:
        self.seen["evaluate"] += 1

    def on_train_end(self) -> None:
        self.path.write_text(json.dumps({"label": self.label, **self.seen}))


def probe_factory(run: RunContext, *, path: str, copies: int) -> list[EventsFileCallback]:
    """A factory entry (``_partial_: true``): several callbacks, named from the run's data."""
    return [EventsFileCallback(f"{path}.{index}", label=run.data_name) for index in range(copies)]


def nested_factory(run: RunContext, *, hooks: list[Any]) -> list[EventsFileCallback]:
    """A factory entry whose ``hooks`` are nested partial entries, each completed here with the run."""
    return [callback for hook in hooks for callback in hook(run=run)]


def a_run() -> RunContext:
    return RunContext(config={}, params={}, config_yaml="", overrides=(), splits={}, data_name="demo", data_source="x")


def test_entries_are_built_in_order_null_is_off_and_a_factory_gets_the_run(tmp_path):
    entries = {
        "printer": {"_target_": PRINTER, "progress_bar": False},
        "early_stopping": None,
        "probe": {"_target_": f"{__name__}.probe_factory", "_partial_": True, "path": str(tmp_path / "p"), "copies": 2},
        "last": {"_target_": f"{__name__}.EventsFileCallback", "path": str(tmp_path / "last")},
    }
    callbacks = instantiate_callbacks(entries, a_run())
    assert [type(c).__name__ for c in callbacks] == [
        "DefaultPrinterCallback", "EventsFileCallback", "EventsFileCallback", "EventsFileCallback"]
    assert [c.label for c in callbacks[1:]] == ["demo", "demo", "events"]  # the factory's from run.data_name
    assert [c.path.name for c in callbacks[1:]] == ["p.0", "p.1", "last"]


def test_nested_entries_are_built_too_a_partial_one_completed_by_its_consumer(tmp_path):
    hook = {"_target_": f"{__name__}.probe_factory", "_partial_": True, "path": str(tmp_path / "h"), "copies": 1}
    entry = {"_target_": f"{__name__}.nested_factory", "_partial_": True, "hooks": [hook]}
    check_callback_entries({"probe": entry})
    (built,) = instantiate_callbacks({"probe": entry}, a_run())
    assert isinstance(built, EventsFileCallback) and built.label == "demo" and built.path.name == "h.0"
    with pytest.raises(ConfigError) as raised:
        check_callback_entries({"probe": {**entry, "hooks": [{**hook, "copiez": 1}]}})
    assert raised.value.key == "callbacks.probe.hooks.0.copiez"


@pytest.mark.parametrize(
    ("entry", "key", "message"),
    [
        ({"_target_": "no.such.Class"}, "callbacks.probe._target_", "cannot import 'no.such.Class'"),
        ({"path": "x"}, "callbacks.probe", "an entry names its class or factory with _target_"),
        ({"_target_": f"{__name__}.EventsFileCallback", "pth": "x"}, "callbacks.probe.pth",
         "not a parameter of tests.test_config_callbacks.EventsFileCallback; did you mean callbacks.probe.path?"),
        ({"_target_": f"{__name__}.EventsFileCallback"}, "callbacks.probe", "missing a required argument: 'path'"),
        ({"_target_": f"{__name__}.EventsFileCallback", "_partial_": True, "path": "x"}, "callbacks.probe._partial_",
         "takes no 'run'"),
        ({"_target_": f"{__name__}.probe_factory", "_partial_": True, "path": "x", "copies": 1, "run": 1},
         "callbacks.probe.run", "is the run's"),
    ],
    ids=["unknown target", "no target", "unknown key", "missing key", "partial without run", "run set"],
)
def test_a_bad_entry_is_a_config_error_naming_its_key(entry, key, message):
    with pytest.raises(ConfigError) as raised:
        check_callback_entries({"printer": {"_target_": PRINTER}, "probe": entry})
    assert raised.value.key == key and message in raised.value.message, str(raised.value)


def test_a_constructor_error_is_named_after_the_entry_key():
    entry = {"_target_": "medkit_exp.training.callbacks.EarlyStoppingCallback", "metric": "f1", "mode": "up"}
    with pytest.raises(ConfigError) as raised:
        instantiate_callbacks({"early_stopping": entry}, a_run())
    assert raised.value.key == "callbacks.early_stopping.mode"


def hooked_factory(run: RunContext, *, hooks: list[Any]) -> list[Any]:
    """A factory that names a bad setting of its second hook as ``hooks.1.<key>``."""
    raise ConfigError("hooks.1.copies", "must be at least 1")


def test_a_factory_error_under_a_setting_keeps_the_whole_path_under_the_entry_key():
    entry = {"_target_": f"{__name__}.hooked_factory", "_partial_": True, "hooks": []}
    with pytest.raises(ConfigError) as raised:
        instantiate_callbacks({"tracking": entry}, a_run(), keys={"tracking": "tracking"})
    assert raised.value.key == "tracking.hooks.1.copies" and raised.value.message == "must be at least 1"


def test_an_added_entry_runs_and_a_null_one_is_off_in_the_application(tmp_path):
    events = tmp_path / "events.json"
    result = run_cli(tmp_path, "+experiment=ner", "debug=fast", "tracking=none", "hydra.run.dir=run",
                     f"+callbacks.probe._target_={__name__}.EventsFileCallback", f"+callbacks.probe.path={events}",
                     "callbacks.printer=null")
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(events.read_text())
    assert seen["begin"] == 1 and seen["evaluate"] == 2 and seen["log"] >= 1  # debug=fast: eval at steps 2 and 4
    assert "Training is completed" not in result.stdout + result.stderr  # the printer's closing line: off


@pytest.mark.parametrize(
    ("args", "key", "message"),
    [
        (["+callbacks.probe._target_=no.such.Class"], "callbacks.probe._target_", "cannot import 'no.such.Class'"),
        (["callbacks.printer._target_=medkit_exp.nothing.Printer"], "callbacks.printer._target_", "cannot import"),
        (["+callbacks.printer.progress_barr=true"], "callbacks.printer.progress_barr",
         "did you mean callbacks.printer.progress_bar?"),
        (["callbacks.early_stopping.patience=5"], "callbacks.early_stopping.patience",
         "callbacks.early_stopping is off (null) in this config: choose callbacks=early_stopping first"),
        (["callbacks=early_stopping", "callbacks.early_stopping.mode=up"], "callbacks.early_stopping.mode",
         "must be one of max, min"),
        (["callbacks=early_stopping", "callbacks.early_stopping.patiance=2"], "callbacks.early_stopping.patiance",
         "did you mean callbacks.early_stopping.patience?"),
        (["tracking=mlflow", "tracking.model_hooks.0.prediction_sample_size=-1"],
         "tracking.model_hooks.0.prediction_sample_size", "must be >= 0"),
        (["tracking=mlflow", "tracking.model_hooks.0.model_alias=candidate"], "tracking.model_hooks.0.model_alias",
         "needs tracking.model_hooks.0.register_model_name"),
        (["tracking=mlflow", "+tracking.model_hooks.0.dev_reportt=false"], "tracking.model_hooks.0.dev_reportt",
         "did you mean tracking.model_hooks.0.dev_report?"),
        (["tracking=mlflow", "tracking.dev_report=false"], "tracking.dev_report",
         "moved: use tracking.model_hooks.0.dev_report"),
        (["tracking=mlflow", "tracking._target_=medkit_exp.tracking.nothing"], "tracking._target_", "cannot import"),
    ],
    ids=["unknown target", "unknown target set", "unknown key", "key of an entry off", "bad value", "misspelt key",
         "hook value", "hook alias", "hook key", "moved key", "tracking target"],
)
def test_a_bad_entry_on_the_command_line_is_one_line_exit_2_before_any_work(tmp_path, args, key, message):
    store = f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}" if "tracking=mlflow" in args else "seed=1"
    result = run_cli(tmp_path, "+experiment=ner", "debug=fast", "tracking=none", "hydra.run.dir=run", *args, store)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: config key '{key}': "), result.stderr
    assert message in errors[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # refused before Hydra made the run folder


def test_tracking_none_stays_off_whatever_else_sets_tracking_keys():
    # hparams_search=ner_optuna sets tracking.log_model: it must not bring the tracking back
    cfg = composed("+experiment=ner", "tracking=none", "hparams_search=ner_optuna", "tracking.plots=false",
                   "tracking.model_hooks.0.dev_report=false")
    assert cfg.callbacks.tracking is None and cfg.tracking.log_model is False
    assert list(cfg.callbacks) == ["printer", "early_stopping", "tracking", "pruning"]


def test_the_printer_full_metrics_setting_is_checked_and_reaches_the_printer():
    from medkit_exp.config_check import check_config
    from medkit_exp.schema import MedkitExpConfig

    cfg = composed("+experiment=ner", "debug=fast", "tracking=none", "callbacks.printer.full_metrics=maybe")
    with pytest.raises(ConfigError) as raised:
        check_config(cfg, MedkitExpConfig)
    assert raised.value.key == "callbacks.printer.full_metrics"
    cfg = composed("+experiment=ner", "debug=fast", "tracking=none")
    assert cfg.callbacks.printer.full_metrics is False
    cfg = composed("+experiment=ner", "debug=fast", "tracking=none", "callbacks.printer.full_metrics=true")
    (printer,) = instantiate_callbacks({"printer": dict(cfg.callbacks.printer)}, a_run())
    assert printer.full_metrics is True
