"""Facts an evaluation gives that are not curves (a split's label supports): logged once, as a
table artifact, from the components' hooks (``TrackingHooks.evaluation_tables``, optional).

A support is a count of the split, the same at every evaluation: as a metric it made a flat
curve per label beside the scores. Here each table is written at the first evaluation that has
it, as JSON in MLflow's table layout (``{"columns": [...], "data": [[...], ...]}``, what
``MlflowClient.log_table`` writes) under ``OUTPUT_DIR/mlflow_artifacts/<artifact file>``, and
uploaded with the run's other operations (spooled when MLflow is away). A later evaluation whose
table differs is reported by a warning (the first table stays the record).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from medkit_exp.tracking.messages import LogArtifacts

logger = logging.getLogger("medkit_exp.tracking.callback")

Table = Mapping[str, Any]  # {"columns": [...], "data": [[...], ...]}


class EvaluationTables:
    """The tables of one run: the first of each logged, the later ones checked against it."""

    def __init__(self) -> None:
        self.logged: dict[str, Table] = {}
        self._warned: set[str] = set()

    def reset(self) -> None:
        self.logged, self._warned = {}, set()

    def update(self, hooks: Sequence[Any], folder: Path, submit: Callable[[LogArtifacts], None], step: int) -> None:
        """Ask each hooks object for its tables; write and submit the new ones, warn about changed ones."""
        for source in hooks:
            tables = getattr(source, "evaluation_tables", None)
            if tables is None:
                continue
            try:
                found = dict(tables() or {})
            except Exception:  # noqa: BLE001 - a table is a report: the run goes on
                logger.exception("MLflow: %s.evaluation_tables failed", type(source).__name__)
                continue
            for artifact_file, table in found.items():
                self._take(str(artifact_file), _plain(table), folder, submit, step)

    def _take(self, artifact_file: str, table: Table, folder: Path, submit: Callable[[LogArtifacts], None],
              step: int) -> None:
        first = self.logged.get(artifact_file)
        if first is None:
            self.logged[artifact_file] = table
            path = folder / artifact_file
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(table, indent=1), encoding="utf-8")
            submit(LogArtifacts(str(path), str(Path(artifact_file).parent) if "/" in artifact_file else None))
        elif first != table and artifact_file not in self._warned:
            self._warned.add(artifact_file)
            changed = sum(1 for row in table["data"] if list(row) not in first["data"])
            logger.warning("%s at step %d differs from the one logged at the first evaluation (%d of %d rows): "
                           "the first is kept in MLflow", artifact_file, step, changed, len(table["data"]))


def _plain(table: Table) -> dict[str, Any]:
    """The table as JSON data (lists, not tuples), so that two tables compare as what is written."""
    return json.loads(json.dumps({"columns": list(table["columns"]), "data": [list(row) for row in table["data"]]}))
