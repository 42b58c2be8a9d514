"""Trains a small component with the Trainer, under torchrun or in one process, for the DDP tests.

usage: [python -m torch.distributed.run --standalone --nproc-per-node=2] ddp_toy.py OUT [options]

The run's folder is OUT/<component>/run (written by rank 0 only). Each rank reports in
OUT/<component>/rank<N>.json (its step, stop reason, history, world size, global batch) and
OUT/<component>/final_state_rank<N>.pt (its weights).
Components: ``toy`` (the toy classifier, whose forward calls its model's submodules), ``whole``
(the same network called as a whole: DDP's path), ``early`` (``whole`` with early stopping),
``train-metrics`` (``whole`` with ``do_metrics_in_training``),
``hidden`` (no ``model``: collectives), ``sabotaged`` (``whole`` with dropout, killed, signalled or
failing at a given forward on a given rank), ``tagger`` (medkit_exp's NER tagger on a tiny BERT,
with the loss-terms method), ``tagger-items`` (the tagger as it is, without it). Several components
given as ``--components a,b`` train one after the other in the same processes (OUT/a, OUT/b).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from medkit_exp.training import EarlyStoppingCallback, Trainer, TrainerConfig  # noqa: E402
from tests.training.toy import AccuracyComputer, ToyTextClassifier, make_texts  # noqa: E402

RANK = int(os.environ.get("RANK", "0"))


class BagOfWords(torch.nn.Module):
    """The toy's network as one module with a forward."""

    def __init__(self, layers: torch.nn.ModuleDict):
        super().__init__()
        self.layers = layers

    def forward(self, input_ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        hidden = self.layers["embed"](input_ids, offsets)
        return self.layers["out"](self.layers["norm"](self.layers["drop"](hidden)))


class WholeToy(ToyTextClassifier):
    def __init__(self, dropout: float = 0.0):
        super().__init__(dropout=dropout)
        self.model = BagOfWords(self.model)

    def forward(self, input_batch, return_loss, eval_mode):
        from medkit_exp.training import BatchData

        self.model.train(not eval_mode)
        logits = self.model(input_batch["input_ids"], input_batch["offsets"])
        loss = self.loss(logits, input_batch["labels"]) if return_loss else None
        return BatchData(logits=logits), loss


class HiddenToy(ToyTextClassifier):
    """The toy without a ``model`` attribute: its network is private (``net``)."""

    def __init__(self):
        super().__init__(dropout=0.0)
        self.net = self.__dict__.pop("model")

    def configure_optimizer(self, lr):
        return torch.optim.AdamW(self.net.parameters(), lr=lr)

    def forward(self, input_batch, return_loss, eval_mode):
        self.model = self.net  # the toy's forward, on the private network, which is then hidden again
        try:
            return super().forward(input_batch, return_loss, eval_mode)
        finally:
            del self.model

    def save(self, path):
        torch.save(self.net.state_dict(), Path(path) / "toy_model.pt")

    def load(self, path):
        self.net.load_state_dict(torch.load(Path(path) / "toy_model.pt"))


class Sabotaged(WholeToy):
    """The whole-model toy, with dropout (random states matter), that at its ``at``-th training forward
    on rank ``rank`` is SIGKILLed, gets a SIGTERM or raises (callbacks run on rank 0 only: the component
    is where any rank acts)."""

    def __init__(self, what: str, at: int, rank: int):
        super().__init__(dropout=0.3)
        self.what, self.at, self.rank, self.calls = what, at, rank, 0

    def forward(self, input_batch, return_loss, eval_mode):
        self.calls += not eval_mode
        if RANK == self.rank and self.calls == self.at and not eval_mode:
            if self.what == "raise":
                raise RuntimeError(f"rank {RANK} broke at forward {self.calls}")
            os.kill(os.getpid(), signal.SIGKILL if self.what == "kill" else signal.SIGTERM)
        return super().forward(input_batch, return_loss, eval_mode)


def tagger_documents(nb: int, seed: int) -> list:
    from medkit_exp.ner.documents import Entity, TextDocument

    words = ["the", "patient", "reports", "fever", "and", "chest", "pain", "treated", "with", "insulin",
             "metformin", "blood", "pressure", "test", "normal", "denies", "cough", "daily", "mg"]
    labels = {"fever": "problem", "pain": "problem", "cough": "problem", "insulin": "treatment",
              "metformin": "treatment", "test": "test", "pressure": "test"}
    rng, documents = random.Random(seed), []
    for index in range(nb):
        chosen = rng.choices(words, k=rng.randint(3, 14))
        text, entities, position = "", [], 0
        for word in chosen:
            if text:
                text += " "
            if word in labels:
                entities.append(Entity(labels[word], [(len(text), len(text) + len(word))]))
            text += word
            position += 1
        documents.append(TextDocument(text + ".", entities, doc_id=f"d{index}"))
    return documents


def build(name: str, args: argparse.Namespace):
    """The component ``name``, its training and evaluation data, its metrics computer."""
    if name.startswith("tagger"):
        from medkit_exp.ner.tagger import HFEntityMatcherTrainable

        class ItemMeanTagger(HFEntityMatcherTrainable):
            nb_loss_terms = None  # as a component that does not tell its token count: each rank's mean weighs as its items

        kind = HFEntityMatcherTrainable if name == "tagger" else ItemMeanTagger
        torch.manual_seed(0)
        tagger = kind(args.bert, ["problem", "treatment", "test"], "iob2", tokenizer_max_length=16)
        return tagger, tagger_documents(args.items, 1), tagger_documents(13, 2), tagger.make_metrics_computer()
    component = {"toy": lambda: ToyTextClassifier(dropout=0.0), "whole": WholeToy, "early": WholeToy,
                 "train-metrics": WholeToy,
                 "hidden": HiddenToy, "sabotaged": lambda: Sabotaged(args.what, args.at, args.on_rank)}
    return component[name](), make_texts(args.items, 1), make_texts(args.eval_items, 2), AccuracyComputer()


def train(name: str, args: argparse.Namespace, out: Path) -> None:
    """Train component ``name`` into ``out``/run; report into ``out``."""
    component, train_data, dev, metrics = build(name, args)
    lr = args.rank1_lr if args.rank1_lr is not None and RANK == 1 else 5e-3
    config = TrainerConfig(
        output_dir=str(out / "run"), learning_rate=lr, nb_training_epochs=args.epochs, batch_size=args.batch_size,
        seed=7, gradient_accumulation_steps=args.accumulation, group_by_length=args.group_by_length, logging_steps=2,
        eval_strategy="steps" if args.eval_steps else "epoch", eval_steps=args.eval_steps,
        weight_decay=0.0 if name == "hidden" else 0.01,
        checkpoint_metric="loss" if name.startswith("tagger") else "accuracy",
        minimize_checkpoint_metric=name.startswith("tagger"), keep_best_k=2, max_grad_norm=1.0,
        do_metrics_in_training=name == "train-metrics",
    )
    # "early": no evaluation improves accuracy by 0.5, so the second one stops the run
    early = EarlyStoppingCallback(metric="accuracy", mode="max", patience=1, min_delta=0.5)
    callbacks = [early] if name == "early" else []
    trainer = Trainer(component, config, train_data, dev, metrics, callback=callbacks)
    history = trainer.train(resume_from_checkpoint="last" if args.resume else None)
    model = trainer.component.net if name == "hidden" else trainer.component.model
    torch.save(model.state_dict(), out / f"final_state_rank{RANK}.pt")
    report = {"history": history, "stop_reason": trainer.state.stop_reason, "global_step": trainer.state.global_step,
              "world_size": trainer.distributed.world_size, "global_batch_size": trainer.global_batch_size,
              "group_left": not torch.distributed.is_initialized()}
    (out / f"rank{RANK}.json").write_text(json.dumps(report))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--components", default="toy", help="comma-separated; each into OUT/<name>, in turn")
    parser.add_argument("--bert")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--accumulation", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--items", type=int, default=45)
    parser.add_argument("--eval-items", type=int, default=21)
    parser.add_argument("--group-by-length", action="store_true")
    parser.add_argument("--eval-steps", type=int)
    parser.add_argument("--what", choices=["kill", "sigterm", "raise"], help="what the sabotaged component does")
    parser.add_argument("--at", type=int, default=0, help="the training forward (from 1) where it happens")
    parser.add_argument("--on-rank", type=int, default=1)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--rank1-lr", type=float)
    args = parser.parse_args(argv)
    for name in args.components.split(","):
        (args.out / name).mkdir(parents=True, exist_ok=True)
        train(name, args, args.out / name)


if __name__ == "__main__":
    main()
