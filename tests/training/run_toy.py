"""Trains the toy classifier in its own process, for the kill/resume tests.

usage: python run_toy.py OUTPUT_DIR [--kill-at STEP] [--sigterm-at STEP] [--resume]
Writes OUTPUT_DIR/final_state.pt and OUTPUT_DIR/final_history.json when training ends.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from medkit_exp.training import Trainer, TrainerCallback, TrainerConfig, WarmupDecaySchedulerBuilder  # noqa: E402
from tests.training.toy import AccuracyComputer, ToyTextClassifier, make_texts  # noqa: E402


class SignalAt(TrainerCallback):
    def __init__(self, step: int, signum: int):
        self.step, self.signum = step, signum

    def on_step_end(self, step_idx, nb_batches, phase):
        if phase == "train" and self.state.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir")
    parser.add_argument("--kill-at", type=int)
    parser.add_argument("--sigterm-at", type=int)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    config = TrainerConfig(
        output_dir=args.output_dir, learning_rate=5e-3, nb_training_epochs=3, batch_size=4, seed=7,
        gradient_accumulation_steps=2, eval_strategy="steps", eval_steps=5, logging_steps=3,
        checkpoint_metric="accuracy", minimize_checkpoint_metric=False, keep_best_k=2, max_grad_norm=1.0,
        weight_decay=0.01,
    )
    callbacks = []
    if args.kill_at:
        callbacks.append(SignalAt(args.kill_at, signal.SIGKILL))
    if args.sigterm_at:
        callbacks.append(SignalAt(args.sigterm_at, signal.SIGTERM))
    trainer = Trainer(
        ToyTextClassifier(dropout=0.3), config, make_texts(90, 1), make_texts(30, 2), AccuracyComputer(),
        lr_scheduler_builder=WarmupDecaySchedulerBuilder("cosine", warmup_steps=3), callback=callbacks,
    )
    history = trainer.train(resume_from_checkpoint="last" if args.resume else None)
    out = Path(args.output_dir)
    torch.save(trainer.component.model.state_dict(), out / "final_state.pt")
    summary = {"history": history, "stop_reason": trainer.state.stop_reason, "global_step": trainer.state.global_step}
    (out / "final_history.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
