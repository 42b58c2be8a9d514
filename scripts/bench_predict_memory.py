"""Peak memory of ``python -m medkit_exp.predict`` as the corpus grows: it should stay flat.

Builds a JSON-lines corpus of N copies of the NCBI-disease test sentences for each N of
``--copies`` (1x and 10x by default), runs the predict application on each in a fresh subprocess
(its peak RSS read from ``os.wait4``'s resource usage of that child alone), and prints, per size,
the documents, the wall time, the documents/s (wall time of the whole command: Python start,
model load and the validating pre-pass included) and the peak RSS; then the ratio of the largest
size's peak to the smallest's against ``--target`` (1.1) and a verdict.

The tagger is ``--model-dir``, or by default our tagger over the packaged MiniLM encoder
(``medkit_exp.ner.tagger.default_encoder()``) with an untrained head, saved to a temporary folder:
the entities it finds are meaningless, the memory and speed are those of a real model.

    python scripts/bench_predict_memory.py                                   # 1x and 10x
    python scripts/bench_predict_memory.py --copies 1,2 --max-sentences 50   # a smoke run
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# $MEDKIT_EXP_DATA_DIR, else ../shared/data beside the project (as the other benchmarks)
DATA_DIR = Path(os.environ.get("MEDKIT_EXP_DATA_DIR", ROOT.parent / "shared" / "data"))
NCBI_TEST = DATA_DIR / "ncbi_disease" / "MTL-Bioinformatics-2016" / "data" / "NCBI-disease-IOB" / "test.tsv"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", default="1,10", help="corpus sizes, as copies of the test set (default 1,10)")
    parser.add_argument("--max-sentences", type=int, default=None, help="use only the first N test sentences")
    parser.add_argument("--data", type=Path, default=NCBI_TEST, help=f"the CoNLL test file (default {NCBI_TEST})")
    parser.add_argument("--model-dir", type=Path, default=None, help="a saved tagger (default: MiniLM, untrained head)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "int8"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-batch-tokens", type=int, default=None)
    parser.add_argument("--target", type=float, default=1.1, help="largest/smallest peak RSS ratio to pass (1.1)")
    args = parser.parse_args(argv)
    try:
        args.copies = sorted({int(n) for n in args.copies.split(",")})
    except ValueError:
        parser.error(f"--copies: comma-separated integers, got {args.copies!r}")
    if not args.copies or args.copies[0] < 1:
        parser.error("--copies: integers >= 1")
    return args


def build_corpus(sentences: list, copies: int, path: Path) -> int:
    """Write ``copies`` copies of ``sentences`` as JSON lines (ids made unique); the count."""
    import json

    count = 0
    with path.open("w", encoding="utf-8") as stream:
        for copy in range(copies):
            for doc in sentences:
                stream.write(json.dumps({"id": f"{doc.doc_id}-c{copy}", "text": doc.text}, ensure_ascii=False) + "\n")
                count += 1
    return count


def default_tagger(folder: Path) -> Path:
    from medkit_exp.ner.tagger import HFEntityMatcherTrainable, default_encoder

    HFEntityMatcherTrainable(default_encoder(), ["Disease"], "iob2").save(folder)
    return folder


def run_predict(model: Path, corpus: Path, output: Path, args: argparse.Namespace, workdir: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one predict run, in its own process."""
    command = [
        sys.executable, "-m", "medkit_exp.predict", f"model={model}", f"input={corpus}", f"output={output}",
        f"precision={args.precision}", f"batch_size={args.batch_size}", "progress=false",
        f"max_batch_tokens={'null' if args.max_batch_tokens is None else args.max_batch_tokens}",
        f"hydra.run.dir={workdir / 'run'}",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage: its peak, not the max of all runs
    elapsed = time.perf_counter() - started
    stdout, stderr = process.stdout.read().decode(), process.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"predict failed (exit {os.waitstatus_to_exitcode(status)}) on {corpus}:\n{stderr[-3000:]}")
    said = [line for line in stdout.splitlines() if line.startswith("Predicted ")]
    print("   ", said[0] if said else "(no 'Predicted ...' line in its output)")
    return elapsed, usage.ru_maxrss * 1024  # Linux: kilobytes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.data.is_file():
        print(f"NCBI-disease test set not found at {args.data}: nothing to measure (pass --data PATH)")
        return 0
    from medkit_exp.ner import read_conll

    sentences = list(read_conll(args.data))[: args.max_sentences]
    print(f"{len(sentences)} sentences from {args.data}; precision {args.precision}, batch_size {args.batch_size}, "
          f"max_batch_tokens {args.max_batch_tokens}")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_predict_memory_") as tmp:
        tmp = Path(tmp)
        model = args.model_dir or default_tagger(tmp / "tagger")
        for copies in args.copies:
            corpus = tmp / f"corpus_{copies}x.jsonl"
            documents = build_corpus(sentences, copies, corpus)
            print(f"{copies}x: {documents} documents, {corpus.stat().st_size / 1e6:.1f} MB")
            elapsed, peak = run_predict(model, corpus, tmp / f"out_{copies}x.jsonl", args, tmp)
            results.append((copies, documents, elapsed, peak))
            corpus.unlink()
    print(f"\n{'size':>6} {'documents':>10} {'wall s':>8} {'docs/s':>8} {'peak RSS MB':>12}")
    for copies, documents, elapsed, peak in results:
        print(f"{copies:>5}x {documents:>10} {elapsed:>8.1f} {documents / elapsed:>8.1f} {peak / 1e6:>12.1f}")
    if len(results) > 1:
        ratio = results[-1][3] / results[0][3]
        verdict = "PASS" if ratio <= args.target else "FAIL"
        print(f"\npeak RSS {results[-1][0]}x / {results[0][0]}x = {ratio:.3f} (target <= {args.target}): {verdict}")
        return 0 if ratio <= args.target else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
