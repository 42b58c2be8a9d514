#!/usr/bin/env python
"""Does pruning pay? The same Optuna sweep of the demo NER run without and with pruning.

    python scripts/bench_sweep.py                          # 12 trials x 6 epochs each, twice (~20-30 min, 2 cores)
    python scripts/bench_sweep.py --trials 2 --debug       # smoke check: tiny random encoder, 4 steps per trial
    python scripts/bench_sweep.py --epochs 4 --pruner hyperband --order pruned-first

Both sweeps run ``python -m medkit_exp +experiment=ner hparams_search=ner_optuna`` (the real
MiniLM encoder, the demo corpus, the search space of ``conf/hparams_search/ner_optuna.yaml``:
learning rate, weight decay, batch size, scheduler, warm-up), one after the other, each in its
own process, with the same settings and the same sampler seed (TPE, ``--startup-trials`` random
trials first); only the pruner differs: none, then ``--pruner``: by default ``ner_optuna``'s own
(``top_quarter``: Optuna's percentile pruner keeping the top 25%, after 2 finished trials, from a
trial's first evaluation on; see ``conf/hydra/sweeper/pruner/top_quarter.yaml``), else the named
one (median/percentile: after ``--pruner-startup`` finished trials, a trial whose F1 at an
evaluation is below the median / the ``--percentile`` of the others at that evaluation stops;
evaluations are per epoch, numbered from 1, and Optuna prunes from step ``--warmup-evaluations``
on, so the default 1 protects no evaluation and 2 protects the first). MLflow tracking goes to a sqlite store in the output folder
(``--no-tracking`` turns it off).

Prints, for each sweep, its wall time (the whole process, imports included), the time inside
trials, the trial states and the best objective (best dev F1 of a trial); then the ratio of the
wall times, the F1 difference and whether the target holds: with pruning, the sweep reaches the
unpruned sweep's best F1 (no lower) in at most half its time. Results also go to
``OUTPUT/bench_sweep.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET_TIME_RATIO = 0.50
TARGET_F1_GAP = 0.0  # the pruned sweep must reach the unpruned best F1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--trials", type=int, default=12, help="trials of each sweep (default: 12)")
    parser.add_argument("--epochs", type=int, default=6, help="training epochs of each trial (default: 6; the demo run has 10)")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed, the same for both sweeps (default: 0)")
    parser.add_argument("--startup-trials", type=int, default=4, help="random trials before TPE models the results (default: 4)")
    parser.add_argument("--pruner", default="default", help="pruner of the pruned sweep: default (ner_optuna's own, "
                        "top_quarter), median, hyperband, successive_halving, percentile (default: default)")
    parser.add_argument("--pruner-startup", type=int, default=3, help="median/percentile: finished trials before any pruning (default: 3)")
    parser.add_argument("--warmup-evaluations", type=int, default=1, help="median/percentile: Optuna's n_warmup_steps: a trial may be pruned from evaluation N on "
                        "(evaluations are numbered from 1; default: 1)")
    parser.add_argument("--order", choices=("unpruned-first", "pruned-first"), default="unpruned-first", help="which sweep runs first")
    parser.add_argument("--no-tracking", action="store_true", help="no MLflow tracking (default: a sqlite store in the output folder)")
    parser.add_argument("--debug", action="store_true", help="debug=fast: tiny random encoder, 4 steps per trial (a smoke check of this script)")
    parser.add_argument("--percentile", type=float, default=50.0,
                        help="percentile pruner: the top percentile of trials kept at each evaluation (default: 50)")
    parser.add_argument("--output", type=Path, default=None, help="output folder (default: a new temporary folder)")
    parser.add_argument("--overrides", nargs="*", default=[], help="more Hydra overrides for both sweeps")
    return parser.parse_args(argv)


def pruner_overrides(args: argparse.Namespace) -> list[str]:
    if args.pruner == "default":
        return []  # hparams_search=ner_optuna's pruner, as a user gets it
    overrides = [f"hydra/sweeper/pruner={args.pruner}"]
    if args.pruner in ("median", "percentile"):
        overrides += [f"+hydra.sweeper.pruner.n_startup_trials={args.pruner_startup}",
                      f"+hydra.sweeper.pruner.n_warmup_steps={args.warmup_evaluations}"]
    if args.pruner == "percentile":
        overrides.append(f"+hydra.sweeper.pruner.percentile={args.percentile}")
    return overrides


def sweep_command(args: argparse.Namespace, folder: Path, pruned: bool) -> list[str]:
    overrides = [
        "+experiment=ner", "hparams_search=ner_optuna", f"hydra.sweeper.n_trials={args.trials}",
        f"hydra.sweeper.sampler.seed={args.seed}", f"+hydra.sweeper.sampler.n_startup_trials={args.startup_trials}",
        f"hydra.sweeper.storage=sqlite:///{folder / 'optuna.db'}", f"hydra.sweeper.study_name={folder.name}",
        f"hydra.sweep.dir={folder / 'sweep'}", "callbacks.printer.progress_bar=false",
    ]
    if not args.debug:
        overrides.append(f"trainer.nb_training_epochs={args.epochs}")
    overrides += pruner_overrides(args) if pruned else ["hydra/sweeper/pruner=none"]
    if args.no_tracking:
        overrides.append("tracking=none")
    else:
        overrides += [f"tracking.tracking_uri=sqlite:///{folder / 'mlflow.db'}", "tracking.model_hooks.0.dev_report=false"]
    if args.debug:
        overrides.append("debug=fast")
    return [sys.executable, "-m", "medkit_exp", *overrides, *args.overrides]


def run_sweep(args: argparse.Namespace, folder: Path, pruned: bool) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    command = sweep_command(args, folder, pruned)
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    print(f"\n[{folder.name}] {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    with open(folder / "sweep.log", "w") as log:
        done = subprocess.run(command, cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=environment)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        tail = (folder / "sweep.log").read_text()[-3000:]
        raise SystemExit(f"[{folder.name}] the sweep failed (exit {done.returncode}); end of {folder / 'sweep.log'}:\n{tail}")
    return {"name": folder.name, "wall_s": wall, **study_summary(folder)}


def study_summary(folder: Path) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=folder.name, storage=f"sqlite:///{folder / 'optuna.db'}")
    states: dict[str, int] = {}
    for trial in study.trials:
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    in_trials = sum(
        (t.datetime_complete - t.datetime_start).total_seconds() for t in study.trials if t.datetime_complete and t.datetime_start
    )
    completed = [t for t in study.trials if t.state.name == "COMPLETE"]
    best = max(completed, key=lambda t: t.value) if completed else None
    return {
        "trials_s": in_trials, "states": states, "best_f1": None if best is None else best.value,
        "best_trial": None if best is None else best.number, "best_params": {} if best is None else best.params,
    }


def report(args: argparse.Namespace, unpruned: dict[str, Any], pruned: dict[str, Any]) -> dict[str, Any]:
    for result in (unpruned, pruned):
        best = "n/a" if result["best_f1"] is None else f"{result['best_f1']:.4f} (trial {result['best_trial']})"
        states = ", ".join(f"{n} {s}" for s, n in result["states"].items())
        print(f"{result['name']:>9}: wall {result['wall_s']:7.1f} s, in trials {result['trials_s']:7.1f} s, "
              f"trials {states}; best F1 {best}")
    ratio = pruned["wall_s"] / unpruned["wall_s"]
    gap = None if None in (pruned["best_f1"], unpruned["best_f1"]) else unpruned["best_f1"] - pruned["best_f1"]
    met = gap is not None and gap <= TARGET_F1_GAP and ratio <= TARGET_TIME_RATIO
    print(f"time ratio (pruned / unpruned): {ratio:.3f} (target <= {TARGET_TIME_RATIO:.2f})")
    print("best F1 gap (unpruned - pruned): " + ("n/a" if gap is None else f"{gap * 100:+.2f} points (target <= 0)"))
    print(f"target met: {'yes' if met else 'no'}")
    return {"time_ratio": ratio, "f1_gap": gap, "target_met": met}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    output = args.output or Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    output = output.resolve()
    print(
        f"Settings: {args.trials} trials per sweep, "
        + ("debug=fast (tiny random encoder, 4 steps)" if args.debug else f"{args.epochs} epochs per trial (MiniLM, demo corpus)")
        + f", TPE seed {args.seed} ({args.startup_trials} random startup trials), pruned sweep: "
        + (" ".join(pruner_overrides(args)) or "ner_optuna's default pruner") + f", tracking {'off' if args.no_tracking else 'on'}, "
        + f"order {args.order}, extra overrides {args.overrides or 'none'}; output {output}",
        flush=True,
    )
    arms = [("unpruned", False), ("pruned", True)]
    if args.order == "pruned-first":
        arms.reverse()
    results = {name: run_sweep(args, output / name, pruned) for name, pruned in arms}
    print()
    verdict = report(args, results["unpruned"], results["pruned"])
    (output / "bench_sweep.json").write_text(json.dumps({"settings": vars(args) | {"output": str(output)},
                                                         **results, **verdict}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
