"""A medkit-style toy text classifier, written only against medkit's TrainableComponent protocol."""

from __future__ import annotations

import random
import zlib
from pathlib import Path

import torch

from medkit_exp.training import BatchData, Trainer, TrainerConfig

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


class TinyBertTagger:
    """A token classifier on a random small BERT (no download, no tokenizer), for the benchmarks."""

    def __init__(
        self, vocab_size: int = 1000, nb_labels: int = 9, seed: int = 0, hidden_size: int = 64,
        intermediate_size: int | None = None,
    ):
        from transformers import BertConfig, BertForTokenClassification

        torch.manual_seed(seed)
        config = BertConfig(
            vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=intermediate_size or 2 * hidden_size, max_position_embeddings=128, num_labels=nb_labels,
        )
        self.model = BertForTokenClassification(config)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def configure_optimizer(self, lr: float) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.model.parameters(), lr=lr)

    def preprocess(self, item):
        ids, labels = item
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)}

    def collate(self, batch):
        length = max(len(item["input_ids"]) for item in batch)
        ids = torch.zeros(len(batch), length, dtype=torch.long)
        labels = torch.full((len(batch), length), -100, dtype=torch.long)
        for row, item in enumerate(batch):
            ids[row, : len(item["input_ids"])] = item["input_ids"]
            labels[row, : len(item["labels"])] = item["labels"]
        return BatchData(input_ids=ids, attention_mask=(labels != -100).long(), labels=labels)

    def forward(self, input_batch, return_loss, eval_mode):
        self.model.train(not eval_mode)
        output = self.model(
            input_ids=input_batch["input_ids"], attention_mask=input_batch["attention_mask"],
            labels=input_batch["labels"] if return_loss else None,
        )
        return BatchData(logits=output.logits), output.loss

    def save(self, path):
        torch.save(self.model.state_dict(), Path(path) / "model.pt")

    def load(self, path):
        self.model.load_state_dict(torch.load(Path(path) / "model.pt"))


def token_data(
    nb_items: int, seed: int, vocab_size: int = 1000, nb_labels: int = 9, lengths: tuple[int, int] = (16, 48)
) -> list[tuple[list[int], list[int]]]:
    """Random token ids with labels derived from them (learnable), lengths drawn in ``lengths``."""
    rng = random.Random(seed)
    items = []
    for _ in range(nb_items):
        ids = [rng.randrange(5, vocab_size) for _ in range(rng.randint(*lengths))]
        items.append((ids, [i % nb_labels if i % 3 == 0 else 0 for i in ids]))
    return items


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


def toy_trainer_builder(output_dir: Path, **defaults):
    """A function building Trainers over the toy classifier (the ``make_trainer`` fixtures).

    ``defaults`` are TrainerConfig settings of the calling test folder; the builder's keyword
    arguments override them.
    """

    def build(component=None, train=None, eval_data="default", metrics=True, callback=(), scheduler=None, **config):
        settings = {"output_dir": str(output_dir), "learning_rate": 1e-2, "batch_size": 8, "seed": 3, **defaults}
        settings.update(config)
        return Trainer(
            component or ToyTextClassifier(dropout=0.0),
            TrainerConfig(**settings),
            train if train is not None else make_texts(64, 1),
            make_texts(24, 2) if eval_data == "default" else eval_data,
            (AccuracyComputer() if metrics is True else metrics) or None,
            lr_scheduler_builder=scheduler,
            callback=list(callback),
        )

    return build
