"""NER benchmark on NCBI disease: our Trainer + tagger vs the Hugging Face Trainer (and medkit's).

Training (all-MiniLM-L6-v2, lr 5e-5, batch 16, max length 128, linear decay, grad clip 1.0,
3 epochs, seeds 42 43 44, 2 threads): strict word-level test entity F1 and training time per
epoch (the training loop only: no evaluation, no saving) of each system, the systems of a seed
run one after the other in an order that rotates from seed to seed. Systems:

- ``ours``: fp32, length grouping, the tagger's default padding (none on CPU);
- ``ours-default``: our application defaults (``conf/trainer/cpu.yaml``): ``precision=auto``
  (bf16 autocast where the CPU has native bf16, else fp32), length grouping;
- ``ours-tokens``: ``ours-default`` with batches bounded by a token budget (``--token-budget``;
  up to 4x ``--batch-size`` items per batch): fewer, fuller steps;
- ``hf``: the HF Trainer with ``group_by_length`` (fp32; its defaults plus that one flag);
- ``hf-random``: the HF Trainer's defaults (random sampling), for reference;
- ``hf-bf16``: ``hf`` with ``bf16=True`` (autocast);
- ``medkit``: medkit 0.17's Trainer (needs ``medkit-lib``).

Targets (each: epoch time ratio, and our mean F1 not below HF's by more than 0.5 point):
``ours`` <= 0.9x ``hf`` (equal settings); ``ours-default`` <= 0.65x ``hf`` (defaults vs defaults
plus length grouping); ``ours-default`` <= 0.9x ``hf-bf16`` where auto resolves to bf16.

Inference: the same saved model on the NCBI test sentences, ``predict`` at each precision
(fp32, bf16, int8) vs ``transformers.pipeline("token-classification", aggregation_strategy="simple")``,
with the test F1 of each precision. Target: >= 3x the pipeline's sentences/s with test F1 within
0.3 point of fp32.

F1 is computed the same way for every system: seqeval strict IOB2 on the tags of the CoNLL
words (ours: ``predict``, then entities -> word tags; HF and medkit models: the tag predicted
for the first sub-token of each word).

    python scripts/bench_ner.py                                   # full run (hours on 2 cores)
    python scripts/bench_ner.py --max-train-sentences 300 --epochs 1 --seeds 42 --systems ours,hf
    python scripts/bench_ner.py --inference-only [--model-dir DIR]

The data folder is --data-dir, else $MEDKIT_EXP_DATA_DIR, else ../shared/data beside the
project; without the corpus the script says "skipped" and exits 0. The HF systems need
``accelerate`` (the HF Trainer's requirement), the medkit one ``medkit-lib``.
"""

from __future__ import annotations

import argparse
import logging
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

NCBI = ("ncbi_disease", "MTL-Bioinformatics-2016", "data", "NCBI-disease-IOB")
SYSTEMS = ("ours", "ours-default", "ours-tokens", "hf", "hf-random", "hf-bf16", "medkit")
DEFAULT_SYSTEMS = "ours,ours-default,hf,hf-random,hf-bf16"
#: (ours, hf, target ratio, what the line compares)
TARGETS = [
    ("ours", "hf", 0.9, "equal settings (fp32 both, length grouping both)"),
    ("ours-default", "hf", 0.65, "our defaults vs HF defaults + group_by_length"),
    ("ours-default", "hf-bf16", 0.9, "bf16 both (our auto resolved to bf16)"),
    ("ours-tokens", "hf", 0.65, "token-budget batches vs HF defaults + group_by_length"),
    ("ours", "hf-random", None, "reference: HF defaults (random sampling)"),
]
LABELS = ["Disease"]
TAGS = ["O", "B-Disease", "I-Disease"]


@dataclass
class Settings:
    lr: float = 5e-5
    batch_size: int = 16
    max_length: int = 128
    epochs: int = 3
    work_dir: Path = Path(".")
    token_budget: int | None = None


