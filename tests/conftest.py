"""Shared fixtures: a tiny random BERT with a real WordPiece tokenizer (no downloads)."""

from __future__ import annotations

import os
import string
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA_DIR = Path(os.environ.get("MEDKIT_EXP_DATA_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "data"))

WORDS = """the a of and in with for on to at is was were patient patients fever pain chest cough
history diabetes hypertension treated treatment test blood pressure insulin metformin scan x-ray
mg daily no denies reports shows normal acute chronic severe mild le la les de des du une un et
avec pour sous est patient patiente fièvre douleur toux traitement examen scanner diabète""".split()


def build_tiny_bert(folder: Path, max_positions: int = 128) -> Path:
    """A 2-layer, 32-wide random BERT and a WordPiece tokenizer covering any Latin-1 text."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    chars = sorted(set(string.ascii_lowercase + string.digits + string.punctuation + "àâäçéèêëîïôöùûüÿœæ°±µ"))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars), *WORDS]
    vocab = list(dict.fromkeys(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab=str(folder / "vocab.txt"), do_lower_case=True, model_max_length=max_positions)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=max_positions,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))
