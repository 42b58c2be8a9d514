"""The document model and the reading helpers shared by the formats."""

from __future__ import annotations

import logging

import pytest

from medkit_exp.errors import ConfigError, DataError
from medkit_exp.ner.documents import (
    Corpus,
    Entity,
    ReadReport,
    Relation,
    TextDocument,
    check_choice,
    covered_text,
    fail,
    read_text_file,
)


def test_entity_spans_are_sorted_int_tuples():
    entity = Entity("DISO", [[305, 315], (285, 293)], attrs={"cui": "C0011849"}, id="T14")
    assert entity.spans == [(285, 293), (305, 315)]
    assert (entity.start, entity.end, entity.is_discontinuous) == (285, 315, True)
    assert entity.attrs == {"cui": "C0011849"} and entity.id == "T14" and entity.score is None
    assert not Entity("X", [(0, 1)]).is_discontinuous


@pytest.mark.parametrize("spans", [[], [(3, 3)], [(5, 2)], [(-1, 2)]])
def test_entity_rejects_bad_spans(spans):
    with pytest.raises(ValueError):
        Entity("X", spans)


def test_document_fills_entity_text_with_fragments_joined_by_a_space():
    given = Entity("PHYS", [(0, 9), (23, 36)])
    doc = TextDocument("Sécrétion d' oestrone, d' oestradiol", [given], doc_id="d1", metadata={"k": 1})
    assert doc.entities[0].text == "Sécrétion d' oestradiol"
    assert given.text is None  # the caller's entity is not changed
    assert covered_text(doc.text, [(0, 9)]) == "Sécrétion"


def test_stored_entity_text_is_kept():
    doc = TextDocument("abc def", [Entity("X", [(0, 3)], text="stored")])
    assert doc.entities[0].text == "stored"


def test_with_entities_copies_the_document():
    doc = TextDocument("abc def", [Entity("X", [(0, 3)])], "d", {"path": "p"}, [Relation("R1", "r", [("A", "T1")])])
    new = doc.with_entities([Entity("Y", [(4, 7)])])
    assert [e.text for e in new.entities] == ["def"] and new.doc_id == "d" and new.relations == doc.relations
    new.metadata["path"] = "q"
    assert doc.metadata["path"] == "p" and doc.entities[0].label == "X"


def test_describe_names_id_label_spans_and_text():
    entity = TextDocument("fièvre", [Entity("DISO", [(0, 6)], id="T3")]).entities[0]
    assert entity.describe() == "T3 DISO [0-6] 'fièvre'"


def test_read_report_records_skips_and_logs(caplog):
    report = ReadReport(source="corpus")
    with caplog.at_level(logging.INFO, logger="medkit_exp.ner"):
        report.skip("bad offsets", "a.ann", 3)
        report.ignored["relation"] += 2
        report.log()
    assert str(report.skipped[0]) == "a.ann:3: bad offsets"
    assert "skipped a.ann:3: bad offsets" in caplog.text
    assert "ignored relation=2" in caplog.text and "skipped 1 bad items" in caplog.text


def test_fail_raises_or_skips():
    report = ReadReport()
    with pytest.raises(DataError, match=r"^f.ann:7: boom$"):
        fail(report, "raise", "boom", "f.ann", 7)
    fail(report, "skip", "boom", "f.ann", 7)
    assert [(s.path, s.line, s.reason) for s in report.skipped] == [("f.ann", 7, "boom")]


def test_check_choice_raises_config_error():
    check_choice("errors", "skip", ("raise", "skip"))
    with pytest.raises(ConfigError, match="errors"):
        check_choice("errors", "ignore", ("raise", "skip"))


def test_corpus_is_a_list_with_a_report():
    corpus = Corpus([TextDocument("a")], ReadReport(source="x"))
    assert isinstance(corpus, list) and corpus.report.source == "x" and len(corpus) == 1
    assert Corpus().report.documents == 0


def test_read_text_file_keeps_crlf_and_names_the_line_of_bad_bytes(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes("é\r\nb\r\n".encode())
    assert read_text_file(path) == "é\r\nb\r\n"
    path.write_bytes(b"ok\nok\nbad \xe9 here\n")
    with pytest.raises(DataError, match=r"a\.txt:3: not valid utf-8"):
        read_text_file(path)
    assert read_text_file(path, "latin-1").endswith("bad é here\n")
    with pytest.raises(DataError, match="missing.txt: no such file"):
        read_text_file(tmp_path / "missing.txt")


def test_describe_stays_one_short_line_whatever_the_entity_holds():
    entity = Entity("L" * 100_000, [(i * 2, i * 2 + 1) for i in range(50_000)], text="x" * 100_000, id="T1")
    line = entity.describe()
    assert len(line) < 400 and "(100000 characters)" in line and "(50000 fragments)" in line
