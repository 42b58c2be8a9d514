"""The MLflow side of a sweep: one parent run per study, one child run per trial.

The parent run holds, as params, the study name, storage, sampler, pruner, direction, metric and
search space; as trials finish, the metrics ``trial/value``, ``best_value`` and the counts
``trials/complete``, ``trials/pruned``, ``trials/failed`` (step = trial number: sortable columns of
the runs table) and the tags ``best.value``, ``best.trial_number``, ``best.params.<key>`` and
``trials.<STATE>``; at the end, the plots of :mod:`medkit_exp.sweeps.plots`,
``optimization_results.yaml`` and the best trial's config (``best_trial/config.yaml``).

Each trial's training is a child run (tag ``mlflow.parentRunId``) tagged ``optuna.study_name``,
``optuna.trial_number`` and, once the trial ends, ``optuna.trial_state``; the trial's value as
Optuna records it (a pruned trial's: its last reported value) is its metric ``objective``, so
the children sort by it.
MLflow has no PRUNED status: a pruned trial's run ends KILLED with ``optuna.trial_state=PRUNED``.

Workers sharing a study share its parent: the worker that creates the study creates the run
and stores its id in the study (user attribute ``mlflow_parent_run_id``); the others, and
later runs of the same study, reuse it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medkit_exp.redaction import redact_data, redact_text
from medkit_exp.sweeps.study import best_trial, state_counts
from medkit_exp.tracking.ops import get_or_create_experiment

logger = logging.getLogger(__name__)

PARENT_ATTR = "mlflow_parent_run_id"
STATE_TAG = "optuna.trial_state"
OBJECTIVE_METRIC = "objective"
#: The parent's trial-count metrics, by Optuna state (``trials/<name>``).
COUNT_METRICS = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}
MLFLOW_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}


class SweepParentRun:
    """The parent run of a study in one MLflow store (every call tolerates MLflow errors)."""

    def __init__(self, client: Any, run_id: str, tracking_uri: str, experiment_id: str):
        self.client = client
        self.run_id = run_id
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id

    @classmethod
    def open(
        cls, tracking_uri: str, experiment_name: str, study: Any, created: bool, description: Mapping[str, Any],
        n_trials: int, wait: float = 30.0,
    ) -> SweepParentRun:
        """The study's parent run: reused when the study names one in this store, else created
        (a worker that did not create the study first waits up to ``wait`` s for its creator's)."""
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri)
        experiment_id = get_or_create_experiment(client, experiment_name)
        run_id = None if created else _wait_for_parent(study, wait)
        if run_id and _run_exists(client, run_id):
            client.update_run(run_id, status="RUNNING")
            client.set_tag(run_id, "n_trials", str(n_trials))
            logger.info("MLflow parent run %s of study %r reused", run_id, study.study_name)
            return cls(client, run_id, tracking_uri, experiment_id)
        run_id = _create_parent(client, experiment_id, study.study_name, description, n_trials)
        study.set_user_attr(PARENT_ATTR, run_id)
        logger.info("MLflow parent run %s for study %r at %s", run_id, study.study_name, tracking_uri)
        return cls(client, run_id, tracking_uri, experiment_id)

    # ------------------------------------------------------------------ as trials end
    def trial_finished(self, study: Any, trial: Any) -> None:
        """Log a finished trial's value, the best so far and the state counts."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = []
        if trial.value is not None:
            metrics.append(Metric("trial/value", float(trial.value), now, trial.number))
        best = best_trial(study)
        counts = state_counts(study)
        tags = {f"trials.{state}": str(count) for state, count in counts.items()}
        metrics += [Metric(f"trials/{name}", float(counts.get(state, 0)), now, trial.number)
                    for state, name in COUNT_METRICS.items()]
        if best is not None:
            metrics.append(Metric("best_value", float(best.value), now, trial.number))
            tags.update({"best.value": str(best.value), "best.trial_number": str(best.number)})
            tags.update({f"best.params.{key}": redact_text(str(value)) for key, value in best.params.items()})
        self._safely("log the trial", lambda: self.client.log_batch(
            self.run_id, metrics=metrics, tags=[_tag(k, v) for k, v in tags.items()]
        ))

    def mark_child(self, run_id: str | None, state: str, value: float | None = None, error: str | None = None) -> None:
        """Tag a trial's child run with its Optuna state; pruned and failed runs change status."""
        if not run_id:
            return

        def mark() -> None:
            self.client.set_tag(run_id, STATE_TAG, state)
            if value is not None:
                self.client.set_tag(run_id, "optuna.value", str(value))
                self.client.log_metric(run_id, OBJECTIVE_METRIC, float(value))
            if error:
                self.client.set_tag(run_id, "error", redact_text(error)[:5000])
            current = self.client.get_run(run_id).info.status
            wanted = MLFLOW_STATUS.get(state, "FAILED")
            if current != wanted and (state != "COMPLETE" or current == "RUNNING"):
                self.client.set_terminated(run_id, status=wanted)

        self._safely(f"mark run {run_id}", mark)

    def failed_child(self, context: Any, params: Mapping[str, Any], error: str) -> str | None:
        """A FAILED child run for a trial that failed before its training opened one."""
        from mlflow.entities import Param

        from medkit_exp.tracking.params import mlflow_key

        def create() -> str:
            tags = {"mlflow.parentRunId": self.run_id, STATE_TAG: "FAIL", "error": redact_text(error)[:5000],
                    **context.child_tags()}
            run = self.client.create_run(self.experiment_id, tags=tags, run_name=f"trial-{context.number}")
            values = redact_data({str(k): str(v) for k, v in params.items()})
            self.client.log_batch(run.info.run_id, params=[Param(mlflow_key(k), v[:6000]) for k, v in values.items()])
            self.client.set_terminated(run.info.run_id, status="FAILED")
            return run.info.run_id

        return self._safely("record the failed trial", create)

    # ------------------------------------------------------------------ end
    def finish(self, study: Any, files: Mapping[str, Path], plots: list[Path], status: str = "FINISHED") -> None:
        """Upload the plots and files (``{artifact_path: local file}``) and end the run."""
        for png in plots:
            self._safely(f"upload {png.name}", lambda png=png: self.client.log_artifact(self.run_id, str(png), "plots"))
        with tempfile.TemporaryDirectory(prefix="medkit_exp_sweep_") as staging:
            for artifact_path, path in files.items():
                folder, _, name = artifact_path.rpartition("/")
                if Path(path).name != name:  # MLflow names an artifact after its file
                    copy = Path(staging, artifact_path)
                    copy.parent.mkdir(parents=True, exist_ok=True)
                    path = Path(shutil.copyfile(path, copy))
                self._safely(f"upload {name}", lambda p=path, f=folder: self.client.log_artifact(self.run_id, str(p), f or None))
        self._safely("end the run", lambda: self.client.set_terminated(self.run_id, status=status))

    def child_config(self, trial: Any, local: Path | None) -> Path | None:
        """The resolved config of ``trial``: its local file, else its child run's artifact."""
        if local is not None and local.is_file():
            return _redacted_copy(local)  # the trial's own file may predate redaction
        run_id = trial.user_attrs.get("mlflow_run_id")
        if not run_id:
            return None

        def download() -> Path:
            folder = tempfile.mkdtemp(prefix="medkit_exp_best_config_")
            return Path(self.client.download_artifacts(run_id, "config/config.yaml", folder))

        downloaded = self._safely("download the best trial's config", download)
        return _redacted_copy(downloaded) if downloaded is not None else None

    def _safely(self, what: str, action: Any) -> Any:
        try:
            return action()
        except Exception as error:  # noqa: BLE001 - MLflow trouble never stops a sweep
            logger.warning("MLflow: could not %s: %s", what, str(error).splitlines()[0][:300] if str(error) else error)
            return None