@dataclass
class RunResult:
    system: str
    seed: int
    f1: float
    epoch_seconds: list[float] = field(default_factory=list)
    model_dir: str | None = None
    precision: str = "32"  # the precision the run used (ours: the Trainer's resolved one)
    steps: int = 0


# ------------------------------------------------------------------ data and evaluation
def resolve_data_dir(option: str | None) -> Path:
    if option:
        return Path(option)
    return Path(os.environ.get("MEDKIT_EXP_DATA_DIR", ROOT.parent / "shared" / "data"))


def load_corpora(folder: Path, max_train: int | None) -> dict[str, list[Any]]:
    from medkit_exp.ner import read_conll

    corpora = {split: list(read_conll(folder / f"{split}.tsv", scheme="iob2")) for split in ("train", "devel", "test")}
    if max_train:
        corpora["train"] = corpora["train"][:max_train]
    return corpora


def conll_words(document: Any) -> list[str]:
    return [document.text[start:end] for start, end in document.metadata["tokens"]]


def word_tags(document: Any, entities: list[Any]) -> list[str]:
    """IOB2 tags of the CoNLL words of ``document`` for ``entities``."""
    from medkit_exp.ner.tagging import spans_to_tags

    return spans_to_tags(document.metadata["tokens"], entities, "iob2")


def strict_f1(gold: list[list[str]], predicted: list[list[str]]) -> float:
    from seqeval.metrics import f1_score
    from seqeval.scheme import IOB2

    return float(f1_score(gold, predicted, mode="strict", scheme=IOB2))


def first_subtoken_tags(model: Any, tokenizer: Any, documents: list[Any], max_length: int) -> list[list[str]]:
    """Word tags from a token-classification model: the tag of each word's first sub-token
    (words cut off by truncation get ``O``)."""
    import torch

    id2label = {int(k): v for k, v in model.config.id2label.items()}
    words = [conll_words(d) for d in documents]
    tags = [["O"] * len(w) for w in words]
    order = sorted(range(len(words)), key=lambda i: len(words[i]))
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), 32):
            chunk = order[start : start + 32]
            encoding = tokenizer([words[i] for i in chunk], is_split_into_words=True, truncation=True,
                                 max_length=max_length, padding=True, return_tensors="pt")
            logits = model(input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"]).logits
            best = logits.argmax(-1).tolist()
            for row, index in enumerate(chunk):
                previous = None
                for position, word in enumerate(encoding.word_ids(row)):
                    if word is not None and word != previous:
                        tags[index][word] = id2label[best[row][position]]
                    previous = word
    return tags


def first_subtoken_labels(tokenizer: Any, document: Any, max_length: int) -> dict[str, list[int]]:
    """HF-style training item: gold tag on each word's first sub-token, -100 elsewhere."""
    encoding = tokenizer(conll_words(document), is_split_into_words=True, truncation=True, max_length=max_length)
    gold = word_tags(document, document.entities)
    labels, previous = [], None
    for word in encoding.word_ids():
        labels.append(-100 if word is None or word == previous else TAGS.index(gold[word]))
        previous = word
    return {"input_ids": encoding["input_ids"], "attention_mask": encoding["attention_mask"], "labels": labels}


# ------------------------------------------------------------------ systems
def run_ours(corpora: dict[str, list[Any]], seed: int, settings: Settings, system: str = "ours") -> RunResult:
    from medkit_exp.ner.prediction import predict
    from medkit_exp.ner.tagger import HFEntityMatcherTrainable, default_encoder
    from medkit_exp.training import Trainer, TrainerCallback, TrainerConfig, WarmupDecaySchedulerBuilder, seed_everything

    class EpochTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch: int) -> None:
            self._start = time.perf_counter()

        def on_epoch_end(self, metrics: Any, epoch: int, epoch_duration: float) -> None:
            self.seconds.append(time.perf_counter() - self._start)

    seed_everything(seed)  # before the tagger: its new classification head is seeded too
    tagger = HFEntityMatcherTrainable(default_encoder(), LABELS, "iob2", tokenizer_max_length=settings.max_length)
    # "ours": fp32 as the HF Trainer's default; the others: our application's default precision
    options: dict[str, Any] = {"precision": "32" if system == "ours" else "auto", "batch_size": settings.batch_size}
    if system == "ours-tokens":
        options.update(batch_size=4 * settings.batch_size, max_batch_tokens=settings.token_budget)
    config = TrainerConfig(
        output_dir=str(settings.work_dir / f"{system}-{seed}"), learning_rate=settings.lr,
        nb_training_epochs=settings.epochs, seed=seed, max_grad_norm=1.0,
        eval_strategy="no", checkpoint_period=0, keep_best_k=0, group_by_length=True, logging_steps=10**6,
        **options,
    )
    timer = EpochTimer()
    trainer = Trainer(tagger, config, corpora["train"], None, lr_scheduler_builder=WarmupDecaySchedulerBuilder("linear"),
                      callback=[timer])
    trainer.train()
    test = corpora["test"]
    predicted = predict(tagger, [d.with_entities([]) for d in test], batch_size=32)
    f1 = strict_f1([word_tags(d, d.entities) for d in test], [word_tags(d, p.entities) for d, p in zip(test, predicted)])
    return RunResult(system, seed, f1, timer.seconds, trainer.last_checkpoint, trainer.precision, trainer.state.global_step)


