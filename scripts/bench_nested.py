"""Nested entities on QUAERO French Medical: the flat tagger (``keep_longest``) vs the nested one.

Both taggers train on the same sentences with the same encoder (all-MiniLM-L6-v2), budget and
seeds; each is scored on the test documents *as annotated* (every entity, nesting and
discontinuity intact, exact spans: a flattened prediction is a miss), overall and per label,
beside the ceiling of its representation (the share of the annotated test entities its tags can
express) and its training time per epoch (the training loop only: no evaluation, no saving).
Goals: the nested tagger's mean micro F1 >= the flat one's + 5 points; its epoch time <= 1.3x.

    python scripts/bench_nested.py                                  # 3 seeds, 10 epochs (about 45 min on 2 cores)
    python scripts/bench_nested.py --seeds 42 --epochs 1 --max-train-sentences 200   # smoke run
    python scripts/bench_nested.py --arms nested --layer-order outer_first --epochs 5  # one arm, other options

The two arms alternate (flat first for even seeds, nested first for odd ones), so a slow period
of the machine falls on both. The data folder is --data-dir, else $MEDKIT_EXP_DATA_DIR, else
../shared/data beside the project; without QUAERO the script says "skipped" and exits 0.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUAERO = ("quaero_frenchmed", "corpus")
LABELS = ["ANAT", "CHEM", "DEVI", "DISO", "GEOG", "LIVB", "OBJC", "PHEN", "PHYS", "PROC"]
# Each arm: the tagger and the data policies its experiment uses.
ARMS = {
    "flat": {"nested": "keep_longest", "discontinuous": "fill"},
    "nested": {"nested": "keep", "discontinuous": "drop"},
}
F1_GAIN_GOAL = 0.05  # nested - flat, micro F1 on the test documents as annotated
EPOCH_RATIO_GOAL = 1.3  # nested / flat epoch time


@dataclass
class Settings:
    lr: float
    batch_size: int
    max_length: int
    epochs: int
    depth: int
    layer_order: str
    max_train: int | None
    work_dir: Path


@dataclass
class RunResult:
    arm: str
    seed: int
    annotated: dict[str, float]  # scores against the test documents as annotated
    flattened: dict[str, float]  # scores against the arm's own policy-flattened gold
    ceiling: dict[str, float]
    epoch_seconds: list[float] = field(default_factory=list)


def resolve_data_dir(option: str | None) -> Path:
    return Path(option or os.environ.get("MEDKIT_EXP_DATA_DIR") or ROOT.parent / "shared" / "data")


def load_splits(data_dir: Path, arm: str, max_train: int | None) -> dict[str, list[Any]]:
    """Train and test sentences of QUAERO under the arm's policies (the test documents keep
    their entities as annotated in ``annotated``)."""
    from medkit_exp.ner.data import NERDataConfig, load_corpus

    config = NERDataConfig(
        name="quaero_frenchmed", format="brat", path=str(data_dir.joinpath(*QUAERO)), train="train", dev=None,
        test="test", labels=LABELS, split="sentences", **ARMS[arm],
    )
    splits = load_corpus(config)
    if max_train is not None:
        splits["train"] = splits["train"][:max_train]
    return splits


def make_tagger(arm: str, settings: Settings) -> Any:
    from medkit_exp.ner.tagger import HFEntityMatcherTrainable, default_encoder

    if arm == "flat":
        return HFEntityMatcherTrainable(default_encoder(), LABELS, "iob2", tokenizer_max_length=settings.max_length)
    from medkit_exp.ner.nested_tagger import NestedEntityTagger

    return NestedEntityTagger(default_encoder(), LABELS, "iob2", tokenizer_max_length=settings.max_length,
                              nesting_depth=settings.depth, layer_order=settings.layer_order)


def run_arm(arm: str, seed: int, splits: dict[str, list[Any]], settings: Settings) -> RunResult:
    from medkit_exp.ner.annotated_scores import annotated_scores, ceiling
    from medkit_exp.ner.metrics import evaluate_documents
    from medkit_exp.ner.prediction import predict
    from medkit_exp.training import Trainer, TrainerCallback, TrainerConfig, WarmupDecaySchedulerBuilder, seed_everything

    class EpochTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch: int) -> None:
            self._start = time.perf_counter()

        def on_epoch_end(self, metrics: Any, epoch: int, epoch_duration: float) -> None:
            self.seconds.append(time.perf_counter() - self._start)

    seed_everything(seed)  # before the tagger: its new head is seeded too
    tagger = make_tagger(arm, settings)
    config = TrainerConfig(
        output_dir=str(settings.work_dir / f"{arm}-{seed}"), learning_rate=settings.lr,
        nb_training_epochs=settings.epochs, batch_size=settings.batch_size, seed=seed, max_grad_norm=1.0,
        eval_strategy="no", checkpoint_period=0, keep_best_k=0, group_by_length=True, logging_steps=10**6,
    )
    timer = EpochTimer()
    Trainer(tagger, config, splits["train"], None, lr_scheduler_builder=WarmupDecaySchedulerBuilder("linear"),
            callback=[timer]).train()
    test = splits["test"]
    predicted = predict(tagger, [doc.with_entities([]) for doc in test], batch_size=32)
    scores = {**annotated_scores(test, predicted), **inner_recall(test, predicted)}
    return RunResult(arm, seed, scores, evaluate_documents(test, predicted), ceiling(tagger, test), timer.seconds)


def inner_recall(gold: list[Any], predicted: list[Any]) -> dict[str, float]:
    """Recall on the entities a flat ``keep_longest`` tagger cannot hold (those overlapping a
    longer one), and on the others: where a nested tagger's gain must come from."""
    from medkit_exp.ner.policies import PolicyReport, resolve_overlaps

    found = {"inner": [0, 0], "outer": [0, 0]}
    for gold_doc, pred_doc in zip(gold, predicted):
        annotated = gold_doc.annotated_entities
        kept = resolve_overlaps(gold_doc.with_entities(annotated), "keep_longest", PolicyReport())
        kept_keys = {(e.label, tuple(e.spans)) for e in kept}
        predicted_keys = {(e.label, tuple(e.spans)) for e in pred_doc.entities}
        for entity in annotated:
            key = (entity.label, tuple(entity.spans))
            counts = found["outer" if key in kept_keys else "inner"]
            counts[0] += key in predicted_keys
            counts[1] += 1
    return {f"{kind}_recall": hits / total if total else 0.0 for kind, (hits, total) in found.items()}


