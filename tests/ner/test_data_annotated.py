"""load_corpus keeps the entities as annotated beside the flattened ones the tagger learns."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from medkit_exp.errors import ConfigError
from medkit_exp.ner.data import NERDataConfig, load_corpus
from tests.ner.conftest import write_pair

TEXT = "Cancers colorectaux et métastases hépatiques. Sécrétion d' oestrone , d' oestradiol accrue.\nPas de fièvre."
SECOND = TEXT.index("Sécrétion")
LABELS = ["ANAT", "CHEM", "DISO", "PHYS"]


def span(piece: str, occurrence: int = 0) -> tuple[int, int]:
    start = -1
    for _ in range(occurrence + 1):
        start = TEXT.index(piece, start + 1)
    return start, start + len(piece)


# id: (label, fragments)
ANNOTATED = {
    "T1": ("DISO", [span("Cancers colorectaux")]),
    "T2": ("DISO", [span("Cancers")]),  # same-label nesting
    "T3": ("DISO", [span("métastases hépatiques")]),
    "T4": ("ANAT", [span("hépatiques")]),  # cross-label nesting
    "T5": ("PHYS", [span("Sécrétion"), span("oestradiol")]),  # discontinuous
    "T6": ("CHEM", [span("oestradiol")]),  # inside T5 once filled
    "T7": ("DISO", [span("fièvre")]),
}


def write_corpus(root: Path) -> None:
    lines = []
    for ident, (label, fragments) in ANNOTATED.items():
        where = ";".join(f"{start} {end}" for start, end in fragments)
        lines.append(f"{ident}\t{label} {where}\t{' '.join(TEXT[s:e] for s, e in fragments)}")
    for split in ("train", "dev"):
        write_pair(root / split, "doc1", TEXT, "\n".join(lines) + "\n")


def config(root: Path, **overrides) -> NERDataConfig:
    options = dict(name="synthetic", format="brat", path=str(root), train="train", dev="dev", labels=LABELS)
    return NERDataConfig(**{**options, **overrides})


def in_parent(doc, entities) -> dict[str, tuple[str, list[tuple[int, int]]]]:
    offset = getattr(doc, "offset", 0)
    return {e.id: (e.label, [(s + offset, t + offset) for s, t in e.spans]) for e in entities}


def test_sentences_flattened_as_before_with_the_annotated_entities_intact(tmp_path, caplog):
    write_corpus(tmp_path)
    with caplog.at_level(logging.INFO, logger="medkit_exp.ner"):
        splits = load_corpus(config(tmp_path))
    docs = splits["train"]
    assert [doc.text for doc in docs] == [
        "Cancers colorectaux et métastases hépatiques.", "Sécrétion d' oestrone , d' oestradiol accrue.", "Pas de fièvre."
    ]
    assert [doc.offset for doc in docs] == [0, SECOND, TEXT.index("Pas")]
    flattened = {ident: entity for doc in docs for ident, entity in in_parent(doc, doc.entities).items()}
    filled = ("PHYS", [(span("Sécrétion")[0], span("oestradiol")[1])])
    assert flattened == {"T1": ANNOTATED["T1"], "T3": ANNOTATED["T3"], "T5": filled, "T7": ANNOTATED["T7"]}
    annotated = {ident: entity for doc in docs for ident, entity in in_parent(doc, doc.annotated).items()}
    assert annotated == ANNOTATED
    for doc in docs:  # covered texts are the sub-document's own
        assert all(e.text == doc.covered_text(e) for e in doc.annotated)
    # logged once per split, counting what was flattened
    reports = [r.getMessage() for r in caplog.records if r.getMessage().startswith("policies on")]
    assert len(reports) == 2
    assert "7 -> 4 entities" in reports[0] and "discontinuous filled 1" in reports[0]
    assert "overlapping dropped 3" in reports[0] and "7 entities kept as annotated" in reports[0]
    assert "synthetic/train: 3 documents, 4 entities (7 as annotated)" in caplog.text


def test_whole_documents_and_keep_policies(tmp_path):
    write_corpus(tmp_path)
    (doc,) = load_corpus(config(tmp_path, split="none", nested="keep", discontinuous="keep"), only=["dev"])["dev"]
    assert in_parent(doc, doc.entities) == ANNOTATED == in_parent(doc, doc.annotated)
    (doc,) = load_corpus(config(tmp_path, split="none", discontinuous="drop"), only=["dev"])["dev"]
    assert sorted(e.id for e in doc.entities) == ["T1", "T3", "T6", "T7"] and len(doc.annotated) == 7


def test_label_policies_apply_to_both(tmp_path):
    write_corpus(tmp_path)
    docs = load_corpus(config(tmp_path, labels=["ANAT", "CHEM", "Disorder", "PHYS"], label_map={"DISO": "Disorder"}),
                       only=["train"])["train"]
    assert {e.label for doc in docs for e in doc.annotated} == {"ANAT", "CHEM", "Disorder", "PHYS"}
    assert sum(len(doc.annotated) for doc in docs) == 7


def test_keep_all_is_an_unknown_choice(tmp_path):
    with pytest.raises(ConfigError, match=r"'data\.nested': must be one of .*keep; got 'keep_all'"):
        config(tmp_path, nested="keep_all")
