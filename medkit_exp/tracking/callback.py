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
  ``log_every_n_steps`` steps; ``eval/<metric>`` at each evaluation; ``train/loss_avg`` (mean
  training loss since the previous evaluation) and ``train/<metric>`` (training metrics, when
  computed) at each evaluation.
- tags: ``git.commit``, ``git.dirty``, ``git.branch`` (and ``mlflow.source.git.commit``),
  ``command``, ``host``, ``versions.{python,torch,transformers,medkit_exp,mlflow}``,
  ``experiment_name``, ``run_name``, ``output_dir``, ``data.<name>.{digest,count,source}``,
  ``mlflow.parentRunId`` (child runs of a sweep), ``stop_reason``, ``global_step``,
  ``best_metric`` and the user's ``tags``.
- dataset inputs: each of ``datasets`` (name, digest, source, record count, context tag).
- artifacts: ``config/config.yaml``, ``config/overrides.yaml``, ``history/history.jsonl``,
  ``plots/learning_curves.png``, ``checkpoints/best/`` and ``checkpoints/last/`` (per
  ``log_checkpoints``; only the first when they are the same checkpoint), and whatever the
  ``log_model`` and ``extra_artifacts`` hooks add.
- status: FINISHED, KILLED (SIGTERM/SIGINT, ``state.interrupted``) or FAILED (an exception).

A resumed training (``trainer.train(resume_from_checkpoint=...)``) reattaches to the same run
(its id travels in the checkpoint), keeps its params and continues its metric histories.
When MLflow is unreachable, training goes on and the data waits in ``OUTPUT_DIR/mlflow_spool/``
(see :mod:`medkit_exp.tracking.spool`).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from medkit_exp.training.callbacks import TrainerCallback, TrainerState
from medkit_exp.tracking.datasets import DatasetInfo, entity_dict
from medkit_exp.tracking.ops import MetricDeduper, create_run, is_permanent_error, now_ms
from medkit_exp.tracking.params import config_yaml, mlflow_params, redact_config, redact_override
from medkit_exp.tracking.runs import (
    RunHandle,
    checkpoint_kinds,
    configure_http_env,
    is_number,
    logged_max_steps,
    resolve_tracking_uri,
    start_system_metrics,
    stop_system_metrics,
    trainer_config_dict,
)
from medkit_exp.tracking.sink import AsyncRunLogger
from medkit_exp.tracking.spool import RunSpool, replay, run_spools

logger = logging.getLogger(__name__)

ARTIFACTS_DIR = "mlflow_artifacts"  # files made for MLflow, in the run's output folder
HISTORY_FILE = "history.jsonl"

