"""What the loop must do next, read from the config, the state and the callbacks' requests.

Each answer is a pure reading: the Trainer asks, then acts (evaluates, saves, stops).
"""

from __future__ import annotations

from pathlib import Path

from medkit_exp.training.events import TrainerControl, TrainerState
from medkit_exp.training.checkpoint import checkpoint_name
from medkit_exp.training.config import TrainerConfig


class Due:
    """When an epoch, an evaluation, a checkpoint or the run itself is due."""

    def __init__(self, config: TrainerConfig, state: TrainerState, control: TrainerControl):
        self.config, self.state, self.control = config, state, control

    def in_epoch(self) -> bool:
        """An epoch has begun (they count from 1) and has batches left: the run is inside it."""
        state = self.state
        return state.epoch > 0 and state.batch_in_epoch < state.nb_batches_per_epoch

    def finished(self) -> bool:
        """A stop was requested, ``max_steps`` are done, or every epoch is."""
        state = self.state
        last_epoch_done = state.batch_in_epoch >= state.nb_batches_per_epoch
        epochs_done = state.epoch >= self.config.nb_training_epochs and last_epoch_done
        return self.control.should_stop or state.global_step >= state.max_steps or epochs_done

    def eval_by_steps(self) -> bool:
        config = self.config
        return config.eval_strategy == "steps" and self.state.global_step % config.eval_steps == 0

    def eval_at_epoch_end(self, complete: bool) -> bool:
        """At an epoch's end (``complete``) or the run's inside one."""
        strategy = self.config.eval_strategy
        if strategy == "no":
            return self.control.should_evaluate
        due = (complete and strategy == "epoch") or self.eval_by_steps()
        if self.state.interrupted:  # a signal: evaluate only if this step was due anyway
            return due
        return due or self.finished() or self.control.should_evaluate

    def save(self, evaluated: bool) -> bool:
        """Every ``checkpoint_period`` evaluations, on a callback's request, after a signal."""
        period = self.config.checkpoint_period
        by_period = evaluated and period > 0 and self.state.nb_evaluations % period == 0
        return by_period or self.control.should_save or self.state.interrupted

    def saved_at_this_step(self) -> bool:
        last = self.state.last_checkpoint
        return last is not None and Path(last).name == checkpoint_name(self.state.global_step)