def run_hf(corpora: dict[str, list[Any]], seed: int, settings: Settings, system: str = "hf") -> RunResult:
    import transformers

    from medkit_exp.ner.tagger import default_encoder

    class EpochTimer(transformers.TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []

        def on_epoch_begin(self, args, state, control, **kwargs):
            self._start = time.perf_counter()

        def on_epoch_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self._start)

    encoder = default_encoder()
    tokenizer = transformers.AutoTokenizer.from_pretrained(encoder)
    transformers.set_seed(seed)
    model = transformers.AutoModelForTokenClassification.from_pretrained(
        encoder, num_labels=len(TAGS), id2label=dict(enumerate(TAGS)), label2id={t: i for i, t in enumerate(TAGS)}
    )
    train = [first_subtoken_labels(tokenizer, d, settings.max_length) for d in corpora["train"]]
    arguments = transformers.TrainingArguments(
        output_dir=str(settings.work_dir / f"hf-{seed}"), learning_rate=settings.lr,
        per_device_train_batch_size=settings.batch_size, num_train_epochs=settings.epochs, seed=seed,
        lr_scheduler_type="linear", max_grad_norm=1.0, weight_decay=0.0, save_strategy="no", eval_strategy="no",
        logging_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True, dataloader_num_workers=0,
        train_sampling_strategy="random" if system == "hf-random" else "group_by_length",
        bf16=system == "hf-bf16",
    )
    timer = EpochTimer()
    trainer = transformers.Trainer(
        model=model, args=arguments, train_dataset=train, callbacks=[timer],
        data_collator=transformers.DataCollatorForTokenClassification(tokenizer),
    )
    trainer.train()
    test = corpora["test"]
    predicted = first_subtoken_tags(model, tokenizer, test, settings.max_length)
    f1 = strict_f1([word_tags(d, d.entities) for d in test], predicted)
    precision = "bf16" if arguments.bf16 else "32"
    return RunResult(system, seed, f1, timer.seconds, precision=precision, steps=trainer.state.global_step)


