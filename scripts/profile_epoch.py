"""Where does a training epoch spend its time? Our Trainer vs the Hugging Face Trainer, profiled
on the same NCBI sentences (cProfile, one epoch each, fp32, batch 16, length grouping both).

Prints, for each system, the epoch's wall time split into the model's forward, the backward
pass, the optimizer step, gradient clipping, batch building (collate) and the rest (the
trainer's own bookkeeping), as seconds and shares, side by side.

    python scripts/profile_epoch.py [--sentences 800] [--precision 32|bf16]

Needs ../shared/data (NCBI disease) or --data-dir / $MEDKIT_EXP_DATA_DIR; skips otherwise.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import bench_ner  # noqa: E402  (its data loading and systems, so the profile runs what the benchmark runs)

#: (part, predicate on a cProfile function key (file, line, name)): cumulative time of the outermost match.
PARTS = {
    "forward": lambda f, n: n == "forward" and "modeling_bert" in f,
    "backward": lambda f, n: n in ("backward", "_engine_run_backward") and "torch" in f,
    "optimizer step": lambda f, n: n == "step" and "optim" in f,
    "clip grad norm": lambda f, n: n in ("clip_grad_norm_", "_clip_grad_norm"),
    "collate": lambda f, n: n in ("collate", "collate_windows", "__call__") and ("tagger" in f or "data_collator" in f),
}


def parts(stats: pstats.Stats) -> dict[str, float]:
    """Cumulative seconds of each part: the largest cumulative time among matching functions (the
    outermost call; nested matches are inside it)."""
    found = {part: 0.0 for part in PARTS}
    for (file, _, name), (_, _, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        for part, matches in PARTS.items():
            if matches(file, name):
                found[part] = max(found[part], cumulative)
    return found


def profile(system: str, corpora: dict[str, list[Any]], settings: Any) -> tuple[float, dict[str, float]]:
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    result = bench_ner.RUNNERS[system](corpora, 42, settings, system)
    profiler.disable()
    wall = time.perf_counter() - start
    epoch = result.epoch_seconds[0]
    print(f"{system}: epoch {epoch:.1f} s (whole run with test prediction {wall:.1f} s)", flush=True)
    return epoch, parts(pstats.Stats(profiler))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--sentences", type=int, default=800)
    parser.add_argument("--systems", default="ours,hf")
    args = parser.parse_args()
    folder = bench_ner.resolve_data_dir(args.data_dir).joinpath(*bench_ner.NCBI)
    if not (folder / "train.tsv").is_file():
        print(f"skipped: NCBI disease corpus not found at {folder}")
        return 0
    import torch

    torch.set_num_threads(2)
    corpora = bench_ner.load_corpora(folder, args.sentences)
    corpora["test"] = corpora["test"][:2]  # the profile is of training: the (profiled) test prediction stays tiny
    rows: dict[str, tuple[float, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as work:
        settings = bench_ner.Settings(epochs=1, work_dir=Path(work))
        for system in args.systems.split(","):
            rows[system] = profile(system, corpora, settings)
    print(f"\nOne epoch on {args.sentences} NCBI sentences (seconds, share of the epoch; under cProfile):")
    print("| part | " + " | ".join(rows) + " |")
    print("| --- |" + " --- |" * len(rows))
    for part in [*PARTS, "rest"]:
        cells = []
        for epoch, found in rows.values():
            seconds = epoch - sum(found.values()) if part == "rest" else found[part]
            cells.append(f"{seconds:.2f} s ({100 * seconds / epoch:.0f}%)")
        print(f"| {part} | " + " | ".join(cells) + " |")
    print("| epoch | " + " | ".join(f"{epoch:.2f} s" for epoch, _ in rows.values()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
