"""``python -m medkit_exp.compare``: compare MLflow runs (see :mod:`medkit_exp.tracking.compare`)."""

from medkit_exp.tracking.compare import compare_runs, main

__all__ = ["compare_runs", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