def run_medkit(corpora: dict[str, list[Any]], seed: int, settings: Settings, system: str = "medkit") -> RunResult:
    from medkit.text.ner.hf_entity_matcher_trainable import HFEntityMatcherTrainable as MedkitTagger
    from medkit.training import Trainer as MedkitTrainer
    from medkit.training import TrainerCallback as MedkitCallback
    from medkit.training import TrainerConfig as MedkitConfig

    from medkit_exp.ner.formats import to_medkit
    from medkit_exp.ner.tagger import default_encoder
    from medkit_exp.training import seed_everything

    class EpochTimer(MedkitCallback):
        """medkit evaluates inside its epochs: time from the epoch's start to its first eval step."""

        def __init__(self) -> None:
            self.seconds: list[float] = []
            self._start: float | None = None

        def on_epoch_begin(self, epoch: int) -> None:
            self._start = time.perf_counter()

        def on_step_begin(self, step_idx: int, nb_batches: int, phase: str) -> None:
            if phase == "eval" and self._start is not None:
                self.seconds.append(time.perf_counter() - self._start)
                self._start = None

        def on_epoch_end(self, metrics: Any, epoch: int, epoch_duration: float | None = None, **kwargs: Any) -> None:
            pass

    seed_everything(seed)
    tagger = MedkitTagger(default_encoder(), LABELS, "iob2", tokenizer_max_length=settings.max_length)
    # medkit steps its scheduler once per epoch: a linear decay over the epochs is the closest
    scheduler = _epoch_linear_decay(settings.epochs)
    config = MedkitConfig(output_dir=str(settings.work_dir / f"medkit-{seed}"), learning_rate=settings.lr,
                          nb_training_epochs=settings.epochs, batch_size=settings.batch_size, seed=seed)
    timer = EpochTimer()
    train = [to_medkit(d) for d in corpora["train"]]
    evaluation = [to_medkit(d) for d in corpora["devel"][:32]]  # medkit needs eval data; not timed
    MedkitTrainer(tagger, config, train, evaluation, lr_scheduler_builder=scheduler, callback=timer).train()
    test = corpora["test"]
    predicted = first_subtoken_tags(tagger._model, tagger._tokenizer, test, settings.max_length)
    return RunResult("medkit", seed, strict_f1([word_tags(d, d.entities) for d in test], predicted), timer.seconds)


def _epoch_linear_decay(epochs: int) -> Any:
    import torch

    return lambda optimizer: torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: max(0.0, 1.0 - epoch / epochs))


RUNNERS = {"ours": run_ours, "ours-default": run_ours, "ours-tokens": run_ours, "hf": run_hf, "hf-random": run_hf,
           "hf-bf16": run_hf, "medkit": run_medkit}


def missing_requirement(system: str) -> str | None:
    import importlib.util

    needs = {"hf": ("accelerate", "pip install 'accelerate>=1.1'"), "medkit": ("medkit", "pip install medkit-lib")}
    system = system.split("-")[0]
    if system in needs and importlib.util.find_spec(needs[system][0]) is None:
        return f"needs {needs[system][0]} ({needs[system][1]})"
    return None


# ------------------------------------------------------------------ inference
def untrained_model_dir(work_dir: Path, max_length: int) -> str:
    """Our tagger over MiniLM with a new head, saved: throughput does not depend on the weights."""
    from medkit_exp.ner.tagger import HFEntityMatcherTrainable, default_encoder

    folder = work_dir / "untrained-tagger"
    HFEntityMatcherTrainable(default_encoder(), LABELS, "iob2", tokenizer_max_length=max_length).save(folder)
    return str(folder)


