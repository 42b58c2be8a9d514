"""A sweep under ``torchrun``: rank 0 runs the study, every rank runs each trial's job.

``torchrun --nproc-per-node=N -m medkit_exp -m +experiment=ner hparams_search=ner_optuna ...``
starts N copies of the sweep. Only rank 0 talks to Optuna (opens the study, asks, tells), creates
the MLflow parent run and draws the plots; before each trial it broadcasts the trial's overrides
(:meth:`TrialChannel.announce`), and every other rank runs the same job with them
(:meth:`TrialChannel.follow`), so the Trainer trains each trial data-parallel in one run folder.
The pruning callback exists on rank 0 only (callbacks run there); it prunes through the Trainer's
control object, which the ranks agree on after each evaluation, so every rank stops at the same
step. The end of the sweep (n_trials reached, the timeout, an error) is broadcast too
(:meth:`TrialChannel.ending`), with rank 0's exit code, so no rank waits for a trial that will not
come. A trial's job that fails on one rank only outside the Trainer's agreements (its data
loading, say) leaves the other ranks waiting in a collective until ``trainer.distributed_timeout_s``.

Without torchrun (or with one process) the channel does nothing: the sweep runs as before.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from medkit_exp.sweeps.trial_context import TrialContext, active_trial

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialOrder:
    """What rank 0 sends before each trial: enough for another rank to run the same job."""

    number: int
    overrides: tuple[str, ...]
    study_name: str
    parent_run_id: str | None = None


@dataclass(frozen=True)
class RemoteTrial:
    """The trial as a rank other than 0 sees it: its number only (Optuna is rank 0's)."""

    number: int

    def report(self, value: float, step: int) -> None:
        raise RuntimeError("only rank 0 reports to Optuna: callbacks run there")

    def should_prune(self) -> bool:
        raise RuntimeError("only rank 0 asks Optuna: callbacks run there")


class TrialChannel:
    """Rank 0's trials, sent to the other ranks; inert in one process.

    context: the process group joined before Hydra (:func:`medkit_exp.launch.context`), or None.
    """

    def __init__(self, context: Any = None):
        self.context = context
        self._ended = False

    @classmethod
    def open(cls) -> TrialChannel:
        """The channel of the group this application joined under torchrun (inert without it)."""
        from medkit_exp import launch

        return cls(launch.context())

    @property
    def is_distributed(self) -> bool:
        return self.context is not None and self.context.is_distributed

    @property
    def is_follower(self) -> bool:
        """A rank other than 0: it runs rank 0's trials and never sees the study."""
        return self.is_distributed and not self.context.is_main

    def announce(self, order: TrialOrder) -> None:
        """On rank 0: tell the other ranks to run the trial ``order`` names (one collective)."""
        if self.is_distributed and not self._ended:
            self.context.broadcast({"trial": order})

    def end(self, exit_code: int) -> None:
        """On rank 0: tell the other ranks the sweep is over (once), with the exit code it ends with."""
        if not self.is_distributed or self._ended:
            return
        self._ended = True
        try:
            self.context.broadcast({"end": exit_code})
        except Exception as error:  # noqa: BLE001 - a broken group: the others end with torchrun's teardown
            logger.warning("Could not tell the other ranks the sweep ended (%s): torchrun stops them", error)

    @contextlib.contextmanager
    def ending(self) -> Iterator[None]:
        """Around rank 0's sweep: however it ends, the other ranks hear of it with its exit code."""
        try:
            yield
        except SystemExit as stop:
            self.end(0 if stop.code is None else stop.code if isinstance(stop.code, int) else 1)  # sys.exit's rule
            raise
        except BaseException:
            self.end(1)
            raise
        self.end(0)

    def follow(self, launch_job: Callable[[list[str], int], Any]) -> None:
        """On a rank other than 0: run each trial rank 0 announces with ``launch_job(overrides,
        number)`` until it announces the end; exit with rank 0's code when that is not 0."""
        while True:
            message = self.context.broadcast(None)
            if "end" in message:
                if message["end"]:
                    sys.exit(message["end"])  # rank 0 reported why; this rank adds no second line
                return
            order: TrialOrder = message["trial"]
            context = TrialContext(RemoteTrial(order.number), order.study_name, order.parent_run_id)
            with active_trial(context):  # the job knows it is a trial: named alike, errors kept in the job
                job = launch_job(list(order.overrides), order.number)
            _report_failure(job, order.number)


def _report_failure(job: Any, number: int) -> None:
    """A job that failed on this rank: its error shown (rank 0 records the trial's failure);
    one that only followed rank 0's failure (OtherRankError) adds nothing."""
    from hydra.core.utils import JobStatus

    if job.status == JobStatus.COMPLETED:
        return
    error = job._return_value
    if type(error).__name__ == "OtherRankError":
        logger.debug("Trial %d: %s", number, error)
        return
    logger.error("Trial %d failed on this rank: %s: %s", number, type(error).__name__, error)
