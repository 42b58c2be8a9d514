"""Re-run a recorded MLflow run from its logged overrides and compare the new metrics with it.

    python -m medkit_exp.reproduce RUN_ID                                  # $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    python -m medkit_exp.reproduce RUN_ID --tracking-uri sqlite:///mlflow.db --output-dir outputs/repro
    python -m medkit_exp.reproduce RUN_ID trainer.device=cpu              # extra overrides, applied last
    python -m medkit_exp.reproduce RUN_ID --dry-run                        # print the command, run nothing

The recorded run's ``config/overrides.yaml`` artifact (the command-line overrides of
``python -m medkit_exp``) is replayed in the current working directory, into a new output folder,
logging to the same tracking URI, with the tag ``reproduces=RUN_ID``. Its own output folder,
tracking URI, ``resume_from``, a previous ``reproduces`` tag and model registration are not
replayed (a registration would move the recorded model's alias to the re-run's model).

Before the run, warnings tell what may make the metrics differ: a git commit other than the
recorded one (or uncommitted changes, then or now), other package versions, no seed. After it,
every metric history of both runs is compared step by step (system metrics and throughputs
left out), and so are the params. Exit code: 0 when all metrics match within ``--tolerance``
(0: exactly), 1 when some differ, 2 for an error (unknown run, missing artifact, failed re-run).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medkit_exp.errors import DataError, MedkitExpError

logger = logging.getLogger("medkit_exp.reproduce")

OVERRIDES_ARTIFACT = "config/overrides.yaml"
REPRODUCES_TAG = "reproduces"
# Overrides that belong to the recorded run only (the override's key, "+"/"~" prefixes removed).
REGISTRATION = ("tracking.model_hooks.0.register_model_name", "tracking.model_hooks.0.model_alias")  # the tagger's hooks
NOT_REPLAYED = ("hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir", "tracking.tracking_uri", "resume_from",
                f"tracking.tags.{REPRODUCES_TAG}", *REGISTRATION)
# The re-run's own settings: its output and store, and no model registration (it would move the
# recorded run's alias to the re-run's model).
RERUN_SETTINGS = tuple(f"{key}=null" for key in REGISTRATION)
# Metrics that measure the machine, not the model.
VOLATILE_METRICS = ("system/", "samples_per_second", "steps_per_second", "runtime", "seconds")
# Params expected to differ between the recorded run and its re-run.
RUN_SPECIFIC_PARAMS = ("paths.output_dir", "trainer.output_dir", "resume_from", "tracking.")


@dataclass
class MetricComparison:
    key: str
    recorded: list[tuple[int, float]]
    reproduced: list[tuple[int, float]]

    @property
    def max_difference(self) -> float:
        """Largest absolute difference at a step; inf when the steps differ (or one side is missing)."""
        if [s for s, _ in self.recorded] != [s for s, _ in self.reproduced]:
            return math.inf
        diffs = [0.0 if a == b or (math.isnan(a) and math.isnan(b)) else abs(a - b)
                 for (_, a), (_, b) in zip(self.recorded, self.reproduced)]
        return max(diffs, default=0.0)


def replayed_overrides(recorded: list[str]) -> list[str]:
    """The recorded overrides without those that belong to the recorded run only."""
    kept = []
    for override in recorded:
        key = str(override).split("=", 1)[0].lstrip("+~")
        if key in NOT_REPLAYED:
            if key == "resume_from":
                logger.warning("The run resumed from a checkpoint (%s): it is re-run from the start", override)
            continue
        if str(override).endswith("=***"):
            logger.warning("Override %r was redacted when recorded (a secret): give it again as an extra override",
                           override)
            continue
        kept.append(str(override))
    return kept


def load_run(client: Any, run_id: str, tracking_uri: str) -> tuple[Any, list[str]]:
    """The recorded run and its overrides; DataError when either cannot be found."""
    import yaml
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException as error:
        raise DataError(f"no MLflow run {run_id!r} here ({str(error).splitlines()[0][:200]})", path=tracking_uri) from error
    with tempfile.TemporaryDirectory(prefix="medkit-exp-reproduce-") as tmp:
        try:
            path = download_artifacts(run_id=run_id, artifact_path=OVERRIDES_ARTIFACT, dst_path=tmp, tracking_uri=tracking_uri)
        except Exception as error:  # noqa: BLE001 - MLflow raises several types for a missing file
            raise DataError(
                f"run {run_id} has no {OVERRIDES_ARTIFACT} artifact: only runs of `python -m medkit_exp` can be re-run",
                path=f"runs:/{run_id}/{OVERRIDES_ARTIFACT}",
            ) from error
        overrides = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or []
    if not isinstance(overrides, list):
        raise DataError(f"expected a list of overrides, got {type(overrides).__name__}", path=f"runs:/{run_id}/{OVERRIDES_ARTIFACT}")
    return run, [str(o) for o in overrides]


def provenance_warnings(tags: dict[str, str], params: dict[str, str], cwd: str | Path | None = None) -> list[str]:
    """What may make a re-run here differ from the recorded run: code version, configs, packages, seed.

    The code is medkit_exp's source (tags ``medkit_exp.git.*``; runs recorded before those tags
    existed have the working directory's ``git.*``); the configs are the working directory's
    repository (``workdir.git.*``), compared with ``cwd``'s."""
    from medkit_exp.tracking.context import code_version_tags, git_info, package_versions

    here = git_info(cwd)
    if "medkit_exp.version" in tags:
        now = code_version_tags(cwd=cwd)
        recorded = tags.get("medkit_exp.git.commit")
        warnings = _commit_warnings("medkit_exp", recorded, tags.get("medkit_exp.git.dirty"),
                                    now.get("medkit_exp.git.commit"), now.get("medkit_exp.git.dirty"))
        if not recorded:  # an installed medkit_exp: its version is compared below
            warnings[0] = f"the run used medkit_exp {tags['medkit_exp.version']} from {tags.get('medkit_exp.source')}"
        recorded_workdir = tags.get("workdir.git.commit")
        if recorded_workdir and here.get("commit") != recorded_workdir:
            warnings.append(f"the working directory's git commit (its configs) differs: recorded {recorded_workdir}, "
                            f"now {here.get('commit', 'no git repository')}")
    else:  # recorded before medkit_exp.* tags: git.* were the working directory's
        warnings = _commit_warnings("the code", tags.get("git.commit"), tags.get("git.dirty"), here.get("commit"),
                                    here.get("dirty"))
    for name, version in package_versions().items():
        recorded = tags.get(f"versions.{name}")
        if recorded and recorded != version:
            warnings.append(f"{name} {version} is installed, the run used {recorded}")
    if params.get("seed") in (None, "None", "null"):
        warnings.append("the run had no seed (seed=null): its metrics are not expected to repeat")
    return warnings