def bench_inference(model_dir: str, test: list[Any], rounds: int, precisions: list[str], batch_size: int,
                    max_batch_tokens: int | None) -> dict[str, Any]:
    """Sentences/s of the pipeline and of ``predict`` at each precision (median of ``rounds``,
    the arms alternating within each round), and the test F1 of each precision's predictions."""
    import transformers

    from medkit_exp.ner.documents import TextDocument
    from medkit_exp.ner.prediction import predict
    from medkit_exp.ner.tagger import HFEntityMatcherTrainable

    texts = [d.text for d in test]
    documents = [TextDocument(t) for t in texts]
    pipe = transformers.pipeline("token-classification", model=model_dir, aggregation_strategy="simple", device=-1)
    tagger = HFEntityMatcherTrainable.from_pretrained(model_dir)

    def ours(precision: str) -> Any:
        return lambda docs: predict(tagger, docs, batch_size=batch_size, precision=precision,
                                    max_batch_tokens=max_batch_tokens)

    arms: dict[str, Any] = {"pipeline": pipe, **{f"predict {p}": ours(p) for p in precisions}}
    for name, arm in arms.items():  # warm-up (and int8's one-off quantisation) outside the timings
        arm(texts[:16] if name == "pipeline" else documents[:32])
    times: dict[str, list[float]] = {name: [] for name in arms}
    outputs: dict[str, Any] = {}
    for round_index in range(rounds):  # alternate, rotating the order, so machine noise hits all alike
        names = list(arms)[round_index % len(arms):] + list(arms)[: round_index % len(arms)]
        for name in names:
            start = time.perf_counter()
            outputs[name] = arms[name](texts if name == "pipeline" else documents)
            times[name].append(time.perf_counter() - start)
    gold = [word_tags(d, d.entities) for d in test]
    f1 = {name: strict_f1(gold, [word_tags(d, p.entities) for d, p in zip(test, outputs[name])])
          for name in arms if name != "pipeline"}
    speed = {name: len(texts) / statistics.median(values) for name, values in times.items()}
    entities = {name: sum(len(f) for f in found) if name == "pipeline" else sum(len(d.entities) for d in found)
                for name, found in outputs.items()}
    return {"model_dir": model_dir, "sentences": len(texts), "rounds": rounds, "speed": speed, "f1": f1,
            "entities": entities, "batch_size": batch_size, "max_batch_tokens": max_batch_tokens}


