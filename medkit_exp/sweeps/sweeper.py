"""The Optuna sweeper: Optuna's ask/tell loop around Hydra's launcher, one trial at a time.

``python -m medkit_exp +experiment=ner hparams_search=ner_optuna`` (or ``-m
hydra/sweeper=medkit_optuna`` with a search space) runs it. Before any trial it checks the
search space against the composed config, builds the sampler, pruner and storage and opens the
study (a new one, or the one of that name in the storage, which it continues). Then, while the
study holds fewer than ``n_trials`` trials (see :mod:`medkit_exp.sweeps.budget`), it asks Optuna
for a trial, publishes it (:mod:`medkit_exp.sweeps.trial_context`), launches the training job through
Hydra's launcher with the trial's overrides, and tells Optuna the outcome: COMPLETE with the
job's return value (the best eval value of ``optimized_metric``), PRUNED when the pruning
callback stopped it, FAIL when it raised. A heartbeat marks running trials, so the trials of a
killed worker are failed and queued again by the next worker to start
(:mod:`medkit_exp.sweeps.heartbeat`). MLflow gets a parent run with one child per trial
(:mod:`medkit_exp.sweeps.mlflow_parent`); ``optimization_results.yaml`` lands in the sweep folder.
Under torchrun, rank 0 runs all of this and every rank runs each trial's job data-parallel
(:mod:`medkit_exp.sweeps.ranks`).

Hydra-specific code lives here and in :mod:`medkit_exp.sweeps.config`; heavy libraries are
imported when a sweep starts, so registering the plugin costs nothing.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.plugins.sweeper import Sweeper

from medkit_exp.errors import ConfigError, MedkitExpError, SweepError
from medkit_exp.sweeps.ranks import TrialChannel, TrialOrder
from medkit_exp.sweeps.search_space import SearchSpace
from medkit_exp.tracking.options import tracking_on

logger = logging.getLogger("medkit_exp.sweeps")
#: A trial's own log lines go to its log file (``<sweep dir>/<n>/cli.log``), its warnings and
#: errors to the terminal too: the terminal shows the sweep's config once and one line per trial.
TRIAL_LOGGING = ("++hydra.job_logging.handlers.console.level=WARNING",)
#: Hydra's launcher logs each job's overrides, which the trial's line names already.
LAUNCHER_LOGGER = "hydra._internal.core_plugins.basic_launcher"


@dataclass
class _Sweep:
    """What a sweep runs with, once checked."""

    study: Any
    space: SearchSpace
    settings: Any
    parent: Any = None  # SweepParentRun, or None without tracking
    pruning: bool = True


class OptunaSweeper(Sweeper):
    """Hydra sweeper running an Optuna study (see the module docstring and the README)."""

    def __init__(self, **settings: Any) -> None:
        super().__init__()
        self.raw_settings = settings
        self.hydra_context: Any = None
        self.config: Any = None
        self.launcher: Any = None
        self.channel = TrialChannel()  # inert until sweep() opens the torchrun group's

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        from hydra.core.plugins import Plugins

        from medkit_exp.app_setup import quiet_third_party
        from medkit_exp.redaction import install_log_redaction

        install_log_redaction()  # the sweep's and its trials' logs (cli.log) hold no credentials
        quiet_third_party()  # the trials run in this process: no third-party progress bars
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        if type(self.launcher).__name__ != "BasicLauncher":
            logger.warning(
                "hydra/launcher=%s runs jobs outside this process, where a job cannot see its trial: no pruning and "
                "no MLflow parent run link; the basic launcher (the default) has both",
                config.hydra.runtime.choices.get("hydra/launcher"),
            )

    def sweep(self, arguments: list[str]) -> Any:
        self.channel = TrialChannel.open()  # under torchrun: rank 0 runs the study, every rank each trial
        if self.channel.is_follower:
            return self.channel.follow(self._launch)
        with self.channel.ending():  # the other ranks hear of the end, whatever it is
            return self._sweep(arguments)

    def _sweep(self, arguments: list[str]) -> Any:
        try:
            sweep = self._prepare(arguments)
            return self._run(sweep)
        except MedkitExpError as error:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            logger.error("%s", error)
            print(f"Error: {error}\n(set HYDRA_FULL_ERROR=1 for the full traceback)", file=sys.stderr)
            sys.exit(2)

    # ------------------------------------------------------------------ before any trial
    def _prepare(self, arguments: list[str]) -> _Sweep:
        """Check everything a trial needs; open the study and the MLflow parent run."""
        from omegaconf import OmegaConf

        from medkit_exp.sweeps.factories import make_pruner, make_sampler, make_storage, redact_url
        from medkit_exp.sweeps.heartbeat import fail_stale_trials
        from medkit_exp.sweeps.search_space import grid_space, parse_search_space
        from medkit_exp.sweeps.study import SweepSettings, default_study_name, open_study, resolve_direction

        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # its "study created" line: ours says it
        raw = OmegaConf.to_container(OmegaConf.create(self.raw_settings), resolve=True)
        settings = SweepSettings(**raw)
        space = parse_search_space(settings.params, arguments)
        if not space.distributions:
            raise ConfigError("hydra.sweeper.params", "the search space is empty: give at least one parameter to sweep")
        self._check_space(space)
        grid = grid_space(space) if str((settings.sampler or {}).get("name", "")).lower() == "grid" else None
        make_sampler(settings.sampler, grid)  # a bad sampler fails before the storage is touched
        pruner = make_pruner(settings.pruner)
        direction = resolve_direction(settings.direction, bool(self.config.trainer.get("minimize_checkpoint_metric")))
        self._prepare_tracking_store()
        storage = make_storage(settings.storage)
        settings.study_name = settings.study_name or default_study_name(self.config.experiment_name)
        study, created = open_study(storage, settings.study_name, direction, None, pruner)
        study.sampler = self._worker_sampler(settings.sampler, grid, created)
        settings.direction = direction
        logger.info(
            "Study %r (%s, storage %s): %s; search space: %s", study.study_name, "new" if created else "continued",
            redact_url(settings.storage) or "in memory", _counts_text(study), space.describe(),
        )
        _print_config(self.config)  # once: a trial prints its overrides only (the "Trial N:" line)
        sweep = _Sweep(study, space, settings, pruning=type(pruner).__name__ != "NopPruner")
        if (self.config.get("callbacks") or {}).get("pruning") is None:  # the entry hparams_search=ner_optuna sets
            logger.warning("No callbacks.pruning entry: the trials report no evaluation to Optuna before they end, "
                           "none is pruned, and their MLflow runs get no optuna.trial_state tag")
        sweep.parent = self._open_parent(sweep, created)
        for number in fail_stale_trials(study, settings.stale_after, settings.stale_trial_retries):
            if sweep.parent is not None:
                sweep.parent.mark_child(study.trials[number].user_attrs.get("mlflow_run_id"), "FAIL", error="worker died")
        return sweep

    @staticmethod
    def _worker_sampler(sampler: dict[str, Any] | None, grid: Any, created: bool) -> Any:
        from medkit_exp.sweeps.factories import make_sampler
        from medkit_exp.sweeps.study import worker_seed

        settings = dict(sampler or {"name": "tpe"})
        seed = worker_seed(settings.get("seed"), created)
        if seed != settings.get("seed"):
            logger.info("Sampler seed %s (from seed %s: this worker joins or continues the study)", seed, settings["seed"])
            settings["seed"] = seed
        return make_sampler(settings, grid)

    def _check_space(self, space: SearchSpace) -> None:
        """Parameter paths exist; the values the space can produce compose with the config."""
        from medkit_exp.sweeps.search_space import format_override, probe_values, validate_keys

        loader = self.hydra_context.config_loader
        choices = self.config.hydra.runtime.choices
        groups = {
            key.lstrip("+~"): loader.get_group_options(key.lstrip("+~"))
            for key in space.distributions
            if key.lstrip("+~") in choices
        }
        validate_keys(space, self.config, groups)
        for probe in probe_values(space):
            if self._composes(space.overrides(probe)) is None:
                continue
            for key, value in probe.items():  # name the parameter that does not fit
                error = self._composes([*space.fixed.values(), format_override(key, value)])
                if error is not None:
                    origin = space.origins.get(key, key)
                    raise ConfigError(origin if origin.startswith("hydra.") else key,
                                      f"the value {value!r} does not fit the config: {error}")
            error = self._composes(space.overrides(probe))
            raise ConfigError("hydra.sweeper.params", f"the overrides {space.overrides(probe)} do not compose: {error}")

    def _composes(self, overrides: list[str]) -> str | None:
        """None when the config composes with ``overrides``, else the first line of the error."""
        try:
            self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            return None
        except Exception as error:  # noqa: BLE001 - Hydra and OmegaConf raise many types here
            return (str(error).strip().splitlines() or [type(error).__name__])[0]

    def _prepare_tracking_store(self) -> None:
        """The MLflow store, created and migrated once (under a file lock: workers started together
        would race on its migration) before the study, the parent run or any trial opens it."""
        from medkit_exp.tracking.uris import resolve_tracking_uri
        from medkit_exp.tracking.store import prepare_store

        tracking = self.config.get("tracking") if tracking_on(self.config) else None
        if tracking is not None:
            prepare_store(resolve_tracking_uri(tracking.get("tracking_uri")))

    def _open_parent(self, sweep: _Sweep, created: bool) -> Any:
        from medkit_exp.redaction import redact_text
        from medkit_exp.sweeps.factories import describe, redact_url
        from medkit_exp.sweeps.mlflow_parent import SweepParentRun
        from medkit_exp.tracking.uris import resolve_tracking_uri

        tracking = self.config.get("tracking") if tracking_on(self.config) else None
        if tracking is None:
            return None
        settings = sweep.settings
        description = {
            "study_name": sweep.study.study_name, "storage": redact_url(settings.storage) or "in memory",
            "sampler": describe(settings.sampler, "tpe"), "pruner": describe(settings.pruner, "none"),
            "direction": settings.direction, "optimized_metric": self.config.get("optimized_metric"),
            "search_space": sweep.space.describe(),
            "fixed_overrides": ", ".join(redact_text(o) for o in sweep.space.fixed.values()) or "none",
        }
        try:
            return SweepParentRun.open(
                resolve_tracking_uri(tracking.get("tracking_uri")), tracking.get("experiment_name") or "default",
                sweep.study, created, description, settings.n_trials, wait=0.0 if sweep.study.trials else 30.0,
            )
        except Exception as error:  # noqa: BLE001 - the sweep runs on; each trial still tracks itself
            logger.warning("MLflow parent run not created (%s): trials are tracked without a parent", error)
            return None

    # ------------------------------------------------------------------ trials
    def _run(self, sweep: _Sweep) -> dict[str, Any]:
        from medkit_exp.sweeps.budget import close_surplus, has_room, is_surplus

        settings, study = sweep.settings, sweep.study
        ran: Counter[str] = Counter()
        max_failures = settings.max_failure_rate * settings.n_trials
        status, stop = "FINISHED", None
        try:
            while stop is None and has_room(study, settings.n_trials):
                if _grid_done(study):
                    logger.info("Every point of the grid has a trial: sweep done")
                    break
                trial = study.ask(sweep.space.distributions)
                if is_surplus(study, trial.number, settings.n_trials):
                    close_surplus(study, trial)  # another worker took the last slot meanwhile
                    break
                state = self._run_trial(sweep, trial)
                ran[state] += 1
                if state == "INTERRUPTED":
                    stop, status = SweepError(f"trial {trial.number} was interrupted: sweep stopped"), "KILLED"
                elif ran["FAIL"] > max_failures:
                    stop = SweepError(
                        f"{ran['FAIL']} trials failed, more than max_failure_rate={settings.max_failure_rate} x "
                        f"n_trials={settings.n_trials}: sweep stopped (see the trials' logs for the errors)"
                    )
                    status = "FAILED"
        except BaseException:
            self._finish(sweep, ran, "KILLED")
            raise
        results = self._finish(sweep, ran, status)
        if stop is not None:
            raise stop
        return results

    def _run_trial(self, sweep: _Sweep, trial: Any) -> str:
        """Run one trial's job and tell Optuna its outcome; returns its state name."""
        from hydra.core.utils import JobStatus
        from optuna.trial import TrialState

        from medkit_exp.sweeps.trial_context import TrialContext, active_trial
        from medkit_exp.sweeps.heartbeat import HeartbeatThread
        from medkit_exp.tracking.params import redact_override

        overrides = sweep.space.overrides(trial.params)
        parent_id = sweep.parent.run_id if sweep.parent is not None else None
        context = TrialContext(trial, sweep.study.study_name, parent_id, pruning=sweep.pruning)
        trial.set_user_attr("overrides", [redact_override(o) for o in overrides])  # the storage keeps no secret
        logger.debug("Trial %d: %s", trial.number, " ".join(overrides[len(sweep.space.fixed):]))
        try:
            with HeartbeatThread(trial, sweep.settings.heartbeat_interval), active_trial(context):
                self.channel.announce(TrialOrder(trial.number, tuple(overrides), sweep.study.study_name, parent_id))
                job = self._launch(overrides, trial.number)
        except BaseException as error:  # Ctrl-C outside the training loop: close the trial first
            self._tell(sweep, context, TrialState.FAIL, None, f"{type(error).__name__}: {error}")
            raise
        if job.hydra_cfg is not None:
            trial.set_user_attr("output_dir", str(job.hydra_cfg.hydra.runtime.output_dir))
            _redact_job_files(Path(str(job.hydra_cfg.hydra.runtime.output_dir)))
        if context.child_run_id:
            trial.set_user_attr("mlflow_run_id", context.child_run_id)
        value = job._return_value if job.status == JobStatus.COMPLETED else None
        if job.status != JobStatus.COMPLETED:
            error = job._return_value
            logger.error("Trial %d failed: %s: %s", trial.number, type(error).__name__, error,
                         exc_info=None if isinstance(error, MedkitExpError) else error)
            self._tell(sweep, context, TrialState.FAIL, None, f"{type(error).__name__}: {error}")
            return "FAIL"
        if context.interrupted:
            self._tell(sweep, context, TrialState.FAIL, None, "interrupted")
            return "INTERRUPTED"
        if context.pruned:
            self._tell(sweep, context, TrialState.PRUNED, None, None)
            return "PRUNED"
        if value is None or not math.isfinite(float(value)):
            message = f"the task returned {value!r}: no evaluation of {self.config.get('optimized_metric')!r}"
            self._tell(sweep, context, TrialState.FAIL, None, message)
            return "FAIL"
        self._tell(sweep, context, TrialState.COMPLETE, float(value), None)
        return "COMPLETE"

    def _launch(self, overrides: list[str], number: int) -> Any:
        """One trial's job through Hydra's launcher (under torchrun, on every rank alike)."""
        with _quiet_launcher():
            (job,) = self.launcher.launch([[*overrides, *self._trial_logging()]], initial_job_idx=number)
        return job

    def _trial_logging(self) -> tuple[str, ...]:
        """:data:`TRIAL_LOGGING`, where the job logging has a console handler (not with
        ``hydra/job_logging=disabled`` or a user's own without one)."""
        handlers = (self.config.hydra.get("job_logging") or {}).get("handlers") or {}
        return TRIAL_LOGGING if "console" in handlers else ()

    def _tell(self, sweep: _Sweep, context: Any, state: Any, value: float | None, error: str | None) -> None:
        from medkit_exp.redaction import redact_text

        study, trial = sweep.study, context.trial
        error = redact_text(error) if error else error
        if error:
            trial.set_user_attr("error", error[:2000])
        frozen = study.tell(trial, value, state=state)
        run_id = context.child_run_id if sweep.parent is not None else None
        logger.info("%s", trial_line(frozen, str(self.config.get("optimized_metric")), context.pruned_at_step,
                                     error, run_id) + _best_text(study))
        if sweep.parent is None:
            return
        if context.child_run_id is None and state.name == "FAIL":
            context.child_run_id = sweep.parent.failed_child(context, frozen.params, error or "failed")
        else:
            sweep.parent.mark_child(context.child_run_id, state.name, frozen.value, error)
        sweep.parent.trial_finished(study, frozen)

    # ------------------------------------------------------------------ end
    def _finish(self, sweep: _Sweep, ran: Counter[str], status: str) -> dict[str, Any]:
        """Write ``optimization_results.yaml``, print the summary, close the parent run."""
        from medkit_exp.sweeps.factories import redact_url
        from medkit_exp.sweeps.plots import draw_study_plots
        from medkit_exp.sweeps.results import study_results, summary, write_results
        from medkit_exp.sweeps.study import best_trial

        settings, study, parent = sweep.settings, sweep.study, sweep.parent
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        described = {
            "storage": redact_url(settings.storage), "direction": settings.direction,
            "metric": self.config.get("optimized_metric"), "n_trials": settings.n_trials,
            "search_space": sweep.space.describe(),
            "mlflow_parent_run_id": parent.run_id if parent else None,
            "mlflow_tracking_uri": redact_url(parent.tracking_uri) if parent else None,
        }
        results = study_results(study, described, dict(ran))
        path = write_results(results, sweep_dir)
        print(summary(results, path), flush=True)
        if parent is not None:
            files: dict[str, Path] = {"optimization_results.yaml": path}
            best = best_trial(study)
            if best is not None:
                local = Path(best.user_attrs["output_dir"]) / "config_resolved.yaml" if best.user_attrs.get("output_dir") else None
                config = parent.child_config(best, local)
                if config is not None:
                    files["best_trial/config.yaml"] = config
            plots = draw_study_plots(study, sweep_dir / "plots", metric=self.config.get("optimized_metric"))
            parent.finish(study, files, plots, status)
        return results


