"""What the run being built offers the callback factories that config names.

A callback entry of the config (``callbacks``, ``tracking.callbacks``, the sweep's pruning) is
either a callback built from its own settings, or, with ``_partial_: true``, a factory that
also needs the run: its data, its component, the params to record. The application builds one
:class:`RunContext` and hands it to every such factory as ``run=``. It imports nothing heavy and
nothing from the packages whose factories read it, so every layer can take it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunContext:
    """One run, as its callbacks' factories see it.

    config: the resolved config, as plain containers.
    params: what the tracker records as params (the config less the run's own folders and the
        keys its choices do not use, the component's resolved settings).
    config_yaml: the resolved config as YAML, secrets redacted.
    overrides: the command-line overrides of the run.
    splits: the documents of each split (``train``, ``dev``...).
    data_name / data_source: the corpus's name and where it was read from.
    component / metrics_computer: what the Trainer trains and evaluates with.
    parent_run_id / extra_tags: a sweep trial's parent run and tags (study, trial number).
    tracking_run_id: set by the tracking factory; once the run has started, its tracker's run id
        (None before, or without tracking), for the callbacks that report it (the pruning one).
    tracking_experiment_id: likewise, the experiment of that run (None while MLflow was not reached).
    tracking_uri: likewise, the store the tracker resolved and used.
    """

    config: Mapping[str, Any]
    params: Mapping[str, Any]
    config_yaml: str
    overrides: tuple[str, ...]
    splits: Mapping[str, Sequence[Any]]
    data_name: str
    data_source: str
    component: Any = None
    metrics_computer: Any = None
    parent_run_id: str | None = None
    extra_tags: Mapping[str, str] = field(default_factory=dict)
    tracking_run_id: Callable[[], str | None] = lambda: None
    tracking_experiment_id: Callable[[], str | None] = lambda: None
    tracking_uri: Callable[[], str | None] = lambda: None
