"""A medkit-style toy text classifier, written only against medkit's TrainableComponent protocol."""

from __future__ import annotations

import random
import zlib
from pathlib import Path

import torch

from medkit_exp.training import BatchData

POSITIVE = ["fever", "cough", "pain", "rash", "nausea"]
NEUTRAL = ["patient", "reports", "today", "mild", "since", "morning", "the", "denies", "history", "of"]


def make_texts(nb_items: int, seed: int = 0) -> list[tuple[str, int]]:
    """Sentences labelled 1 when they mention a symptom word."""
    rng = random.Random(seed)
    items = []
    for _ in range(nb_items):
        words = rng.choices(NEUTRAL, k=rng.randint(3, 8))
        label = rng.random() < 0.5
        if label:
            words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE))
        items.append((" ".join(words), int(label)))
    return items


class ToyTextClassifier:
    """Bag of hashed words -> embedding -> dropout -> LayerNorm -> linear."""

    def __init__(self, vocab_size: int = 64, dim: int = 16, dropout: float = 0.1, seed: int = 0):
        torch.manual_seed(seed)
        self.vocab_size = vocab_size
        self.model = torch.nn.ModuleDict(
            {
                "embed": torch.nn.EmbeddingBag(vocab_size, dim, mode="mean"),
                "drop": torch.nn.Dropout(dropout),
                "norm": torch.nn.LayerNorm(dim),
                "out": torch.nn.Linear(dim, 2),
            }
        )
        self.loss = torch.nn.CrossEntropyLoss()

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def configure_optimizer(self, lr: float) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.model.parameters(), lr=lr)

    def preprocess(self, data_item):
        text, label = data_item
        ids = [zlib.crc32(word.encode()) % self.vocab_size for word in text.split()]
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(label)}

    def collate(self, batch):
        return BatchData(
            input_ids=torch.cat([item["input_ids"] for item in batch]),
            offsets=torch.tensor([0] + [len(item["input_ids"]) for item in batch[:-1]]).cumsum(0),
            labels=torch.stack([item["labels"] for item in batch]),
        )

    def forward(self, input_batch, return_loss, eval_mode):
        self.model.train(not eval_mode)
        hidden = self.model["embed"](input_batch["input_ids"], input_batch["offsets"])
        logits = self.model["out"](self.model["norm"](self.model["drop"](hidden)))
        loss = self.loss(logits, input_batch["labels"]) if return_loss else None
        return BatchData(logits=logits), loss

    def save(self, path):
        torch.save(self.model.state_dict(), Path(path) / "toy_model.pt")

    def load(self, path):
        self.model.load_state_dict(torch.load(Path(path) / "toy_model.pt"))


class HiddenModelClassifier(ToyTextClassifier):
    """The toy classifier without a ``model`` attribute (its module is kept private)."""

    def __init__(self):
        super().__init__()
        self.net = self.__dict__.pop("model")

    def configure_optimizer(self, lr):
        return torch.optim.AdamW(self.net.parameters(), lr=lr)


class AccuracyComputer:
    """A MetricsComputer: accuracy of the argmax."""

    metric_names = ["accuracy"]

    def prepare_batch(self, model_output, input_batch):
        return {
            "predictions": model_output["logits"].argmax(-1).tolist(),
            "references": input_batch["labels"].tolist(),
        }

    def compute(self, all_data):
        pairs = list(zip(all_data["predictions"], all_data["references"]))
        return {"accuracy": sum(p == r for p, r in pairs) / max(len(pairs), 1)}