# ------------------------------------------------------------------ report
def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def training_report(results: list[RunResult], quick: bool) -> list[str]:
    lines = ["## Training", "",
             "| system | seed | precision used | optimizer steps | epoch times (s) | test F1 (strict, word) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in results:
        epochs = ", ".join(f"{s:.1f}" for s in r.epoch_seconds)
        lines.append(f"| {r.system} | {r.seed} | {r.precision} | {r.steps} | {epochs} | {100 * r.f1:.2f} |")
    summary: dict[str, tuple[float, float]] = {}
    for system in dict.fromkeys(r.system for r in results):
        runs = [r for r in results if r.system == system]
        summary[system] = (statistics.mean(s for r in runs for s in r.epoch_seconds),
                           statistics.mean(r.f1 for r in runs))
    lines += ["", "| system | mean epoch time (s) | mean test F1 |", "| --- | --- | --- |"]
    lines += [f"| {system} | {epoch:.1f} | {100 * f1:.2f} |" for system, (epoch, f1) in summary.items()]
    lines += ["", "| comparison | epoch time ratio | target | F1 difference (points) | target | verdict |",
              "| --- | --- | --- | --- | --- | --- |"]
    for ours, hf, target, what in TARGETS:
        if ours not in summary or hf not in summary:
            continue
        ratio = summary[ours][0] / summary[hf][0]
        delta = 100 * (summary[ours][1] - summary[hf][1])
        if target is None:
            lines.append(f"| {ours} / {hf}: {what} | {ratio:.3f}x | - | {delta:+.2f} | - | reference |")
            continue
        judged = f"time {verdict(ratio <= target)}, F1 {verdict(delta >= -0.5)}"
        if quick:
            judged += " (QUICK MODE: not the benchmark's settings)"
        lines.append(f"| {ours} / {hf}: {what} | {ratio:.3f}x | <= {target}x | {delta:+.2f} | >= -0.50 | {judged} |")
    return lines + [""]


def inference_report(result: dict[str, Any]) -> list[str]:
    speed, f1 = result["speed"], result["f1"]
    tokens = result["max_batch_tokens"] or "default"
    lines = [
        "## Inference", "",
        f"Model: {result['model_dir']}; {result['sentences']} NCBI test sentences; median of {result['rounds']} "
        f"rounds (arms alternating); predict batch size {result['batch_size']}, max_batch_tokens {tokens}.", "",
        "| system | sentences/s | vs pipeline | entities found | test F1 (strict, word) | F1 - fp32 (points) |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| pipeline(aggregation_strategy=\"simple\") | {speed['pipeline']:.1f} | 1.00x | {result['entities']['pipeline']} | - | - |",
    ]
    reference = f1.get("predict fp32")
    for name, value in f1.items():
        delta = f"{100 * (value - reference):+.2f}" if reference is not None else "n/a"
        lines.append(f"| {name} | {speed[name]:.1f} | {speed[name] / speed['pipeline']:.2f}x | "
                     f"{result['entities'][name]} | {100 * value:.2f} | {delta} |")
    lines.append("")
    for name, value in f1.items():
        ratio = speed[name] / speed["pipeline"]
        f1_ok = reference is None or 100 * abs(value - reference) <= 0.3
        lines.append(f"- {name}: {ratio:.2f}x the pipeline (target >= 3x: {verdict(ratio >= 3)}); "
                     f"F1 within 0.3 point of fp32: {verdict(f1_ok)}.")
    return lines + [""]


def header(args: argparse.Namespace, quick: bool, threads: int) -> list[str]:
    import torch
    import transformers

    from medkit_exp.training.precision import resolve_precision

    mode = "QUICK MODE (smaller run; numbers are not the benchmark's)" if quick else "full"
    if args.inference_only:
        mode = "inference only"
    auto = resolve_precision("auto", torch.device("cpu"))
    return [
        "# NER benchmark: NCBI disease, all-MiniLM-L6-v2, CPU", "",
        f"- mode: {mode}; command: `python scripts/bench_ner.py {' '.join(sys.argv[1:])}`",
        f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()} "
        f"({cpu_name()}), {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} at the start), "
        f"torch threads {threads}; torch {torch.__version__}, transformers {transformers.__version__}; "
        f"precision=auto resolves to {auto} here",
        f"- settings: lr {args.lr}, batch {args.batch_size}, max length {args.max_length}, {args.epochs} epochs, "
        f"seeds {args.seeds}, train sentences {args.max_train_sentences or 'all'}; linear decay, no warmup, "
        f"grad clip 1.0 (medkit: per-epoch decay, no clipping, as its Trainer allows); ours-tokens: "
        f"max_batch_tokens {args.token_budget}, up to {4 * args.batch_size} sentences per batch",
        "- epoch time: the training loop only (ours/hf: no evaluation or saving inside epochs; medkit: up to "
        "its in-epoch evaluation). Ours: group_by_length, cached tokenisation, fused AdamW, no padding beyond "
        "each batch's longest window. HF: DataCollatorForTokenClassification (pads to the batch's longest).", "",
    ]


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown CPU"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", help="shared data folder (default: $MEDKIT_EXP_DATA_DIR or ../shared/data)")
    parser.add_argument("--systems", default=DEFAULT_SYSTEMS, help=f"comma-separated, among {','.join(SYSTEMS)}")
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-train-sentences", type=int, default=None, help="train on the first N sentences only")
    parser.add_argument("--inference-only", action="store_true", help="only the inference benchmark")
    parser.add_argument("--skip-inference", action="store_true", help="only the training benchmark")
    parser.add_argument("--model-dir", help="saved tagger folder for inference (default: the first trained 'ours' "
                        "model, else MiniLM with an untrained head)")
    parser.add_argument("--inference-rounds", type=int, default=3)
    parser.add_argument("--precisions", default="fp32,bf16,int8", help="predict precisions to time")
    parser.add_argument("--predict-batch-size", type=int, default=64)
    parser.add_argument("--predict-max-tokens", type=int, default=None, help="predict's max_batch_tokens")
    parser.add_argument("--output", default=str(ROOT / "docs" / "bench_ner.md"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--token-budget", type=int, default=None,
                        help="ours-tokens: max_batch_tokens (default: batch size x the mean sub-tokens per train "
                        "sentence: the tokens of an average batch in every batch)")
    args = parser.parse_args(argv)
    unknown = set(args.systems.split(",")) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}; choose among {', '.join(SYSTEMS)}")
    return args


