"""Sanity checks for the embedded BRAT demo corpus (medkit_exp/ner/demo).

Deliberately independent of medkit_exp's own BRAT reader: the .ann files are
parsed here with a few lines of code.
"""

from __future__ import annotations

import importlib
import importlib.resources
from pathlib import Path

import pytest

DEMO_DIR = Path(__file__).resolve().parents[2] / "medkit_exp" / "ner" / "demo"
LABELS = {"problem", "treatment", "test"}
SPLITS = ("train", "dev")


def _read_split(split: str) -> dict[str, tuple[str, list[tuple[str, str, int, int, str]]]]:
    """{doc_name: (text, [(tid, label, start, end, mention), ...])}"""
    docs = {}
    for txt in sorted((DEMO_DIR / split).glob("*.txt")):
        text = txt.read_text(encoding="utf-8")
        ann = txt.with_suffix(".ann")
        assert ann.exists(), f"missing {ann.name}"
        entities = []
        for line in ann.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            tid, info, mention = line.split("\t")
            assert tid.startswith("T"), f"{ann.name}: only T lines expected, got {line!r}"
            label, start, end = info.split(" ")  # contiguous spans only (no ';')
            entities.append((tid, label, int(start), int(end), mention))
        docs[txt.stem] = (text, entities)
    return docs


def _sentences(split: str) -> list[str]:
    return [s for text, _ in _read_split(split).values() for s in text.splitlines() if s.strip()]


@pytest.fixture(scope="module")
def corpus():
    return {split: _read_split(split) for split in SPLITS}


def test_files_exist_and_paired():
    assert (DEMO_DIR / "annotation.conf").is_file()
    assert (DEMO_DIR / "README.md").is_file()
    for split in SPLITS:
        txts = {p.stem for p in (DEMO_DIR / split).glob("*.txt")}
        anns = {p.stem for p in (DEMO_DIR / split).glob("*.ann")}
        assert txts and txts == anns


def test_annotation_conf_declares_labels():
    conf = (DEMO_DIR / "annotation.conf").read_text(encoding="utf-8")
    section = conf.split("[entities]", 1)[1].split("[", 1)[0]
    assert {ln.strip() for ln in section.splitlines() if ln.strip()} == LABELS


@pytest.mark.parametrize("split", SPLITS)
def test_spans_match_text_labels_and_no_overlap(corpus, split):
    n_entities = 0
    for name, (text, entities) in corpus[split].items():
        assert len({tid for tid, *_ in entities}) == len(entities), f"{name}: duplicate ids"
        prev_end = -1
        for tid, label, start, end, mention in sorted(entities, key=lambda e: (e[2], e[3])):
            assert label in LABELS, f"{name}/{tid}: bad label {label}"
            assert 0 <= start < end <= len(text)
            assert text[start:end] == mention, f"{name}/{tid}: {text[start:end]!r} != {mention!r}"
            assert mention == mention.strip() and "\n" not in mention
            assert start >= prev_end, f"{name}/{tid}: overlapping span"
            prev_end = end
            n_entities += 1
        n_sent = len(text.splitlines())
        assert 3 <= n_sent <= 8, f"{name}: {n_sent} sentences"
    assert n_entities > 0
    labels_seen = {e[1] for _, ents in corpus[split].values() for e in ents}
    assert labels_seen == LABELS


def test_sentence_counts():
    assert len(_sentences("train")) >= 230
    assert len(_sentences("dev")) >= 75


@pytest.mark.parametrize("split", SPLITS)
def test_both_languages_present(split):
    text = "\n".join(_sentences(split))
    assert any(w in text for w in (" une ", " est ", " avec ", "é")), "no French text"
    assert any(w in text for w in (" the ", " was ", " with ")), "no English text"
    names = {p.stem for p in (DEMO_DIR / split).glob("*.txt")}
    assert any(n.startswith("en_") for n in names) and any(n.startswith("fr_") for n in names)


def test_dev_does_not_copy_train():
    train = set(_sentences("train"))
    copied = [s for s in _sentences("dev") if s in train]
    assert not copied, copied


def _ner_package_importable() -> bool:
    try:
        importlib.import_module("medkit_exp.ner")
    except Exception:
        return False
    return True


@pytest.mark.skipif(not _ner_package_importable(), reason="medkit_exp.ner is not importable")
def test_reachable_as_package_data():
    demo = importlib.resources.files("medkit_exp.ner") / "demo"
    assert (demo / "annotation.conf").is_file()
    for split in SPLITS:
        names = sorted(p.name for p in (demo / split).iterdir())
        assert any(n.endswith(".txt") for n in names) and any(n.endswith(".ann") for n in names)
        first_txt = next(n for n in names if n.endswith(".txt"))
        assert (demo / split / first_txt).read_text(encoding="utf-8").strip()
