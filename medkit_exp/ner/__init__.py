"""Clinical named-entity recognition: documents, corpus formats, tagging, the HF tagger, metrics, predict.

The document model and the readers import nothing heavy; the tagger, metrics and ``predict``
(torch, transformers) are imported on first use.

>>> from medkit_exp.ner import read_brat, HFEntityMatcherTrainable, EntityMetricsComputer, predict  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from medkit_exp.ner.documents import Corpus, Entity, ReadReport, TextDocument
from medkit_exp.ner.formats import read_brat, read_conll, read_documents, read_jsonl, read_splits, write_brat, write_jsonl

_LAZY = {
    "HFEntityMatcherTrainable": "medkit_exp.ner.tagger",
    "make_trainable": "medkit_exp.ner.tagger",
    "NestedEntityTagger": "medkit_exp.ner.nested_tagger",
    "NestedMetricsComputer": "medkit_exp.ner.nested_metrics",
    "default_encoder": "medkit_exp.ner.tagger",
    "EntityMetricsComputer": "medkit_exp.ner.metrics",
    "evaluate_documents": "medkit_exp.ner.metrics",
    "predict": "medkit_exp.ner.prediction",
}

__all__ = [
    "Corpus",
    "Entity",
    "ReadReport",
    "TextDocument",
    "read_brat",
    "read_conll",
    "read_documents",
    "read_jsonl",
    "read_splits",
    "write_brat",
    "write_jsonl",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def demo_corpus_dir() -> str:
    """The folder of the embedded demo corpus (BRAT, ``train/`` and ``dev/``)."""
    from importlib.resources import files

    return str(files("medkit_exp.ner") / "demo")