def mean_batch_tokens(train: list[Any], batch_size: int, max_length: int) -> int:
    """``batch_size`` x the mean number of sub-tokens (special tokens included) of a train sentence."""
    import transformers

    from medkit_exp.ner.tagger import default_encoder

    tokenizer = transformers.AutoTokenizer.from_pretrained(default_encoder())
    lengths = [len(tokenizer(conll_words(d), is_split_into_words=True, truncation=True, max_length=max_length)["input_ids"])
               for d in train]
    return round(batch_size * statistics.mean(lengths))


def rotated(systems: list[str], index: int) -> list[str]:
    """The systems in an order that rotates with ``index``: no system always runs first."""
    shift = index % len(systems)
    return systems[shift:] + systems[:shift]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder = resolve_data_dir(args.data_dir).joinpath(*NCBI)
    if not all((folder / f"{split}.tsv").is_file() for split in ("train", "devel", "test")):
        print(f"skipped: NCBI disease corpus not found at {folder} (pass --data-dir or set MEDKIT_EXP_DATA_DIR)")
        return 0
    import torch

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    quick = bool(args.max_train_sentences) or args.epochs != 3 or args.seeds != "42,43,44"
    corpora = load_corpora(folder, None if args.inference_only else args.max_train_sentences)
    print(f"NCBI: {', '.join(f'{k} {len(v)}' for k, v in corpora.items())} sentences", flush=True)
    if args.token_budget is None and "ours-tokens" in args.systems.split(","):
        args.token_budget = mean_batch_tokens(corpora["train"], args.batch_size, args.max_length)
    lines = header(args, quick, args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_ner_") as work:
        settings = Settings(args.lr, args.batch_size, args.max_length, args.epochs, Path(work), args.token_budget)
        results: list[RunResult] = []
        if not args.inference_only:
            for index, seed in enumerate(int(s) for s in args.seeds.split(",")):
                for system in rotated(args.systems.split(","), index):
                    problem = missing_requirement(system)
                    if problem:
                        print(f"{system}: skipped, {problem}", flush=True)
                        continue
                    result = RUNNERS[system](corpora, seed, settings, system)
                    results.append(result)
                    epochs = ", ".join(f"{s:.1f}" for s in result.epoch_seconds)
                    print(f"{system} seed {seed} ({result.precision}, {result.steps} steps): F1 {100 * result.f1:.2f}, "
                          f"epoch times (s) {epochs}", flush=True)
            results.sort(key=lambda r: (r.seed, SYSTEMS.index(r.system)))
            lines += training_report(results, quick)
        if not args.skip_inference:
            trained = next((r for r in results if r.system == "ours" and r.model_dir), None)
            if args.model_dir:
                model_dir, described = args.model_dir, f"`{args.model_dir}`"
            elif trained:
                model_dir, described = trained.model_dir, f"ours (fp32), seed {trained.seed}, after training (final checkpoint)"
            else:
                model_dir = untrained_model_dir(Path(work), args.max_length)
                described = "our tagger over MiniLM, new (untrained) head: throughput only, F1 meaningless"
            inference = bench_inference(model_dir, corpora["test"], args.inference_rounds, args.precisions.split(","),
                                        args.predict_batch_size, args.predict_max_tokens)
            inference["model_dir"] = described
            lines += inference_report(inference)
    report = "\n".join(lines)
    print("\n" + report)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(report, encoding="utf-8")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
