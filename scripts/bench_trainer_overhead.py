"""Steps/s of our Trainer vs a minimal hand-written PyTorch loop, same component and data.

Both train the same tiny BERT token classifier (random weights, random token ids, no
download) for the same number of optimizer steps; they run alternately in one process, in a
counterbalanced order, so machine noise hits both alike. The Trainer runs with progress bars and history on (its
default printer, history.jsonl, one checkpoint at the end); its construction (data cached,
optimizer built) is timed, the component's is not (for either). Prints steps/s by wall clock
and by process CPU time. Targets (wall clock): median ratio >= 0.98 and no round below 0.95.

    python scripts/bench_trainer_overhead.py [--steps 200] [--rounds 12]
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medkit_exp.training import DefaultPrinterCallback, Trainer, TrainerConfig  # noqa: E402
from tests.training.toy import TinyBertTagger, token_data  # noqa: E402

TARGET_MEDIAN, TARGET_LOWEST = 0.98, 0.95  # wall-clock ratio Trainer / bare loop


def make_component() -> TinyBertTagger:
    """A random 2-layer, 128-wide BERT token classifier (no download)."""
    return TinyBertTagger(vocab_size=2000, nb_labels=5, seed=0, hidden_size=128, intermediate_size=512)


def make_data(nb_items: int, length: int = 64) -> list[tuple[list[int], list[int]]]:
    return token_data(nb_items, seed=0, vocab_size=2000, nb_labels=5, lengths=(length, length))


def timed(function):
    """(steps/s by wall clock, steps/s by this process's CPU time) of ``function(steps)``."""

    def run(data: list[tuple[list[int], list[int]]], batch_size: int, steps: int) -> tuple[float, float]:
        component = make_component()  # built outside the timer, for both
        gc.collect()  # free the previous run's model now, not during this one
        wall, cpu = time.perf_counter(), time.process_time()
        function(component, data, batch_size, steps)
        return steps / (time.perf_counter() - wall), steps / (time.process_time() - cpu)

    return run


@timed
def bare_loop(component: TinyBertTagger, data: list[tuple[list[int], list[int]]], batch_size: int, steps: int) -> None:
    optimizer = component.configure_optimizer(1e-4)
    items = [component.preprocess(item) for item in data]  # once, as the Trainer does
    loader = torch.utils.data.DataLoader(items, batch_size=batch_size, shuffle=True, collate_fn=component.collate)
    done = 0
    while done < steps:
        for batch in loader:
            _, loss = component.forward(batch, return_loss=True, eval_mode=False)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            done += 1
            if done == steps:
                break


@timed
def our_trainer(component: TinyBertTagger, data: list[tuple[list[int], list[int]]], batch_size: int, steps: int) -> None:
    with tempfile.TemporaryDirectory() as output_dir:
        config = TrainerConfig(
            output_dir=output_dir, learning_rate=1e-4, batch_size=batch_size, nb_training_epochs=1000,
            max_steps=steps, eval_strategy="no", logging_steps=10, seed=0,
        )
        trainer = Trainer(component, config, data, None, callback=[DefaultPrinterCallback(progress_bar=True)])
        trainer.train()
        assert (Path(output_dir) / "history.jsonl").stat().st_size > 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(2)
    data = make_data(args.batch_size * 40)
    # Warm-up of both, so that every round runs in the same process state: the Trainer's first run
    # imports what it loads lazily, and switches glibc to keeping freed memory (process-wide, see
    # medkit_exp/training/memory.py), which otherwise speeds up the bare loop from round 1's
    # second run on only.
    bare_loop(data, args.batch_size, 10)
    our_trainer(data, args.batch_size, 10)
    wall_ratios, cpu_ratios = [], []
    for round_index in range(args.rounds):
        # Counterbalanced order (bare first on even rounds, Trainer first on odd ones), so that
        # whatever favours the first or the second run of a pair cancels out.
        if round_index % 2 == 0:
            bare_wall, bare_cpu = bare_loop(data, args.batch_size, args.steps)
            ours_wall, ours_cpu = our_trainer(data, args.batch_size, args.steps)
        else:
            ours_wall, ours_cpu = our_trainer(data, args.batch_size, args.steps)
            bare_wall, bare_cpu = bare_loop(data, args.batch_size, args.steps)
        wall_ratios.append(ours_wall / bare_wall)
        cpu_ratios.append(ours_cpu / bare_cpu)
        print(
            f"round {round_index + 1}: bare loop {bare_wall:6.2f} steps/s (cpu {bare_cpu:6.2f}) | "
            f"Trainer {ours_wall:6.2f} steps/s (cpu {ours_cpu:6.2f}) | ratio wall {wall_ratios[-1]:.3f}, cpu {cpu_ratios[-1]:.3f}"
        )
    median, lowest = statistics.median(wall_ratios), min(wall_ratios)
    print(
        f"median ratio Trainer / bare loop: wall clock {median:.3f}, process CPU time "
        f"{statistics.median(cpu_ratios):.3f}; lowest round (wall) {lowest:.3f} ({args.rounds} rounds x {args.steps} steps)"
    )
    print(f"targets: median >= {TARGET_MEDIAN} {'met' if median >= TARGET_MEDIAN else 'MISSED'}; "
          f"no round below {TARGET_LOWEST} {'met' if lowest >= TARGET_LOWEST else 'MISSED'}")


if __name__ == "__main__":
    main()
