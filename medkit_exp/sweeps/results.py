"""The end of a sweep: ``optimization_results.yaml`` in the sweep folder and a printed summary."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medkit_exp.sweeps.study import best_trial, state_counts

RESULTS_FILE = "optimization_results.yaml"


def study_results(study: Any, settings: Mapping[str, Any], this_run: Mapping[str, int]) -> dict[str, Any]:
    """What the sweep found: best value, params and trial, trial counts, where things are."""
    best = best_trial(study)
    results: dict[str, Any] = {
        "name": "medkit_optuna",
        "study_name": study.study_name,
        **dict(settings),
        "trials": state_counts(study),
        "trials_this_run": dict(this_run),
        "best_value": None if best is None else float(best.value),
        "best_params": {} if best is None else {key: _plain(value) for key, value in best.params.items()},
        "best_trial": None if best is None else best.number,
        "best_trial_output_dir": None if best is None else best.user_attrs.get("output_dir"),
        "best_trial_mlflow_run_id": None if best is None else best.user_attrs.get("mlflow_run_id"),
    }
    from medkit_exp.redaction import redact_data

    return redact_data(results)  # printed, written and returned: no secret in any of them


def write_results(results: Mapping[str, Any], sweep_dir: str | Path) -> Path:
    import yaml

    path = Path(sweep_dir) / RESULTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    from medkit_exp.redaction import redact_data

    text = yaml.safe_dump(redact_data(dict(results)), sort_keys=False, allow_unicode=True)  # no secret in it
    path.write_text(text, encoding="utf-8")
    return path


def summary(results: Mapping[str, Any], results_path: Path) -> str:
    """The closing lines of a sweep, for the terminal."""
    counts = ", ".join(f"{count} {state}" for state, count in results["trials"].items()) or "none"
    lines = ["", f"Sweep summary (study {results['study_name']!r})", f"  trials in the study: {counts}"]
    if results["best_value"] is None:
        lines.append("  no completed trial yet: no best value")
    else:
        lines.append(f"  best value ({results.get('metric')}): {results['best_value']:.4f} (trial {results['best_trial']})")
        lines.append("  best params:")
        lines += [f"    {key}: {value}" for key, value in results["best_params"].items()]
        if results.get("best_trial_output_dir"):
            lines.append(f"  best trial folder: {results['best_trial_output_dir']}")
    lines.append(f"  results: {results_path}")
    if results.get("mlflow_parent_run_id"):
        lines.append(f"  MLflow parent run: {results['mlflow_parent_run_id']} ({results.get('mlflow_tracking_uri')})")
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