def trial_line(frozen: Any, metric: str, pruned_at_step: int | None, error: str | None, run_id: str | None) -> str:
    """A finished trial in one line: state, value, params, its MLflow run and status (a pruned
    trial's run ends KILLED: MLflow has no PRUNED status), and the error of a failed one."""
    from medkit_exp.sweeps.mlflow_parent import MLFLOW_STATUS

    state = frozen.state.name
    where = f" at step {pruned_at_step}" if state == "PRUNED" and pruned_at_step is not None else ""
    parts = [f"Trial {frozen.number} {state}{where}"]
    if frozen.value is not None:
        parts.append(f"{metric}={frozen.value:.4f}" + (" (its last evaluation)" if state == "PRUNED" else ""))
    parts.append(" ".join(f"{key}={_short(value)}" for key, value in frozen.params.items()))
    if run_id:
        status = MLFLOW_STATUS.get(state, "FAILED")
        parts.append(f"MLflow run {run_id[:8]} {status}" + (" (pruned)" if state == "PRUNED" else ""))
    if error:
        parts.append(f"error: {error}")
    return " | ".join(part for part in parts if part)


def _short(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


@contextlib.contextmanager
def _quiet_launcher() -> Iterator[None]:
    launcher_logger = logging.getLogger(LAUNCHER_LOGGER)
    level = launcher_logger.level
    launcher_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        launcher_logger.setLevel(level)


def _print_config(config: Any) -> None:
    """The config every trial starts from, as the training application prints it (less Hydra's)."""
    from medkit_exp.config_tree import config_tree

    print(config_tree(config, leave_out=("hydra",)), flush=True)


def _redact_job_files(output_dir: Path) -> None:
    """Hydra wrote the trial's config and overrides (``.hydra/*.yaml``) as given: without secrets now."""
    from medkit_exp.tracking.params import redact_yaml_files

    try:
        redact_yaml_files(output_dir)
    except OSError as error:
        logger.warning("Could not redact the Hydra files of %s: %s", output_dir, error)


def _grid_done(study: Any) -> bool:
    exhausted = getattr(study.sampler, "is_exhausted", None)
    return bool(exhausted and exhausted(study))


def _counts_text(study: Any) -> str:
    from medkit_exp.sweeps.study import state_counts

    return ", ".join(f"{n} {state}" for state, n in state_counts(study).items()) or "no trial yet"


def _best_text(study: Any) -> str:
    from medkit_exp.sweeps.study import best_trial

    best = best_trial(study)
    return "" if best is None else f" | best so far: {best.value:.4f} (trial {best.number})"
