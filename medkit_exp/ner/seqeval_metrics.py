"""Entity metrics computed by seqeval (``metrics.name=seqeval``), for comparison with published
numbers that used it. Same metric names as :class:`~medkit_exp.ner.metrics.EntityMetricsComputer`
(whose values equal seqeval's strict mode without the dependency); seqeval is an optional
dependency: ``pip install 'medkit_exp[seqeval]'``.

>>> computer = SeqevalMetricsComputer(["O", "B-DISO", "I-DISO"])
>>> computer.compute({"references": [["B-DISO", "I-DISO", "O"]], "predictions": [["B-DISO", "O", "O"]]})["f1"]
0.0
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from medkit_exp.errors import ConfigError
from medkit_exp.ner.metrics import PER_LABEL_METRICS, EntityMetricsComputer, label_metric

#: The pip extra that installs seqeval.
SEQEVAL_EXTRA = "medkit_exp[seqeval]"
#: Our tagging schemes and seqeval's scheme classes (strict mode).
_SCHEMES = {"iob2": "IOB2", "bioes": "IOBES", "bilou": "BILOU"}
_AVERAGES = {"": "micro avg", "macro_": "macro avg"}


def seqeval_missing() -> str | None:
    """Why seqeval cannot be used (None when it can): checked before any work."""
    import importlib.util

    try:
        found = importlib.util.find_spec("seqeval") is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules, a broken install
        found = False
    return None if found else f"needs seqeval, which is not installed: pip install '{SEQEVAL_EXTRA}'"


class SeqevalMetricsComputer(EntityMetricsComputer):
    """Strict entity-level metrics computed by ``seqeval.metrics.classification_report``
    (``mode="strict"``, the tagger's scheme). Tag preparation, names and recording are
    :class:`EntityMetricsComputer`'s; a label of ``id2label`` absent from both references and
    predictions gets 0 with support 0 (seqeval leaves it out; supports in :attr:`supports`, as
    the parent's), and the macro averages of a set without any entity are 0 (seqeval gives NaN,
    which cannot rank checkpoints)."""

    def __init__(self, id2label: Mapping[int, str] | Any, tagging_scheme: str = "iob2", annotated: bool = False):
        missing = seqeval_missing()
        if missing:
            raise ConfigError("metrics.name", f"'seqeval' {missing}")
        super().__init__(id2label, tagging_scheme, annotated=annotated)

    def compute(self, all_data: Mapping[str, list[list[str]]]) -> dict[str, float]:
        """seqeval's strict micro, macro and per-label precision/recall/F1 (supports in
        :attr:`supports`)."""
        import seqeval.scheme
        from seqeval.metrics import classification_report

        references, predictions = all_data["references"], all_data["predictions"]
        if len(references) != len(predictions):
            raise ValueError(f"{len(references)} reference sequences but {len(predictions)} predicted ones")
        scheme = getattr(seqeval.scheme, _SCHEMES[self.tagging_scheme])
        with warnings.catch_warnings():  # a label never predicted: seqeval warns, the value is 0
            warnings.simplefilter("ignore")
            report = classification_report(
                references, predictions, mode="strict", scheme=scheme, output_dict=True, zero_division=0
            )
        scores: dict[str, float] = {}
        supports: dict[str, int] = {}
        for prefix, average in _AVERAGES.items():
            for metric, name in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
                value = float(report[average][name])
                scores[f"{prefix}{metric}"] = 0.0 if value != value else value  # NaN: no entity at all
        for label in sorted(set(self.labels) | {key for key in report if not key.endswith(" avg")}):
            row = report.get(label, {})
            values = [row.get(name, 0.0) for name in ("precision", "recall", "f1-score")]
            scores.update({label_metric(label, metric): float(value)
                           for metric, value in zip(PER_LABEL_METRICS, values)})
            supports[label] = int(row.get("support", 0))
        self.supports = supports
        scores.update(self.annotated_metrics(all_data))  # ours: seqeval knows no documents as annotated
        return scores


def make_metrics_computer(name: str, component: Any) -> Any:
    """The metrics computer ``metrics.name`` names for ``component``: "entity" is the component's
    own (``make_metrics_computer``); "seqeval" computes the same names with seqeval over the
    component's tags (a flat tagger's only: a ConfigError for the nested tagger)."""
    if name not in ("entity", "seqeval"):
        raise ConfigError("metrics.name", f"must be one of entity, seqeval; got {name!r}")
    own = component.make_metrics_computer() if hasattr(component, "make_metrics_computer") else None
    if name == "entity":
        return own  # None: a component without metrics is evaluated on its loss only
    if own is None:
        raise ConfigError("metrics.name", "'seqeval': the component makes no metrics computer")
    from medkit_exp.ner.nested_metrics import NestedMetricsComputer

    if isinstance(own, NestedMetricsComputer):  # seqeval would read "B-X|O|O" as no tag at all
        raise ConfigError("metrics.name", "'seqeval' scores flat tag sequences, not the nested tagger's layers: "
                          "use metrics=entity")
    if not isinstance(own, EntityMetricsComputer):
        raise ConfigError("metrics.name", f"'seqeval' needs a tagger whose metrics are entity metrics, "
                          f"got {type(own).__name__}")
    return SeqevalMetricsComputer(own.id2label, own.tagging_scheme, annotated=own.annotated)