# ------------------------------------------------------------------ report
def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def _spread(values: list[float], scale: float = 100.0) -> str:
    mean = _mean(values) * scale
    return f"{mean:.2f} ± {statistics.stdev(values) * scale:.2f}" if len(values) > 1 else f"{mean:.2f}"


def report(results: list[RunResult], settings: Settings, header: list[str]) -> tuple[list[str], bool]:
    by_arm = {arm: [r for r in results if r.arm == arm] for arm in ARMS}
    lines = [*header, "", "## Test documents as annotated (exact spans; mean ± sd over seeds)", "",
             "| tagger | micro F1 | precision | recall | recall, entities inside or across a longer one "
             "| recall, the others | ceiling (recall a perfect model reaches) "
             "| F1 on its own flattened gold | epoch time (s) | per-seed F1 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for arm, runs in by_arm.items():
        epochs = [s for r in runs for s in r.epoch_seconds]
        per_seed = ", ".join(f"{r.seed}: {100 * r.annotated['f1']:.2f}" for r in runs)
        lines.append(
            f"| {arm} | {_spread([r.annotated['f1'] for r in runs])} | {_spread([r.annotated['precision'] for r in runs])} "
            f"| {_spread([r.annotated['recall'] for r in runs])} | {_spread([r.annotated['inner_recall'] for r in runs])} "
            f"| {_spread([r.annotated['outer_recall'] for r in runs])} | {_spread([r.ceiling['ceiling'] for r in runs])} "
            f"| {_spread([r.flattened['f1'] for r in runs])} | {_mean(epochs):.1f} "
            f"| {per_seed} |"
        )
    lines += ["", "## Per label (test, as annotated): F1 and ceiling, mean over seeds", "",
              "| label | support | flat F1 | nested F1 | flat ceiling | nested ceiling |", "| --- | --- | --- | --- | --- | --- |"]
    for label in LABELS:
        def mean_of(arm: str, source: str, metric: str) -> float:
            values = [getattr(r, source).get(f"labels/{label}/{metric}") for r in by_arm[arm]]
            return 100 * _mean([v for v in values if v is not None])

        support = by_arm["flat"][0].annotated.get(f"labels/{label}/support", 0) if by_arm["flat"] else 0
        lines.append(f"| {label} | {int(support)} | {mean_of('flat', 'annotated', 'f1'):.2f} "
                     f"| {mean_of('nested', 'annotated', 'f1'):.2f} | {mean_of('flat', 'ceiling', 'ceiling'):.2f} "
                     f"| {mean_of('nested', 'ceiling', 'ceiling'):.2f} |")
    gain = _mean([r.annotated["f1"] for r in by_arm["nested"]]) - _mean([r.annotated["f1"] for r in by_arm["flat"]])
    ratio = _mean([s for r in by_arm["nested"] for s in r.epoch_seconds]) / _mean(
        [s for r in by_arm["flat"] for s in r.epoch_seconds])
    gain_ok, ratio_ok = gain >= F1_GAIN_GOAL, ratio <= EPOCH_RATIO_GOAL
    lines += ["", "## Verdicts", "",
              f"- F1 gain (nested - flat, as annotated): {100 * gain:+.2f} points; goal >= +{100 * F1_GAIN_GOAL:.0f}: "
              f"**{'met' if gain_ok else 'MISSED'}**",
              f"- epoch time nested / flat: {ratio:.3f}x; goal <= {EPOCH_RATIO_GOAL}x: **{'met' if ratio_ok else 'MISSED'}**"]
    return lines, gain_ok and ratio_ok


def make_header(args: argparse.Namespace, settings: Settings) -> list[str]:
    import torch

    return [
        "# Nested vs flat tagging on QUAERO French Medical",
        "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}; command: "
        f"`python scripts/bench_nested.py {' '.join(sys.argv[1:])}`".rstrip(),
        "",
        f"Settings: all-MiniLM-L6-v2, lr {settings.lr}, batch {settings.batch_size}, max length "
        f"{settings.max_length}, linear decay, clip 1.0, {settings.epochs} epochs, seeds {args.seeds}, "
        f"nesting depth {settings.depth}, layer order {settings.layer_order}, train sentences: "
        f"{settings.max_train or 'all'}.",
        "Flat: `data.nested=keep_longest data.discontinuous=fill` (as `+experiment=ner_quaero` was); "
        "nested: `data.nested=keep data.discontinuous=drop`.",
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", help="shared data folder (default: $MEDKIT_EXP_DATA_DIR or ../shared/data)")
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--depth", type=int, default=3, help="layers of the nested tagger")
    parser.add_argument("--layer-order", default="inner_first", choices=["outer_first", "inner_first"],
                        help="how the nested tagger fills its layers")
    parser.add_argument("--arms", default="flat,nested", help="comma-separated, among flat,nested")
    parser.add_argument("--max-train-sentences", type=int, default=None, help="train on the first N sentences only")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=str(ROOT / "docs" / "bench_nested.md"),
                        help="the markdown report ('-': print only)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data_dir = resolve_data_dir(args.data_dir)
    if not data_dir.joinpath(*QUAERO).is_dir():
        print(f"skipped: QUAERO not found under {data_dir} (give --data-dir or MEDKIT_EXP_DATA_DIR)")
        return 0
    import torch

    from medkit_exp.app_setup import quiet_third_party

    quiet_third_party()
    torch.set_num_threads(args.threads)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench_nested_") as work:
        settings = Settings(args.lr, args.batch_size, args.max_length, args.epochs, args.depth, args.layer_order,
                            args.max_train_sentences, Path(work))
        arms = [arm for arm in ARMS if arm in args.arms.split(",")]
        splits = {arm: load_splits(data_dir, arm, settings.max_train) for arm in arms}
        results = []
        for index, seed in enumerate(seeds):
            order = arms if index % 2 == 0 else list(reversed(arms))
            for arm in order:
                started = time.perf_counter()
                result = run_arm(arm, seed, splits[arm], settings)
                results.append(result)
                print(f"{arm} seed {seed}: F1 as annotated {100 * result.annotated['f1']:.2f} (P "
                      f"{100 * result.annotated['precision']:.2f}, R {100 * result.annotated['recall']:.2f}; recall on entities "
                      f"inside/overlapping a longer one {100 * result.annotated['inner_recall']:.2f}, on the others "
                      f"{100 * result.annotated['outer_recall']:.2f}), ceiling "
                      f"{100 * result.ceiling['ceiling']:.2f}, epochs {[round(s, 1) for s in result.epoch_seconds]} s "
                      f"({time.perf_counter() - started:.0f} s in all)", flush=True)
        lines, ok = report(results, settings, make_header(args, settings))
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output != "-":
        Path(args.output).write_text(text)
        print(f"written to {args.output}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
