"""Converters to/from medkit's TextDocument and medkit-json (skipped without medkit-lib)."""

from __future__ import annotations

import sys

import pytest

from medkit_exp.errors import DataError
from medkit_exp.ner.documents import Entity, Relation, TextDocument

DOC = TextDocument(
    "Sécrétion d' oestrone , d' oestradiol . Fièvre.",
    [
        Entity("PHYS", [(0, 9), (24, 37)], id="T1", attrs={"note": "C3271400"}),
        Entity(
            "DISO",
            [(40, 46)],
            id="T2",
            attrs={"norm": ["MeSH:D005334", "C0015967"], "norm_text": {"MeSH:D005334": "Fever"}, "Negation": True},
        ),
        Entity("DISO", [(40, 46)], id="T3", score=0.75),
    ],
    doc_id="doc-1",
    metadata={"source": "test"},
    relations=[Relation("R1", "Same", [("Arg1", "T2"), ("Arg2", "T3")])],
)


def test_clear_import_error_without_medkit(monkeypatch):
    # A None entry in sys.modules makes `import medkit...` fail as if medkit were not installed.
    for name in [m for m in sys.modules if m == "medkit" or m.startswith("medkit.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "medkit", None)
    from medkit_exp.ner.formats import medkit as medkit_format

    with pytest.raises(ImportError, match=r"pip install 'medkit-lib>=0.17'"):
        medkit_format.to_medkit(DOC)
    import medkit_exp.ner.formats as formats  # importing the formats never needs medkit

    assert callable(formats.read_brat)


def test_to_medkit_uses_medkit_conventions():
    pytest.importorskip("medkit", reason="medkit-lib is not installed (pip install 'medkit_exp[medkit]')")
    from medkit.core.text import EntityNormAttribute, ModifiedSpan, Span

    from medkit_exp.ner.formats import to_medkit

    medkit_doc = to_medkit(DOC)
    assert medkit_doc.uid == "doc-1" and medkit_doc.text == DOC.text
    first, second, third = medkit_doc.anns.get_entities()
    assert first.text == "Sécrétion d' oestradiol"
    assert first.spans == [Span(0, 9), ModifiedSpan(length=1, replaced_spans=[]), Span(24, 37)]
    norms = [a for a in second.attrs if isinstance(a, EntityNormAttribute)]
    assert [(a.kb_name, a.kb_id, a.term) for a in norms] == [("MeSH", "D005334", "Fever"), (None, "C0015967", None)]
    assert [a.value for a in third.attrs.get(label="score")] == [0.75]
    (relation,) = medkit_doc.anns.get_relations()
    assert (relation.source_id, relation.target_id) == (second.uid, third.uid)


def test_round_trip_through_medkit_is_identity():
    pytest.importorskip("medkit", reason="medkit-lib is not installed (pip install 'medkit_exp[medkit]')")
    from medkit_exp.ner.formats import from_medkit, to_medkit

    assert from_medkit(to_medkit(DOC)) == DOC


def test_from_a_document_read_by_medkits_own_brat_reader(tmp_path):
    pytest.importorskip("medkit", reason="medkit-lib is not installed (pip install 'medkit_exp[medkit]')")
    from medkit.io.brat import BratInputConverter

    from medkit_exp.ner.formats import from_medkit, read_brat

    (tmp_path / "d.txt").write_text("Fracture du fémur droit.\n", encoding="utf-8")
    (tmp_path / "d.ann").write_text("T1\tDISO 0 8;12 17\tFracture fémur\nT2\tANAT 12 17\tfémur\n", encoding="utf-8")
    (medkit_doc,) = BratInputConverter().load(tmp_path)
    ours = from_medkit(medkit_doc)
    expected = read_brat(tmp_path)[0]
    assert [(e.id, e.label, e.spans, e.text) for e in ours.entities] == [
        (e.id, e.label, e.spans, e.text) for e in expected.entities
    ]


def test_medkit_json_write_and_read(tmp_path):
    pytest.importorskip("medkit", reason="medkit-lib is not installed (pip install 'medkit_exp[medkit]')")
    from medkit.io.medkit_json import load_text_documents

    from medkit_exp.ner.formats import read_documents, read_medkit_json, write_medkit_json

    path = write_medkit_json([DOC], tmp_path / "docs.jsonl")
    assert [doc.text for doc in load_text_documents(path)] == [DOC.text]  # medkit reads it
    corpus = read_medkit_json(path)
    assert corpus == [DOC] and corpus.report.entities == 3
    assert read_documents(path, format="medkit_json") == [DOC]
    (tmp_path / "bad.jsonl").write_text('{"version": "0.0", "content_type": "text_document_list"}\n')
    with pytest.raises(DataError, match="bad.jsonl: not a medkit-json"):
        read_medkit_json(tmp_path / "bad.jsonl")
    with pytest.raises(DataError, match="no such medkit-json file"):
        read_medkit_json(tmp_path / "missing.jsonl")
