"""Steps/s of our Trainer vs a minimal hand-written PyTorch loop, same component and data.

Both train the same tiny BERT token classifier (random weights, random token ids, no
download) for the same number of optimizer steps; they run alternately in one process so
machine noise hits both alike. The Trainer runs with progress bars and history on (its
default printer, history.jsonl, one checkpoint at the end). Target: ratio >= 0.97.

    python scripts/bench_trainer_overhead.py [--steps 150] [--rounds 3]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medkit_exp.training import BatchData, DefaultPrinterCallback, Trainer, TrainerConfig  # noqa: E402


class TinyTokenClassifier:
    """A TrainableComponent around a random 2-layer BertForTokenClassification."""

    def __init__(self, seed: int, hidden: int = 128, vocab: int = 2000, labels: int = 5):
        from transformers import BertConfig, BertForTokenClassification

        torch.manual_seed(seed)
        config = BertConfig(
            vocab_size=vocab, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=4 * hidden, num_labels=labels,
        )
        self.model = BertForTokenClassification(config)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def configure_optimizer(self, lr: float) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.model.parameters(), lr=lr)

    def preprocess(self, item):
        return item

    def collate(self, batch):
        return BatchData(
            input_ids=torch.stack([b["input_ids"] for b in batch]),
            labels=torch.stack([b["labels"] for b in batch]),
        )

    def forward(self, input_batch, return_loss, eval_mode):
        self.model.train(not eval_mode)
        output = self.model(input_ids=input_batch["input_ids"], labels=input_batch["labels"])
        return BatchData(logits=output.logits), output.loss

    def save(self, path):
        torch.save(self.model.state_dict(), Path(path) / "model.pt")

    def load(self, path):
        self.model.load_state_dict(torch.load(Path(path) / "model.pt"))


def make_data(nb_items: int, length: int = 64) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    return [
        {"input_ids": torch.randint(0, 2000, (length,), generator=generator), "labels": torch.randint(0, 5, (length,), generator=generator)}
        for _ in range(nb_items)
    ]


def bare_loop(data: list[dict], batch_size: int, steps: int) -> float:
    component = TinyTokenClassifier(seed=0)
    optimizer = component.configure_optimizer(1e-4)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True, collate_fn=component.collate)
    start, done = time.perf_counter(), 0
    while done < steps:
        for batch in loader:
            _, loss = component.forward(batch, return_loss=True, eval_mode=False)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            done += 1
            if done == steps:
                break
    return steps / (time.perf_counter() - start)


def our_trainer(data: list[dict], batch_size: int, steps: int) -> float:
    with tempfile.TemporaryDirectory() as output_dir:
        config = TrainerConfig(
            output_dir=output_dir, learning_rate=1e-4, batch_size=batch_size, nb_training_epochs=1000,
            max_steps=steps, eval_strategy="no", logging_steps=10, seed=0,
        )
        trainer = Trainer(
            TinyTokenClassifier(seed=0), config, data, None, callback=[DefaultPrinterCallback(progress_bar=True)]
        )
        start = time.perf_counter()
        trainer.train()
        elapsed = time.perf_counter() - start
        assert (Path(output_dir) / "history.jsonl").stat().st_size > 0
    return steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(2)
    data = make_data(args.batch_size * 40)
    bare_loop(data, args.batch_size, 10)  # warm-up: allocator, kernels
    ratios, ours_all, bare_all = [], [], []
    for round_index in range(args.rounds):
        bare = bare_loop(data, args.batch_size, args.steps)
        ours = our_trainer(data, args.batch_size, args.steps)
        ratios.append(ours / bare)
        ours_all.append(ours)
        bare_all.append(bare)
        print(f"round {round_index + 1}: bare loop {bare:7.2f} steps/s | Trainer {ours:7.2f} steps/s | ratio {ours / bare:.3f}")
    print(
        f"median: bare loop {statistics.median(bare_all):.2f} steps/s, Trainer {statistics.median(ours_all):.2f} steps/s, "
        f"ratio {statistics.median(ratios):.3f} (target >= 0.97)"
    )


if __name__ == "__main__":
    main()
