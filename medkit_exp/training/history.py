"""``history.jsonl``: one JSON line per log and per evaluation of a run.

A checkpoint records how many lines were written when it was taken, so that a resumed run
first drops the lines the interrupted run wrote after it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HISTORY_FILE = "history.jsonl"


class HistoryFile:
    """Appends records to ``<output_dir>/history.jsonl`` and counts the lines written."""

    def __init__(self, output_dir: str | Path):
        self.path = Path(output_dir) / HISTORY_FILE
        self.nb_lines = 0

    def append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=to_json) + "\n")
        self.nb_lines += 1

    def truncate(self, nb_lines: int) -> None:
        """Keep the first ``nb_lines`` lines (0: a new, empty history)."""
        lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True) if self.path.exists() else []
        self.path.write_text("".join(lines[:nb_lines]), encoding="utf-8")
        self.nb_lines = min(nb_lines, len(lines))


def to_json(value: Any) -> Any:
    """Numbers that metric computers return as numpy or torch scalars."""
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
