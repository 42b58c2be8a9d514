"""A tiny random encoder with the packaged tokenizer, for smoke tests (``debug=fast``)."""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

TINY_MODEL_NAME = "tiny-random"


def tiny_encoder(folder: str | Path | None = None) -> str:
    """A 2-layer, 32-wide random BERT using the packaged MiniLM tokenizer, built once and cached."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from medkit_exp.ner.tagger import default_encoder

    folder = Path(folder) if folder else Path.home() / ".cache" / "medkit_exp" / TINY_MODEL_NAME
    if (folder / "config.json").is_file():
        return str(folder)
    tokenizer = AutoTokenizer.from_pretrained(default_encoder())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    generator_state = torch.get_rng_state()
    torch.manual_seed(0)
    BertModel(config).save_pretrained(tmp)
    torch.set_rng_state(generator_state)
    tokenizer.save_pretrained(tmp)
    tmp.replace(folder) if not folder.exists() else None
    logger.info("Built the tiny random encoder in %s", folder)
    return str(folder)
