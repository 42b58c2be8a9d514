"""MLflowCallback: mirrors a training run into MLflow, asynchronously and without losing anything.

>>> from medkit_exp.tracking import MLflowCallback, describe_dataset          # doctest: +SKIP
>>> callback = MLflowCallback(                                                # doctest: +SKIP
...     tracking_uri="sqlite:///mlflow.db", experiment_name="ner-demo", run_name="bert-lr3e-5",
...     params=resolved_config, config_yaml=OmegaConf.to_yaml(cfg), overrides=["trainer.lr=3e-5"],
...     datasets=[describe_dataset("demo-train", train_docs, "brat:demo/train", context="train")],
... )
>>> Trainer(component, config, train_docs, dev_docs, metrics, callback=[callback]).train()  # doctest: +SKIP

What a run records
------------------
- params: ``params`` (a nested config) flattened to dotted keys, secrets redacted, values cut
  at MLflow's 6000 characters with a marker (the whole config is the ``config/config.yaml``
  artifact); without ``params``, the TrainerConfig as ``trainer.*``.
- metrics, all at step = the global optimizer step: ``train/<key>`` for each ``on_log`` value
  (loss, learning_rate, grad_norm, samples_per_second, steps_per_second, epoch) every
  ``log_every_n_steps`` steps, and the latest values not yet logged (at their own step) at each
  evaluation and at the end of training, so a run shorter than ``log_every_n_steps`` still has
  its training curves; ``eval/<metric>`` at each evaluation; ``train/loss_avg`` (mean
  training loss since the previous evaluation) and ``train/<metric>`` (training metrics, when
  computed) at each evaluation (the hooks' tables, e.g. a split's label supports, are logged once
  as table artifacts: :mod:`medkit_exp.tracking.tables`); ``best/eval/<metric>`` for every eval value of the best
  evaluation so far (by the TrainerConfig's ``checkpoint_metric``) and ``best/step``, at each
  evaluation (:mod:`medkit_exp.tracking.best`): sort the runs by ``best/eval/f1``.
- tags: the code's version: ``medkit_exp.version``, ``medkit_exp.source``, ``medkit_exp.path`` and
  ``medkit_exp.git.{commit,dirty,branch}`` (the package's own checkout, wherever the run starts;
  also ``mlflow.source.git.commit``), ``workdir.git.{commit,dirty,branch}`` (the working
  directory's repository), ``command``, ``host``, ``versions.{python,torch,transformers,medkit_exp,mlflow}``,
  ``experiment_name``, ``run_name``, ``output_dir``, ``data.<name>.{digest,count,source}``,
  ``mlflow.parentRunId`` (child runs of a sweep), ``stop_reason``, ``global_step`` and the
  user's ``tags``.
- dataset inputs: each of ``datasets`` (name, digest, source, record count, context tag).
- artifacts: ``config/config.yaml``, ``config/overrides.yaml``, ``history/history.jsonl``,
  ``plots/learning_curves.png``, ``checkpoints/best/`` and ``checkpoints/last/`` (per
  ``log_checkpoints``; only the first when they are the same checkpoint), and whatever the
  component's ``hooks`` (:mod:`medkit_exp.tracking.hooks`) or the ``log_model`` and
  ``extra_artifacts`` functions add.
- status: FINISHED, KILLED (SIGTERM/SIGINT, ``state.interrupted``, or a pruned sweep trial: see
  :func:`~medkit_exp.tracking.run_end.end_status`) or FAILED (an exception).

A resumed training (``trainer.train(resume_from_checkpoint=...)``) reattaches to the same run
(its id travels in the checkpoint), keeps its params and continues its metric histories.
When MLflow is unreachable, training goes on and the data waits in ``OUTPUT_DIR/mlflow_spool/``
(see :mod:`medkit_exp.tracking.spool`).

Where the work happens: the callback turns events into operations and hands them to a
:class:`~medkit_exp.tracking.session.RunSession`, which sends them from a background thread.
With ``worker=True`` (the application's default) the session lives in a tracking worker process
(:mod:`medkit_exp.tracking.worker`): the training process then never imports MLflow, and the
learning curves, the model logging and the hooks' tasks (``run.run_task``) run beside it. Hooks
themselves always run in the training process, with a :class:`RunHandle` whose ``client`` works
in either case.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medkit_exp.training.callbacks import TrainerCallback
from medkit_exp.tracking.best import BestValues
from medkit_exp.tracking.datasets import DatasetInfo
from medkit_exp.tracking.hooks import ArtifactHook, FunctionHooks, ModelLogger, TrackingHooks
from medkit_exp.tracking.messages import LogMetrics, SetStatus, SetTags, is_number, now_ms
from medkit_exp.tracking.options import checkpoint_kinds
from medkit_exp.tracking.params import (
    config_yaml, mlflow_params, redact_config, redact_override, trainer_config_dict,
)
from medkit_exp.tracking.run_end import HISTORY_FILE, end_status, end_uploads, run_hooks, summary_tags
from medkit_exp.tracking.run_handle import RunHandle
from medkit_exp.tracking.session_protocol import TrackingSession
from medkit_exp.tracking.tables import EvaluationTables

logger = logging.getLogger(__name__)

ARTIFACTS_DIR = "mlflow_artifacts"  # files made for MLflow, in the run's output folder


class MLflowCallback(TrainerCallback):
    """Mirror a training run into MLflow (see the module docstring for what is recorded).

    Parameters
    ----------
    tracking_uri: where runs go; None resolves as MLflow 3 does (``MLFLOW_TRACKING_URI``, else
        ``sqlite:///mlflow.db`` in the working directory; see :func:`resolve_tracking_uri`).
    experiment_name: created if missing; None: ``MLFLOW_EXPERIMENT_NAME`` or "medkit_exp".
    run_name: None lets MLflow pick one.
    params: the run's configuration as a nested mapping (e.g. the resolved Hydra config).
    tags: extra tags (secret-looking ones are redacted).
    log_every_n_steps: log ``on_log`` values at global steps that are multiples of this.
    log_checkpoints: which checkpoints to upload at the end: "best", "last", both (True or
        ["best", "last"]) or none (False/None).
    hooks: the component's :class:`~medkit_exp.tracking.hooks.TrackingHooks`: its run tags, its
        model (``log_model``) and artifacts (``log_artifacts``) at the end of the run. Their
        ``callbacks()`` go to the Trainer beside this one (:func:`~medkit_exp.tracking.factory.mlflow_callbacks`
        does it).
    log_model: False: no model is logged (the hooks' ``log_model`` is not called); or a function
        ``model_logger(checkpoint_dir, run)`` that logs the best checkpoint as a model (e.g. a
        transformers flavor), called at the end of a finished run besides the hooks.
    parent_run_id: makes this run a child (tag ``mlflow.parentRunId``), for sweeps.
    plots: draw and upload the learning curves.
    system_metrics: MLflow's own system metrics monitor (needs psutil).
    config_yaml: the resolved config as YAML text, uploaded redacted as ``config/config.yaml``.
    overrides: the command-line overrides, uploaded redacted as ``config/overrides.yaml``.
    datasets: :func:`describe_dataset` results, logged as dataset inputs and ``data.*`` tags.
    extra_artifacts: functions ``hook(run, state)`` called at the end of a finished or interrupted run.
    artifact_location: artifact root of a new experiment (None: the store's default).
    flush_interval: seconds between two sends of the background logger.
    retry_interval: seconds between two tries to reach an unreachable server.
    http_max_retries, http_timeout: MLflow HTTP settings used unless set in the environment.
    worker: do the MLflow work (imports, store, sends, plots, model logging) in a tracking worker
        process (:mod:`medkit_exp.tracking.worker`) rather than in this one.
    """

    state_key = "MLflowCallback"

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment_name: str | None = None,
        run_name: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        log_every_n_steps: int = 1,
        log_checkpoints: bool | str | Sequence[str] | None = "best",
        log_model: ModelLogger | bool | None = None,
        parent_run_id: str | None = None,
        plots: bool = True,
        system_metrics: bool = False,
        config_yaml: str | None = None,
        overrides: Sequence[str] | None = None,
        datasets: Sequence[DatasetInfo] | None = None,
        extra_artifacts: Sequence[ArtifactHook] = (),
        hooks: Sequence[TrackingHooks] = (),
        artifact_location: str | None = None,
        flush_interval: float = 5.0,
        retry_interval: float = 10.0,
        http_max_retries: int | None = None,
        http_timeout: int | None = None,
        worker: bool = False,
    ):
        if log_every_n_steps < 1:
            from medkit_exp.errors import ConfigError

            raise ConfigError("tracking.log_every_n_steps", f"must be >= 1, got {log_every_n_steps}")
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "medkit_exp"
        self.run_name = run_name
        self.params = params
        self.tags = dict(tags or {})
        from medkit_exp.redaction import install_log_redaction

        install_log_redaction()  # a tracked run's logs (cli.log, the worker's) hold no credentials
        self.log_every_n_steps = log_every_n_steps
        self.log_checkpoints = checkpoint_kinds(log_checkpoints)
        self.log_models = log_model is not False
        # each function a hooks object of its own: one failing spares the others
        functions = ([FunctionHooks(log_model)] if callable(log_model) else []) + [
            FunctionHooks(artifact_hooks=[hook]) for hook in extra_artifacts]
        self.hooks: list[TrackingHooks] = list(hooks) + functions
        self.parent_run_id = parent_run_id
        self.plots = plots
        self.system_metrics = system_metrics
        self.config_yaml = config_yaml
        self.overrides = list(overrides) if overrides is not None else None
        self.datasets = list(datasets or [])
        self.artifact_location = artifact_location
        self.flush_interval, self.retry_interval = flush_interval, retry_interval
        self.http_max_retries, self.http_timeout = http_max_retries, http_timeout
        self.resolved_tracking_uri: str | None = None
        self.experiment_id: str | None = None
        self._restored: dict[str, Any] = {}
        self._local_id: str | None = None
        self._run_id: str | None = None
        self.worker = worker
        self._session: TrackingSession | None = None  # a RunSession, or a WorkerSession when ``worker``
        self._best = BestValues()  # best/<metric> of the run so far (the TrainerConfig's checkpoint metric)
        self._tables = EvaluationTables()  # the hooks' evaluation tables (a split's label supports), logged once
        self._curves_drawn_at: int | None = None  # the step of the learning curves drawn so far
        self._unlogged: tuple[dict[str, Any], int] | None = None  # the latest on_log values log_every_n_steps skipped

    # ------------------------------------------------------------------ public
    @property
    def run_id(self) -> str | None:
        """The MLflow run id (None while a run that started offline was never created)."""
        return self._session.run_id if self._session is not None else self._run_id

    @property
    def run(self) -> RunHandle | None:
        run_id = self.run_id
        if not (run_id and self.resolved_tracking_uri):
            return None
        from medkit_exp.tracking.model_link import model_context

        return RunHandle(run_id, self.resolved_tracking_uri, session=self._session,
                         model_context=model_context(self.experiment_name, sys.argv, self._best, self.datasets))

    def state_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "local_id": self._local_id, "best": self._best.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._restored = dict(state)

    # ------------------------------------------------------------------ events
    def on_train_begin(self, config: Any) -> None:
        if self._session is not None:  # a previous train() with this callback did not end
            self._finish("KILLED", upload_checkpoints=False)
        output_dir = Path(self.state.output_dir)
        self._local_id = self._restored.get("local_id") or uuid.uuid4().hex[:12]
        self._curves_drawn_at = None
        self._unlogged = None
        self._tables.reset()
        self._best.reset(getattr(config, "checkpoint_metric", None),
                         bool(getattr(config, "minimize_checkpoint_metric", False)))
        self._best.load_state_dict(self._restored.get("best") or {})  # a resumed run keeps its best
        session = self._new_session(self._run_request(config, output_dir))
        opened = session.open()
        self._session = session
        self.resolved_tracking_uri = opened["tracking_uri"]
        self._run_id = opened["run_id"]
        self.experiment_id = opened.get("experiment_id")  # None while MLflow was not reached
        session.describe()

    def on_log(self, logs: dict[str, float], step: int) -> None:
        values = {f"train/{key}": value for key, value in logs.items() if is_number(value)}
        if step % self.log_every_n_steps == 0:
            self._unlogged = None
            self._log_metrics(values, step)
        elif values:  # kept: logged at the next evaluation or the end unless a later step's come first
            self._unlogged = (values, step)

    def _log_unlogged(self) -> None:
        """The latest training values that ``log_every_n_steps`` skipped, at their own step: the
        last values of a run (or of a run shorter than ``log_every_n_steps``) are never dropped."""
        if self._unlogged is not None:
            values, step = self._unlogged
            self._unlogged = None
            self._log_metrics(values, step)

    def on_evaluate(self, metrics: dict[str, float], step: int) -> None:
        if self._session is None:
            return
        self._log_unlogged()
        values = {f"eval/{key}": value for key, value in metrics.items() if is_number(value)}
        train = self.state.history[-1].get("train", {}) if self.state.history else {}
        for key, value in train.items():
            if is_number(value):
                values["train/loss_avg" if key == "loss" else f"train/{key}"] = value
        timestamp = now_ms()  # one for the evaluation: the model's linked metrics repeat these points
        best = self._best.update(values, step, timestamp)
        if values and self._session is not None:
            self._session.submit(LogMetrics.at_step({**values, **best}, step, timestamp))
        self._tables.update(self.hooks, Path(self.state.output_dir) / ARTIFACTS_DIR, self._session.submit, step)
        if step >= self.state.max_steps:  # the history is complete: draw while the last checkpoint is written
            self._draw_learning_curves()

    def _log_metrics(self, values: dict[str, Any], step: int) -> None:
        if values and self._session is not None:
            self._session.submit(LogMetrics.at_step(values, step))

    def on_train_end(self) -> None:
        self._log_unlogged()
        self._finish(end_status(self.state), upload_checkpoints=True)

    def on_exception(self, exception: BaseException) -> None:
        if self._session is not None:
            self._log_unlogged()
            self._session.submit(SetTags({"error": f"{type(exception).__name__}: {exception}"[:5000]}))
        self._finish("KILLED" if isinstance(exception, KeyboardInterrupt) else "FAILED", upload_checkpoints=False)

    # ------------------------------------------------------------------ start
    def _new_session(self, request: dict[str, Any]) -> Any:
        """A session in a tracking worker (``worker``), else in this process; in this process too
        when no worker can be started (no ``sys.executable``, no process left...)."""
        if self.worker:
            from medkit_exp.tracking.worker import WorkerSession

            try:
                return WorkerSession(request)
            except OSError as error:
                logger.warning("No MLflow tracking worker (%s): tracking runs in the training process", error)
        from medkit_exp.tracking.session import RunSession

        return RunSession(request)

    def _run_request(self, config: Any, output_dir: Path) -> dict[str, Any]:
        """What the session needs (plain data): run tags, flattened params and the config files
        made here; git, host and package versions are read where the session runs."""
        from dataclasses import asdict

        from medkit_exp.tracking.context import dataset_tags, run_tags

        tags = {**run_tags(self.experiment_name, self.run_name, self.parent_run_id, output_dir),
                **dataset_tags(self.datasets)}
        tags.update({str(k): str(v) for k, v in redact_config(self.tags).items()})
        for hooks in self.hooks:  # facts about the component (a tagger's labels) win over the user's tags
            tags.update({str(k): str(v) for k, v in hooks.run_tags().items()})
        if self._restored:
            tags["resumed_at_step"] = str(self.state.global_step)
        # A library run's params: its TrainerConfig, and the precision it computes in ("auto" resolved)
        params = self.params if self.params is not None else {
            "trainer": {**trainer_config_dict(config), "precision_used": getattr(self.state, "precision", "32")}}
        folder = output_dir / ARTIFACTS_DIR / "config"
        folder.mkdir(parents=True, exist_ok=True)
        text = config_yaml(self.config_yaml, params)
        if text is not None:
            (folder / "config.yaml").write_text(text, encoding="utf-8")
        if self.overrides is not None:
            import yaml

            kept = [o for o in (redact_override(o) for o in self.overrides) if o is not None]
            (folder / "overrides.yaml").write_text(yaml.safe_dump(kept), encoding="utf-8")
        return {
            "tracking_uri": self.tracking_uri, "experiment_name": self.experiment_name, "run_name": self.run_name,
            "parent_run_id": self.parent_run_id, "artifact_location": self.artifact_location,
            "output_dir": str(output_dir), "local_id": self._local_id, "restored_run_id": self._restored.get("run_id"),
            "resumed": bool(self._restored), "launcher_run_id": self._launcher_run_id(),
            "flush_interval": self.flush_interval, "retry_interval": self.retry_interval,
            "http_max_retries": self.http_max_retries, "http_timeout": self.http_timeout,
            "system_metrics": self.system_metrics, "argv": list(sys.argv), "tags": tags,
            "params": mlflow_params(params), "datasets": [asdict(info) for info in self.datasets],
            "config_folder": str(folder) if any(folder.iterdir()) else None,
        }

    def _launcher_run_id(self) -> str | None:
        """``$MLFLOW_RUN_ID``: the run ``mlflow run`` created for this process, which a new training
        logs into when the store has it (else it starts its own). Sweep children get runs of their own."""
        return None if self.parent_run_id else os.environ.get("MLFLOW_RUN_ID") or None

    # ------------------------------------------------------------------ end
    def _finish(self, status: str, upload_checkpoints: bool) -> None:
        """Upload the end-of-run artifacts, run the hooks, flush, set the status and stop."""
        if self._session is None:
            return
        session, state = self._session, self.state
        session.stop_monitor()
        self._submit_artifacts(upload_checkpoints)
        session.submit(SetTags(summary_tags(state, status, self.log_checkpoints)))
        hooks_first = status != "FAILED" and session.online and self.run is not None
        if hooks_first:  # the uploads (file copies) go on while the hooks work
            run_hooks(self.hooks, status, state, self.run, self.log_models, session.online)
        session.flush(timeout=300)
        if status != "FAILED" and not hooks_first:  # offline so far: the flush may reach MLflow
            session.state()
            run_hooks(self.hooks, status, state, self.run, self.log_models, session.online)
        session.submit(SetStatus(status, end_time=now_ms()))
        closed = session.close(timeout=300)
        self._run_id = closed["run_id"]
        logger.info("MLflow run %s ended %s", self._run_id or "(not created yet)", status)
        if closed["pending"]:
            logger.warning(
                "MLflow unreachable: %s tracking operations of run %s are kept in %s; they are sent at the next "
                "training in this folder or with `python -m medkit_exp.tracking.spool %s`",
                closed["pending"], self._run_id or "(not created yet)", closed["spool_dir"], Path(state.output_dir),
            )
        self._session = None
        self._restored = {}

    def _submit_artifacts(self, upload_checkpoints: bool) -> None:
        assert self._session is not None
        for upload in end_uploads(self.state, self.log_checkpoints if upload_checkpoints else []):
            self._session.submit(upload)
        self._session.wake()  # uploads (I/O) go on while the plot is drawn
        if self._curves_drawn_at != self.state.global_step:
            self._draw_learning_curves()

    def _draw_learning_curves(self) -> None:
        """Have the session draw and upload the learning curves of the history as it is now."""
        output_dir = Path(self.state.output_dir)
        history = output_dir / HISTORY_FILE
        if self.plots and self._session is not None and history.exists():
            png = output_dir / ARTIFACTS_DIR / "plots" / "learning_curves.png"
            from medkit_exp.tracking.plots import log_learning_curves

            self._session.run_task(log_learning_curves, {
                "history": str(history), "png": str(png), "title": self.run_name,
                "metric": self._best.metric, "minimize": self._best.minimize})
            self._curves_drawn_at = self.state.global_step
