"""Data-parallel scaling: 1 process vs N processes (torchrun) on the same global batch.

Trains the same random BERT token classifier (no download) through the Trainer for ``--steps``
optimizer steps, once with one process taking the whole global batch and once with N processes
taking ``global_batch / N`` each, and prints samples/s side by side with the scaling efficiency
(``samples/s with N / (N x samples/s with 1)``; 1.0 is perfect scaling). The first ``--warmup``
steps are not timed; the clock is read on rank 0 at the end of each optimizer step (after a CUDA
synchronisation on GPUs), so start-up, data caching and the final checkpoint are left out.

On a CPU machine with few cores (this project's 2-core one) the processes share the cores a
single process already uses: the figure measures the overhead of data parallelism (gloo's
gradient all-reduce, the agreements, the shares), not a speed-up. On a machine with NVIDIA GPUs,
run it with NCCL (one GPU per process); it prints the card's name:

    python scripts/bench_ddp.py --steps 10                                   # smoke, CPU / gloo
    python scripts/bench_ddp.py --backend nccl --hidden 768 --layers 6 --global-batch 64 --steps 100
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.training.toy import TinyBertTagger, token_data  # noqa: E402


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2, help="N, compared with 1 process (default 2)")
    parser.add_argument("--global-batch", type=int, default=16, help="items per optimizer step over all processes")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per run (timed: steps - warmup)")
    parser.add_argument("--warmup", type=int, default=3, help="first optimizer steps left out of the timing")
    parser.add_argument("--backend", default="auto", choices=["auto", "gloo", "nccl"])
    parser.add_argument("--hidden", type=int, default=64, help="the encoder's hidden size")
    parser.add_argument("--layers", type=int, default=2, help="the encoder's layers")
    parser.add_argument("--length", type=int, default=48, help="the longest sequence (tokens)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (CPU)")
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)  # rank 0's result file
    args = parser.parse_args(argv)
    if args.global_batch % args.processes or args.steps <= args.warmup + 1:
        parser.error("--global-batch must be a multiple of --processes, and --steps > --warmup + 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.worker is not None:
        return worker(args)
    if args.backend == "nccl" and torch.cuda.device_count() < args.processes:
        sys.exit(f"--backend nccl needs {args.processes} CUDA GPUs; this machine has {torch.cuda.device_count()}")
    results = [launch(args, nproc) for nproc in (1, args.processes)]
    print(table(args, results))


def launch(args: argparse.Namespace, nproc: int) -> dict[str, Any]:
    """One torchrun run of ``nproc`` processes; rank 0's measures."""
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "result.json"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                   str(Path(__file__).resolve()), *sys.argv[1:], "--worker", str(result)]
        environment = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
        print(f"running {nproc} process(es)...", file=sys.stderr, flush=True)
        subprocess.run(command, check=True, env=environment, cwd=ROOT)
        return json.loads(result.read_text())


def table(args: argparse.Namespace, results: list[dict[str, Any]]) -> str:
    one, many = results
    efficiency = many["samples_per_s"] / (args.processes * one["samples_per_s"])
    rows = [("processes", 1, args.processes), ("batch_size per process", one["batch_size"], many["batch_size"]),
            ("global batch", one["global_batch"], many["global_batch"]),
            ("timed steps", one["timed_steps"], many["timed_steps"]),
            ("samples/s", f"{one['samples_per_s']:.1f}", f"{many['samples_per_s']:.1f}")]
    lines = [f"device: {many['device']} (backend {many['backend']}), torch {torch.__version__}",
             f"model: BERT hidden {args.hidden}, {args.layers} layers, sequences up to {args.length} tokens"]
    lines += [f"{name:<24} {first!s:>12} {second!s:>12}" for name, first, second in rows]
    n = args.processes
    lines.append(f"scaling efficiency: {efficiency:.3f} (samples/s with {n} / ({n} x samples/s with 1))")
    if many["backend"] != "nccl":
        lines.append(f"CPU ({os.cpu_count()} cores): the processes share the cores, so this measures the overhead "
                     "of data parallelism, not a speed-up")
    return "\n".join(lines)


# ---------------------------------------------------------------------- inside torchrun
class StepClock:
    """A callback (rank 0's) reading the clock at the end of every optimizer step."""

    def __init__(self, device: torch.device):
        self.device, self.times = device, []

    def on_step_end(self, *args: Any, phase: str = "train", **kwargs: Any) -> None:
        if phase == "train":
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.times.append(time.perf_counter())


def worker(args: argparse.Namespace) -> None:
    from medkit_exp.training import Trainer, TrainerConfig
    from medkit_exp.training.distributed import resolve_backend

    torch.set_num_threads(args.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    backend = resolve_backend(args.backend)
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if backend == "nccl" else torch.device("cpu")
    component = BenchTagger(device, args.hidden, args.layers, args.length)
    data = token_data(args.steps * args.global_batch, seed=1, lengths=(args.length // 2, args.length))
    clock = StepClock(device)
    folder = args.worker.parent / "run"  # the launcher's temporary folder: one for every process
    config = TrainerConfig(output_dir=str(folder), batch_size=args.global_batch // world, max_steps=args.steps,
                           nb_training_epochs=1, eval_strategy="no", logging_steps=10**6, seed=0,
                           handle_signals=False, distributed_backend=backend)
    trainer = Trainer(component, config, data, None, callback=[clock])
    trainer.train()
    if int(os.environ.get("RANK", "0")) == 0:
        timed = len(clock.times) - 1 - args.warmup
        elapsed = clock.times[-1] - clock.times[args.warmup]
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "CPU")
        args.worker.write_text(json.dumps({
            "batch_size": config.batch_size, "global_batch": trainer.global_batch_size, "timed_steps": timed,
            "samples_per_s": timed * trainer.global_batch_size / elapsed, "device": name, "backend": backend,
        }))


class BenchTagger(TinyBertTagger):
    """The benchmarks' random BERT token classifier (tests/training/toy.py), sized by the options and
    placed on this process's device."""

    def __init__(self, device: torch.device, hidden: int, layers: int, length: int):
        from transformers import BertConfig, BertForTokenClassification

        torch.manual_seed(0)
        config = BertConfig(vocab_size=1000, hidden_size=hidden, num_hidden_layers=layers,
                            num_attention_heads=max(1, hidden // 64), intermediate_size=4 * hidden,
                            max_position_embeddings=max(128, length), num_labels=9)
        self.model = BertForTokenClassification(config).to(device)
        self._device = device

    @property
    def device(self) -> torch.device:
        return self._device

    def load(self, path: str | Path) -> None:
        self.model.load_state_dict(torch.load(Path(path) / "model.pt", map_location=self._device))


if __name__ == "__main__":
    main()