ModelLogger = Callable[[str, RunHandle], None]
ArtifactHook = Callable[[RunHandle, TrainerState], None]


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
    log_model: a hook ``model_logger(checkpoint_dir, run)`` that logs the best checkpoint as a model
        (e.g. a transformers flavor), called at the end of a finished run.
    parent_run_id: makes this run a child (tag ``mlflow.parentRunId``), for sweeps.
    plots: draw and upload the learning curves.
    system_metrics: MLflow's own system metrics monitor (needs psutil).
    config_yaml: the resolved config as YAML text, uploaded redacted as ``config/config.yaml``.
    overrides: the command-line overrides, uploaded redacted as ``config/overrides.yaml``.
    datasets: :func:`describe_dataset` results, logged as dataset inputs and ``data.*`` tags.
    extra_artifacts: ``hook(run, state)`` called at the end of a finished or interrupted run.
    artifact_location: artifact root of a new experiment (None: the store's default).
    flush_interval: seconds between two sends of the background logger.
    retry_interval: seconds between two tries to reach an unreachable server.
    http_max_retries, http_timeout: MLflow HTTP settings used unless set in the environment.
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
        log_model: ModelLogger | None = None,
        parent_run_id: str | None = None,
        plots: bool = True,
        system_metrics: bool = False,
        config_yaml: str | None = None,
        overrides: Sequence[str] | None = None,
        datasets: Sequence[DatasetInfo] | None = None,
        extra_artifacts: Sequence[ArtifactHook] = (),
        artifact_location: str | None = None,
        flush_interval: float = 5.0,
        retry_interval: float = 10.0,
        http_max_retries: int | None = None,
        http_timeout: int | None = None,
    ):
        if log_every_n_steps < 1:
            from medkit_exp.errors import ConfigError

            raise ConfigError("tracking.log_every_n_steps", f"must be >= 1, got {log_every_n_steps}")
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "medkit_exp"
        self.run_name = run_name
        self.params = params
        self.tags = dict(tags or {})
        self.log_every_n_steps = log_every_n_steps
        self.log_checkpoints = checkpoint_kinds(log_checkpoints)
        self.log_model = log_model
        self.parent_run_id = parent_run_id
        self.plots = plots
        self.system_metrics = system_metrics
        self.config_yaml = config_yaml
        self.overrides = list(overrides) if overrides is not None else None
        self.datasets = list(datasets or [])
        self.extra_artifacts = list(extra_artifacts)
        self.artifact_location = artifact_location
        self.flush_interval, self.retry_interval = flush_interval, retry_interval
        self.http_max_retries, self.http_timeout = http_max_retries, http_timeout
        self.resolved_tracking_uri: str | None = None
        self._restored: dict[str, Any] = {}
        self._local_id: str | None = None
        self._run_id: str | None = None
        self._logger: AsyncRunLogger | None = None
        self._monitor: Any = None

    # ------------------------------------------------------------------ public
    @property
    def run_id(self) -> str | None:
        """The MLflow run id (None while a run that started offline was never created)."""
        return self._logger.run_id if self._logger is not None else self._run_id

    @property
    def run(self) -> RunHandle | None:
        run_id = self.run_id
        return RunHandle(run_id, self.resolved_tracking_uri) if run_id and self.resolved_tracking_uri else None

    def state_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "local_id": self._local_id}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._restored = dict(state)

    # ------------------------------------------------------------------ events
    def on_train_begin(self, config: Any) -> None:
        from mlflow import MlflowClient

        if self._logger is not None:  # a previous train() with this callback did not end
            self._finish("KILLED", upload_checkpoints=False)
        uri = self.resolved_tracking_uri = resolve_tracking_uri(self.tracking_uri)
        configure_http_env(uri, self.http_max_retries, self.http_timeout)
        client = MlflowClient(uri)
        output_dir = Path(self.state.output_dir)
        self._replay_leftovers(output_dir)
        self._local_id = self._restored.get("local_id") or uuid.uuid4().hex[:12]
        spool = RunSpool.for_run(output_dir, self._local_id)
        spec = spool.read_spec() or self._new_spec(uri)
        run_id = self._restored.get("run_id") or spec.get("run_id") or self._launcher_run_id()
        online, run_id, deduper = self._open_run(client, spool, spec, run_id)
        self._run_id = run_id
        self._logger = AsyncRunLogger(
            client, run_id, spool, online=online, flush_interval=self.flush_interval,
            retry_interval=self.retry_interval, deduper=deduper,
        )
        self._submit_run_description(config, output_dir, reattached=bool(self._restored))
        if self.system_metrics and online:
            self._monitor = start_system_metrics(run_id, uri, resume=bool(self._restored))

    def on_log(self, logs: dict[str, float], step: int) -> None:
        if self._logger is not None and step % self.log_every_n_steps == 0:
            self._logger.log_metrics({f"train/{key}": value for key, value in logs.items() if is_number(value)}, step)

    def on_evaluate(self, metrics: dict[str, float], step: int) -> None:
        if self._logger is None:
            return
        values = {f"eval/{key}": value for key, value in metrics.items() if is_number(value)}
        train = self.state.history[-1].get("train", {}) if self.state.history else {}
        for key, value in train.items():
            if is_number(value):
                values["train/loss_avg" if key == "loss" else f"train/{key}"] = value
        self._logger.log_metrics(values, step)

    def on_train_end(self) -> None:
        self._finish("KILLED" if self.state.interrupted else "FINISHED", upload_checkpoints=True)

    def on_exception(self, exception: BaseException) -> None:
        if self._logger is not None:
            self._logger.submit({"op": "tags", "tags": {"error": f"{type(exception).__name__}: {exception}"[:5000]}})
        self._finish("KILLED" if isinstance(exception, KeyboardInterrupt) else "FAILED", upload_checkpoints=False)

    # ------------------------------------------------------------------ start
    def _launcher_run_id(self) -> str | None:
        """``$MLFLOW_RUN_ID``: the run ``mlflow run`` created for this process, which a new training
        logs into when the store has it (else it starts its own). Sweep children get runs of their own."""
        return None if self.parent_run_id else os.environ.get("MLFLOW_RUN_ID") or None

    def _new_spec(self, uri: str) -> dict[str, Any]:
        return {
            "local_id": self._local_id, "tracking_uri": uri, "experiment_name": self.experiment_name,
            "run_name": self.run_name, "parent_run_id": self.parent_run_id,
            "artifact_location": self.artifact_location, "start_time": now_ms(), "run_id": None,
        }

    def _replay_leftovers(self, output_dir: Path) -> None:
        """Send what earlier trainings in this folder spooled (each to the URI it recorded)."""
        from mlflow import MlflowClient

        for spool in run_spools(output_dir):
            spec = spool.read_spec() or {}
            if not spool.has_pending() and spec.get("run_id"):
                continue
            try:
                replay(spool, MlflowClient(spec.get("tracking_uri") or self.resolved_tracking_uri))
            except Exception as error:  # noqa: BLE001 - still unreachable: the spool stays
                logger.warning("Spooled MLflow data in %s not sent yet: %s", spool.directory, str(error)[:200])

    def _open_run(self, client: Any, spool: RunSpool, spec: dict[str, Any], run_id: str | None) -> tuple[bool, str | None, MetricDeduper]:
        """Reattach to ``run_id`` (or create the run), send what this run spooled earlier, and
        note the steps the run has (a resumed training redoes the steps after its checkpoint).

        Returns ``(online, run_id, deduper)``; offline when the server does not answer.
        """
        deduper = MetricDeduper()
        try:
            run_id = self._reattach_or_create(client, spec, run_id)
            spec["run_id"] = run_id
            spool.write_spec(spec)
            if spool.has_pending():  # left by an earlier attempt: it goes first, in order
                replay(spool, client)
            if self._restored:
                deduper.skip_through = logged_max_steps(client, run_id)
            return True, run_id, deduper
        except Exception as error:  # noqa: BLE001 - unreachable server: go on offline
            if is_permanent_error(error):
                raise  # a bad experiment name or parent run: no retry would fix it
            spec["run_id"] = run_id
            spool.write_spec(spec)
            logger.warning(
                "MLflow tracking server %s unreachable (%s): training goes on; tracking data is kept in %s",
                self.resolved_tracking_uri, str(error).splitlines()[0][:200] if str(error) else type(error).__name__,
                spool.directory,
            )
            return False, run_id, deduper

    def _reattach_or_create(self, client: Any, spec: dict[str, Any], run_id: str | None) -> str:
        if run_id:
            try:
                client.get_run(run_id)
                logger.info("Reattached to MLflow run %s", run_id)
                return run_id
            except Exception as error:
                if not is_permanent_error(error):
                    raise
                logger.warning("MLflow run %s not found (%s): starting a new run", run_id, str(error)[:200])
        run_id = create_run(client, spec)
        logger.info("MLflow run %s in experiment %r at %s", run_id, self.experiment_name, self.resolved_tracking_uri)
        return run_id

    def _submit_run_description(self, config: Any, output_dir: Path, reattached: bool) -> None:
        from medkit_exp.tracking.context import context_tags, dataset_tags, run_tags

        assert self._logger is not None
        submit = self._logger.submit
        tags = {**context_tags(), **run_tags(self.experiment_name, self.run_name, self.parent_run_id, output_dir),
                **dataset_tags(self.datasets)}
        tags.update({str(k): str(v) for k, v in redact_config(self.tags).items()})
        if reattached:
            tags["resumed_at_step"] = str(self.state.global_step)
        if reattached:
            submit({"op": "status", "status": "RUNNING", "end_time": None})
        submit({"op": "tags", "tags": tags})
        params = self.params if self.params is not None else {"trainer": trainer_config_dict(config)}
        submit({"op": "params", "params": mlflow_params(params)})
        if self.datasets:
            datasets = [{"entity": entity_dict(info), "context": info.context} for info in self.datasets]
            submit({"op": "inputs", "datasets": datasets})
        folder = output_dir / ARTIFACTS_DIR / "config"
        folder.mkdir(parents=True, exist_ok=True)
        text = config_yaml(self.config_yaml, params)
        if text is not None:
            (folder / "config.yaml").write_text(text, encoding="utf-8")
        if self.overrides is not None:
            import yaml

            kept = [o for o in (redact_override(o) for o in self.overrides) if o is not None]
            (folder / "overrides.yaml").write_text(yaml.safe_dump(kept), encoding="utf-8")
        if any(folder.iterdir()):
            submit({"op": "artifact", "local_path": str(folder), "artifact_path": "config"})

    # ------------------------------------------------------------------ end
    def _finish(self, status: str, upload_checkpoints: bool) -> None:
        """Upload the end-of-run artifacts, run the hooks, flush, set the status and stop."""
        if self._logger is None:
            return
        sink, state = self._logger, self.state
        if self._monitor is not None:
            stop_system_metrics(self._monitor)
            self._monitor = None
        self._submit_artifacts(upload_checkpoints)
        sink.submit({"op": "tags", "tags": self._summary_tags(status)})
        hooks_first = status != "FAILED" and sink.online and self.run is not None
        if hooks_first:  # the uploads (file copies) go on while the hooks work
            self._run_hooks(status, state)
        sink.flush(timeout=300)
        if status != "FAILED" and not hooks_first:  # offline so far: the flush may reach MLflow
            self._run_hooks(status, state)
        sink.submit({"op": "status", "status": status, "end_time": now_ms()})
        sink.close(timeout=300)
        self._run_id = sink.run_id
        if sink.spool.has_pending():
            logger.warning(
                "MLflow unreachable: %s tracking operations of run %s are kept in %s; they are sent at the next "
                "training in this folder or with `python -m medkit_exp.tracking.spool %s`",
                len(sink.spool.pending()), self._run_id or "(not created yet)", sink.spool.directory,
                Path(state.output_dir),
            )
        self._logger = None
        self._restored = {}

    def _submit_artifacts(self, upload_checkpoints: bool) -> None:
        assert self._logger is not None
        state, submit = self.state, self._logger.submit
        output_dir = Path(state.output_dir)
        history = output_dir / HISTORY_FILE
        if history.exists():
            submit({"op": "artifact", "local_path": str(history), "artifact_path": "history"})
        uploaded: set[str] = set()
        for kind in self.log_checkpoints if upload_checkpoints else []:
            path = state.best_checkpoint if kind == "best" else state.last_checkpoint
            if path and Path(path).is_dir() and path not in uploaded:
                uploaded.add(path)
                submit({"op": "artifact", "local_path": str(path), "artifact_path": f"checkpoints/{kind}", "link": True})
        self._logger.wake()  # uploads (I/O) go on while the plot is drawn
        if self.plots and history.exists():
            png = self._draw_plots(history, output_dir / ARTIFACTS_DIR / "plots" / "learning_curves.png")
            if png is not None:
                submit({"op": "artifact", "local_path": str(png), "artifact_path": "plots"})

    def _draw_plots(self, history: Path, png: Path) -> Path | None:
        try:
            from medkit_exp.tracking.plots import plot_learning_curves

            return plot_learning_curves(history, png, title=self.run_name)
        except Exception:  # noqa: BLE001 - a plot is never worth a failed run
            logger.exception("Could not draw the learning curves")
            return None

    def _summary_tags(self, status: str) -> dict[str, str]:
        state = self.state
        tags = {"status": status, "global_step": str(state.global_step)}
        if state.stop_reason:
            tags["stop_reason"] = state.stop_reason
        if state.best_metric is not None:
            tags["best_metric"] = str(state.best_metric)
        for kind in self.log_checkpoints:
            path = state.best_checkpoint if kind == "best" else state.last_checkpoint
            if path:
                tags[f"checkpoint.{kind}"] = Path(path).name
        return tags

    def _run_hooks(self, status: str, state: TrainerState) -> None:
        hooks: list[tuple[str, Callable[[], None]]] = []
        run = self.run
        if self.log_model is not None and status == "FINISHED":
            checkpoint = state.best_checkpoint or state.last_checkpoint
            if checkpoint:
                hooks.append(("log_model", lambda: self.log_model(checkpoint, run)))
        hooks += [(getattr(h, "__name__", repr(h)), (lambda h=h: h(run, state))) for h in self.extra_artifacts]
        if hooks and (self._logger is None or not self._logger.online or run is None):
            logger.warning("MLflow unreachable: hooks %s not run", ", ".join(name for name, _ in hooks))
            return
        for name, hook in hooks:
            started = time.perf_counter()
            try:
                hook()
            except Exception:  # noqa: BLE001 - the run's data is safe; report and go on
                logger.exception("MLflow hook %s failed", name)
            logger.debug("MLflow hook %s took %.2fs", name, time.perf_counter() - started)
