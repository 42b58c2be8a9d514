#!/usr/bin/env python
"""Wall-time overhead of MLflow tracking: the same training with and without MLflowCallback.

    python scripts/bench_tracking_overhead.py                 # tiny random BERT token classifier
    python scripts/bench_tracking_overhead.py --model toy     # the toy text classifier of the tests
    python scripts/bench_tracking_overhead.py --rounds 5 --tracking-uri http://127.0.0.1:5000
    python scripts/bench_tracking_overhead.py --model demo --rounds 3        # the demo run, end to end
    python scripts/bench_tracking_overhead.py --model demo --rounds 2 --overrides debug=fast   # quick check

``--model demo`` times the whole application, ``python -m medkit_exp +experiment=ner`` (what a
user waits for, imports included), with ``tracking=mlflow`` (a sqlite store in a temporary
folder; model, dev report, plots and best checkpoint logged, as by default) and with
``tracking=none``, alternately in ABBA order (one untimed warm-up pair first, ``--warmup``),
same seed, each run in its own output folder; ``--overrides`` are added to both (e.g.
``tracking.worker=false`` for the tracking done in the training process). Besides the wall times
it prints each run's epoch time (the sum the application prints) and the rest (start and end),
and the CPU times. The other models time ``Trainer.train()`` in this process (the callback's
default, ``worker=False``):

Runs alternate (without, with, without, with...) after untimed warm-up pairs (until two
untracked runs agree within 10%), so both arms see the same warm caches and imports (importing
mlflow, ~1-2 s, is a one-off per process and is not counted). Each run trains from the same seed on the same data; tracking runs with
the application's defaults (on_log every 5 steps, all of it logged), the learning-curve plot and
the best checkpoint; ``--logging-steps 1 --log-every 1`` logs every optimizer step (worst case).
Prints each wall time, the medians and their ratio (target: <= 1.03).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from medkit_exp.training import BatchData, Trainer, TrainerConfig  # noqa: E402


class TokenAccuracy:
    """A MetricsComputer: token accuracy, and a micro "f1" over non-O labels (for the plots)."""

    metric_names = ["accuracy", "f1"]

    def prepare_batch(self, model_output: BatchData, input_batch: BatchData) -> dict[str, list[Any]]:
        mask = input_batch["labels"] != -100
        return {"pred": model_output["logits"].argmax(-1)[mask].tolist(), "ref": input_batch["labels"][mask].tolist()}

    def compute(self, data: dict[str, list[Any]]) -> dict[str, float]:
        pairs = list(zip(data["pred"], data["ref"]))
        correct = sum(p == r for p, r in pairs)
        tp = sum(p == r and r != 0 for p, r in pairs)
        predicted, actual = sum(p != 0 for p, _ in pairs), sum(r != 0 for _, r in pairs)
        f1 = 2 * tp / (predicted + actual) if predicted + actual else 0.0
        return {"accuracy": correct / max(len(pairs), 1), "f1": f1}


def build_trainer(args: argparse.Namespace, output_dir: Path, callbacks: list[Any]) -> Trainer:
    common = dict(output_dir=str(output_dir), seed=11, logging_steps=args.logging_steps, eval_strategy="steps",
                  eval_steps=args.eval_steps, nb_training_epochs=args.epochs, keep_best_k=1)
    if args.model == "toy":
        from tests.training.toy import AccuracyComputer, ToyTextClassifier, make_texts

        config = TrainerConfig(learning_rate=1e-2, batch_size=8, checkpoint_metric="accuracy",
                               minimize_checkpoint_metric=False, **common)
        return Trainer(ToyTextClassifier(seed=1), config, make_texts(args.items, 1), make_texts(200, 2),
                       AccuracyComputer(), callback=callbacks)
    config = TrainerConfig(learning_rate=1e-3, batch_size=16, checkpoint_metric="f1", minimize_checkpoint_metric=False, **common)
    from tests.training.toy import TinyBertTagger, token_data

    return Trainer(TinyBertTagger(seed=1), config, token_data(args.items, 1), token_data(64, 2), TokenAccuracy(),
                   callback=callbacks)


class CostMeter:
    """What tracking costs, measured directly (immune to the machine's noise): seconds the training
    thread spends inside the callback's events, and CPU seconds of the background sender."""

    def __init__(self) -> None:
        self.training_thread = 0.0
        self.sender_cpu = 0.0

    def meter(self, callback: Any) -> Any:
        from medkit_exp.training.callbacks import EVENTS

        for event in EVENTS:
            method = getattr(callback, event, None)
            if callable(method):
                setattr(callback, event, self._timed(method))
        return callback

    def _timed(self, method: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.training_thread += time.perf_counter() - started

        return timed

    def patch_sender(self) -> None:
        """Count the CPU time of every AsyncRunLogger thread (read when the thread ends)."""
        from medkit_exp.tracking import tracker as tracker_module  # where a run's sender is made

        meter = self

        class MeteredLogger(tracker_module.AsyncRunLogger):
            def _loop(self) -> None:
                try:
                    super()._loop()
                finally:
                    meter.sender_cpu += time.thread_time()

        tracker_module.AsyncRunLogger = MeteredLogger


def timed_run(args: argparse.Namespace, workdir: Path, name: str, tracked: bool, meter: CostMeter | None = None) -> tuple[float, int]:
    callbacks = []
    if tracked:
        from medkit_exp.tracking import MLflowCallback

        uri = args.tracking_uri or f"sqlite:///{workdir / 'mlflow.db'}"
        callback = MLflowCallback(uri, "bench-tracking-overhead", name, params=vars(args),
                                  log_every_n_steps=args.log_every, artifact_location=str(workdir / "artifacts"))
        callbacks.append(meter.meter(callback) if meter is not None else callback)
    trainer = build_trainer(args, workdir / name, callbacks)
    started = time.perf_counter()
    trainer.train()
    return time.perf_counter() - started, trainer.state.global_step


def warm_up(args: argparse.Namespace, workdir: Path, max_pairs: int = 6, tolerance: float = 0.1) -> None:
    """Untimed pairs of runs until two untracked runs in a row agree within ``tolerance``.

    The first runs of a process pay for imports, the store's creation and, on some virtual
    machines, for first touches of memory pages (seen: 20x slower first runs).
    """
    previous = None
    for index in range(max_pairs):
        plain, _ = timed_run(args, workdir, f"warmup{index}-plain", False)
        timed_run(args, workdir, f"warmup{index}-mlflow", True)
        print(f"warm-up {index + 1}: {plain:.3f} s without MLflow", flush=True)
        if previous is not None and abs(plain - previous) <= tolerance * previous:
            return
        previous = plain


def run_rounds(args: argparse.Namespace, workdir: Path) -> tuple[dict[bool, list[float]], list[float]]:
    """Alternate untracked and tracked runs; their wall times, and the direct cost of each tracked one."""
    times: dict[bool, list[float]] = {False: [], True: []}
    costs: list[float] = []
    meter = CostMeter()
    meter.patch_sender()
    for round_index in range(args.rounds):
        for tracked in (False, True):
            before = (meter.training_thread, meter.sender_cpu)
            name = f"round{round_index}-{'mlflow' if tracked else 'plain'}"
            seconds, steps = timed_run(args, workdir, name, tracked, meter)
            times[tracked].append(seconds)
            line = f"round {round_index + 1}  {'with MLflow   ' if tracked else 'without MLflow'}  {seconds:7.3f} s  ({steps} steps)"
            if tracked:
                main_cost, sender = meter.training_thread - before[0], meter.sender_cpu - before[1]
                costs.append(main_cost + sender)
                line += f"   tracking: {main_cost * 1000:.0f} ms on the training thread + {sender * 1000:.0f} ms sender CPU"
            print(line, flush=True)
    return times, costs


def report(times: dict[bool, list[float]], costs: list[float]) -> None:
    plain, tracked = statistics.median(times[False]), statistics.median(times[True])
    print(f"median without: {plain:.3f} s   median with: {tracked:.3f} s   ratio with/without: {tracked / plain:.4f}")
    print(f"mean   without: {statistics.mean(times[False]):.3f} s   mean   with: {statistics.mean(times[True]):.3f} s   "
          f"ratio: {statistics.mean(times[True]) / statistics.mean(times[False]):.4f}")
    pairs = [with_ / without for without, with_ in zip(times[False], times[True])]
    print(f"paired ratios: {', '.join(f'{ratio:.3f}' for ratio in pairs)}   median: {statistics.median(pairs):.4f}"
          f"   mean: {statistics.mean(pairs):.4f}")
    # The machine's speed drifts between rounds; the two runs of a round see the same speed, so
    # the paired ratio is the measure (the medians of the arms may come from different rounds).
    verdict = "met" if statistics.median(pairs) <= 1.03 else "missed"
    print(f"target: paired median ratio <= 1.03: {verdict}")
    if not costs:
        return
    cost = statistics.median(costs)
    # An upper bound: the sender's CPU while the training thread waits for the final flush counts twice.
    print(f"direct cost (training-thread time in the callback + sender CPU), median: {cost:.3f} s "
          f"= {cost / plain:.2%} of the untracked median")


def app_run(args: argparse.Namespace, workdir: Path, name: str, tracked: bool) -> tuple[float, float, float]:
    """Wall time, CPU time (user + system) and the sum of the epoch times the application printed,
    of one ``python -m medkit_exp +experiment=ner`` process, with or without tracking."""
    import os
    import re
    import resource
    import subprocess

    uri = args.tracking_uri or f"sqlite:///{workdir / 'mlflow.db'}"
    tracking = ["tracking=mlflow", f"tracking.tracking_uri={uri}", "tracking.experiment_name=bench-tracking-overhead"]
    tracking = tracking if tracked else ["tracking=none"]
    command = [sys.executable, "-m", "medkit_exp", "+experiment=ner", "seed=42", f"hydra.run.dir={workdir / name}",
               *tracking, *args.overrides]
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "HF_HUB_OFFLINE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, env=environment, check=False)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    epochs = sum(float(x) for x in re.findall(r"Epoch \d+ ended \(duration: ([0-9.]+)s\)", done.stdout + done.stderr))
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), epochs


def run_demo(args: argparse.Namespace, workdir: Path) -> dict[bool, list[float]]:
    """Warm-up pairs, then alternating rounds of the application without and with tracking.

    Prints the CPU time of each run too: on a machine shared with other work, the difference of
    CPU times tells what tracking costs better than wall times do. And each run's wall time split
    into its epochs (the sum of the epoch times the application prints) and the rest (start:
    imports, data, model; end: what comes after the last epoch): the machine's speed drifts by a
    few percent between runs, which moves the epoch times of both arms alike, while what tracking
    adds at the start and the end shows in the rest. Rounds alternate the order of the two arms
    (without-with, then with-without), so that what a run leaves behind (disk writes still being
    flushed, a warmer CPU) weighs on both arms alike."""
    def line(label: str, tracked: bool, seconds: float, cpu: float, epochs: float) -> None:
        print(f"{label}  {'with MLflow   ' if tracked else 'without MLflow'}  {seconds:7.2f} s  (CPU {cpu:7.2f} s;"
              f" epochs {epochs:6.2f} s, rest {seconds - epochs:5.2f} s)", flush=True)

    for index in range(args.warmup):  # first runs pay for the store's creation, disk caches...
        for tracked in (False, True):
            line(f"warm-up {index + 1}", tracked, *app_run(args, workdir, f"warmup{index}-{'mlflow' if tracked else 'plain'}", tracked))
    times: dict[bool, list[float]] = {False: [], True: []}
    cpu_times: dict[bool, list[float]] = {False: [], True: []}
    rests: dict[bool, list[float]] = {False: [], True: []}
    epoch_times: dict[bool, list[float]] = {False: [], True: []}
    for round_index in range(args.rounds):
        for tracked in ((False, True) if round_index % 2 == 0 else (True, False)):  # ABBA: no order effect
            seconds, cpu, epochs = app_run(args, workdir, f"round{round_index}-{'mlflow' if tracked else 'plain'}", tracked)
            times[tracked].append(seconds)
            cpu_times[tracked].append(cpu)
            epoch_times[tracked].append(epochs)
            rests[tracked].append(seconds - epochs)
            line(f"round {round_index + 1}", tracked, seconds, cpu, epochs)
    median = statistics.median
    plain, tracked = median(cpu_times[False]), median(cpu_times[True])
    print(f"CPU time, median without: {plain:.2f} s   with: {tracked:.2f} s   difference: {tracked - plain:.2f} s "
          f"= {(tracked - plain) / median(times[False]):.2%} of the untracked wall time")
    if all(epoch_times[False] + epoch_times[True]):
        added = median(rests[True]) - median(rests[False])
        print(f"epochs, median without: {median(epoch_times[False]):.2f} s   with: {median(epoch_times[True]):.2f} s   "
              f"ratio: {median(epoch_times[True]) / median(epoch_times[False]):.4f}")
        print(f"rest (start + end), median without: {median(rests[False]):.2f} s   with: {median(rests[True]):.2f} s   "
              f"added: {added:.2f} s = {added / median(times[False]):.2%} of the untracked wall time")
        for name, values in (("epochs", epoch_times), ("rest", rests)):
            differences = [with_ - without for without, with_ in zip(values[False], values[True])]
            print(f"{name}, paired differences (with - without): {', '.join(f'{d:+.2f}' for d in differences)} s   "
                  f"median: {median(differences):+.2f} s")
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("bert", "toy", "demo"), default="bert",
                        help="demo: the application's demo run, python -m medkit_exp +experiment=ner")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up pairs of --model demo")
    parser.add_argument("--overrides", nargs="*", default=[], help="--model demo: Hydra overrides for both arms")
    parser.add_argument("--items", type=int, default=5600, help="training items")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--eval-steps", type=int, default=50)
    parser.add_argument("--logging-steps", type=int, default=5, help="TrainerConfig.logging_steps (conf/trainer: 5)")
    parser.add_argument("--log-every", type=int, default=5, help="log_every_n_steps (conf/tracking: 5); 1 with "
                        "--logging-steps 1 logs every optimizer step, the worst case")
    parser.add_argument("--tracking-uri", default=None, help="default: a sqlite store in a temporary folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp:
        workdir = Path(tmp)
        if args.model == "demo":
            times = run_demo(args, workdir)
            report(times, [])
            return 0
        warm_up(args, workdir)
        times, costs = run_rounds(args, workdir)
    report(times, costs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