def _commit_warnings(what: str, recorded: str | None, recorded_dirty: str | None, now: str | None,
                     now_dirty: str | None) -> list[str]:
    """Warnings comparing a recorded git commit and dirty flag with the current ones."""
    warnings = []
    if not recorded:
        warnings.append(f"the run recorded no git commit of {what}: its code version is unknown")
    elif not now:
        warnings.append(f"the run was recorded at git commit {recorded}; here is no git repository to compare")
    elif now != recorded:
        warnings.append(f"{what}'s git commit differs: recorded {recorded}, now {now}")
    if recorded_dirty == "true":
        warnings.append("the recorded run had uncommitted changes: its exact code is unknown")
    if now_dirty == "true":
        warnings.append("the working tree has uncommitted changes")
    return warnings


def find_new_run(client: Any, experiment_id: str, output_dir: Path, started_ms: int) -> Any | None:
    """The run the re-run logged (found by its output folder tag), in the recorded run's
    experiment or any other."""
    query = f"tags.output_dir = '{output_dir}' and attributes.start_time >= {started_ms}"
    runs = client.search_runs([experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        experiments = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(experiments, query, order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def is_volatile(key: str) -> bool:
    return any(part in key for part in VOLATILE_METRICS)


def compare_metrics(client: Any, recorded: Any, reproduced: Any) -> list[MetricComparison]:
    """Step-by-step histories of every (non-volatile) metric of either run."""
    keys = sorted(k for k in set(recorded.data.metrics) | set(reproduced.data.metrics) if not is_volatile(k))

    def history(run: Any, key: str) -> list[tuple[int, float]]:
        if key not in run.data.metrics:
            return []
        latest = {m.step: m for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.timestamp)}
        return [(step, latest[step].value) for step in sorted(latest)]

    return [MetricComparison(key, history(recorded, key), history(reproduced, key)) for key in keys]


def differing_params(recorded: dict[str, str], reproduced: dict[str, str]) -> list[tuple[str, str | None, str | None]]:
    keys = sorted(set(recorded) | set(reproduced))
    return [
        (key, recorded.get(key), reproduced.get(key)) for key in keys
        if recorded.get(key) != reproduced.get(key) and not key.startswith(RUN_SPECIFIC_PARAMS)
    ]


def report(comparisons: list[MetricComparison], tolerance: float) -> bool:
    """Print the comparison table; True when every metric matches within ``tolerance``."""
    width = max((len(c.key) for c in comparisons), default=6)
    print(f"{'metric':<{width}}  {'recorded':>12}  {'reproduced':>12}  {'max |diff|':>10}  steps")
    matched = True
    for comparison in comparisons:
        difference = comparison.max_difference
        ok = difference <= tolerance
        matched &= ok
        last = [f"{h[-1][1]:.6g}" if h else "-" for h in (comparison.recorded, comparison.reproduced)]
        shown = "steps differ" if math.isinf(difference) else f"{difference:.3g}"
        print(f"{comparison.key:<{width}}  {last[0]:>12}  {last[1]:>12}  {shown:>10}  "
              f"{len(comparison.recorded)}/{len(comparison.reproduced)}{'' if ok else '  MISMATCH'}")
    return matched


def hydra_value(text: str) -> str:
    """A value for a Hydra override, quoted when it holds characters its grammar would read."""
    if re.fullmatch(r"[\w/.:~+@%-]+", text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def rerun_command(overrides: list[str], extra: list[str], output_dir: Path, tracking_uri: str, run_id: str) -> list[str]:
    return [sys.executable, "-m", "medkit_exp", *replayed_overrides(overrides), f"hydra.run.dir={hydra_value(str(output_dir))}",
            f"tracking.tracking_uri={hydra_value(tracking_uri)}", *RERUN_SETTINGS, f"++tracking.tags.{REPRODUCES_TAG}={run_id}",
            *extra]


def reproduce(args: argparse.Namespace) -> int:
    from mlflow import MlflowClient

    from medkit_exp.tracking.uris import resolve_tracking_uri
    from medkit_exp.tracking.store import prepare_store

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = resolve_tracking_uri(args.tracking_uri)
    prepare_store(uri)  # a store being created by a training beside: wait for it, never half-migrate
    client = MlflowClient(uri)
    recorded, overrides = load_run(client, args.run_id, uri)
    for warning in provenance_warnings(recorded.data.tags, recorded.data.params):
        logger.warning("%s", warning)
    output_dir = Path(args.output_dir or Path("outputs", "reproduce", f"{args.run_id[:8]}-{time.strftime('%Y%m%d-%H%M%S')}"))
    output_dir = output_dir.expanduser().resolve()
    command = rerun_command(overrides, args.overrides, output_dir, uri, args.run_id)
    print("Re-running: python", " ".join(command[1:]), flush=True)
    if args.dry_run:
        return 0
    started_ms = int(time.time() * 1000) - 1000
    done = subprocess.run(command, check=False, env={**os.environ, "MLFLOW_TRACKING_URI": uri})
    if done.returncode != 0:
        raise DataError(f"the re-run failed (exit code {done.returncode}); see its log", path=output_dir / "cli.log")
    new = find_new_run(client, recorded.info.experiment_id, output_dir, started_ms)
    if new is None:
        raise DataError(f"the re-run logged no MLflow run with tag output_dir={output_dir}", path=uri)
    print(f"\nRecorded run {recorded.info.run_id} vs re-run {new.info.run_id} (output: {output_dir})")
    for key, before, after in differing_params(recorded.data.params, new.data.params):
        logger.warning("param %s differs: recorded %r, now %r", key, before, after)
    matched = report(compare_metrics(client, recorded, new), args.tolerance)
    print("All metrics match." if matched else f"Some metrics differ by more than {args.tolerance}.")
    return 0 if matched else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medkit_exp.reproduce", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_id", help="the MLflow run to re-run")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, applied after the recorded ones")
    parser.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db")
    parser.add_argument("--output-dir", default=None, help="default: outputs/reproduce/<run id>-<time>")
    parser.add_argument("--tolerance", type=float, default=0.0, help="largest absolute metric difference that matches")
    parser.add_argument("--dry-run", action="store_true", help="print the command and run nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return reproduce(args)
    except MedkitExpError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
