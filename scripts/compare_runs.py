#!/usr/bin/env python
"""Compare the MLflow runs of an experiment or a sweep: a table (markdown, CSV, HTML) and curves.

    python scripts/compare_runs.py --experiment ner-demo --metric eval/f1 --plot curves.png
    python scripts/compare_runs.py --parent-run-id <sweep run id> --format csv --output runs.csv

Same as ``python -m medkit_exp.compare``; ``--help`` lists the options.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from medkit_exp.tracking.compare import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