def _redacted_copy(path: Path) -> Path:
    """A copy of a YAML config file without secrets, in a new temporary folder."""
    from medkit_exp.tracking.params import redact_yaml_files

    copy = Path(tempfile.mkdtemp(prefix="medkit_exp_best_config_")) / path.name
    shutil.copyfile(path, copy)
    redact_yaml_files(copy.parent, copy.name)
    return copy


def _create_parent(client: Any, experiment_id: str, study_name: str, description: Mapping[str, Any], n_trials: int) -> str:
    from mlflow.entities import Param

    from medkit_exp.tracking.context import context_tags
    from medkit_exp.tracking.params import mlflow_params

    tags = {**context_tags(), "optuna.study_name": study_name, "medkit_exp.sweep": "parent",
            "n_trials": str(n_trials)}
    run = client.create_run(experiment_id, tags=tags, run_name=f"sweep-{study_name}")
    params = mlflow_params(dict(description))  # keys MLflow accepts: a "+key" of the search space too
    client.log_batch(run.info.run_id, params=[Param(key, value) for key, value in params.items()])
    return run.info.run_id


def _wait_for_parent(study: Any, wait: float) -> str | None:
    deadline = time.monotonic() + wait
    while True:
        run_id = study.user_attrs.get(PARENT_ATTR)
        if run_id or time.monotonic() >= deadline:
            return run_id
        time.sleep(0.5)


def _run_exists(client: Any, run_id: str) -> bool:
    try:
        return client.get_run(run_id).info.lifecycle_stage == "active"
    except Exception:  # noqa: BLE001 - another store, or deleted
        return False


def _tag(key: str, value: str) -> Any:
    from mlflow.entities import RunTag

    from medkit_exp.tracking.params import mlflow_key

    return RunTag(mlflow_key(key), value[:5000])
