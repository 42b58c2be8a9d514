"""BRAT standoff reader/writer on small awkward files, and the real QUAERO corpus (slow)."""

from __future__ import annotations

import logging

import pytest

from medkit_exp.errors import ConfigError, DataError
from medkit_exp.ner.documents import Entity, Relation, TextDocument
from medkit_exp.ner.formats import read_brat, write_brat
from tests.ner.conftest import require_real_data, write_pair

TEXT = "Traitement des métastases hépatiques.\r\nSécrétion d' oestrone , d' oestradiol .\r\nPas de fièvre.\r\n"


def off(sub: str) -> str:
    start = TEXT.index(sub)
    return f"{start} {start + len(sub)}"


ANN = "\n".join(
    [
        f"T1\tPROC {off('Traitement')}\tTraitement",
        f"T2\tDISO {off('métastases hépatiques')}\tmétastases hépatiques",
        f"T3\tANAT {off('hépatiques')}\thépatiques",
        f"T4\tPHYS {off('Sécrétion')};{off('d' + chr(39) + ' oestradiol')}\tSécrétion d' oestradiol",
        f"T5\tDISO {off('fièvre')}\tfièvre",
        "#1\tAnnotatorNotes T1\tC0087111",
        "#2\tAnnotatorNotes T1\tsecond note",
        "N1\tReference T5 MeSH:D005334\tFever",
        "N2\tReference T5 UMLS:C0015967",
        "A1\tNegation T5",
        "A2\tCertainty T2 High",
        "R1\tLocated Arg1:T2 Arg2:T3",
        "E1\tTreat:T1 Theme:T2",
        "A3\tSpeculation E1",
        "#3\tAnnotatorNotes R1\trelation note",
        "*\tEquiv T2 T3",
        "",
    ]
)


@pytest.fixture
def corpus_dir(tmp_path):
    root = tmp_path / "corpus"
    write_pair(root / "sub", "doc1", TEXT, ANN)
    write_pair(root / "sub", "noann", "Texte sans annotation.\n", None)
    (root / "sub" / "doc1.ann~").write_bytes(b"garbage \xff that must never be read\n")
    (root / "annotation.conf").write_text("[entities]\nDISO\n")
    return root


def test_reads_entities_notes_norms_attributes_and_relations(corpus_dir):
    corpus = read_brat(corpus_dir)
    assert [doc.doc_id for doc in corpus] == ["sub/doc1", "sub/noann"]
    doc = corpus[0]
    by_id = {e.id: e for e in doc.entities}
    assert [e.id for e in doc.entities] == ["T1", "T2", "T3", "T4", "T5"]
    for entity in doc.entities:
        assert entity.text == " ".join(doc.text[s:e] for s, e in entity.spans)
    assert by_id["T4"].is_discontinuous and by_id["T4"].text == "Sécrétion d' oestradiol"
    assert by_id["T1"].attrs == {"note": "C0087111\nsecond note"}
    assert by_id["T5"].attrs == {
        "norm": ["MeSH:D005334", "UMLS:C0015967"],
        "norm_text": {"MeSH:D005334": "Fever"},
        "Negation": True,
    }
    assert by_id["T2"].attrs == {"Certainty": "High"}
    assert doc.relations == [
        Relation("R1", "Located", [("Arg1", "T2"), ("Arg2", "T3")], "relation", {"note": "relation note"}),
        Relation("E1", "Treat", [("Treat", "T1"), ("Theme", "T2")], "event", {"Speculation": True}),
        Relation("*1", "Equiv", [("Arg", "T2"), ("Arg", "T3")], "equiv"),
    ]
    assert corpus.report.entities == 5 and corpus.report.documents == 2


def test_crlf_offsets_are_on_the_raw_text(corpus_dir):
    doc = read_brat(corpus_dir)[0]
    fever = next(e for e in doc.entities if e.id == "T5")
    # With newline translation every offset after a \r\n would be off by one per line.
    assert "\r\n" in doc.text and doc.text[fever.start : fever.end] == "fièvre"


def test_crlf_line_ends_in_the_ann_file(tmp_path):
    write_pair(
        tmp_path,
        "doc",
        "Fièvre\r\net toux.\r\n",
        "T1\tDISO 0 6\tFièvre\r\nT2\tDISO 11 15\ttoux\r\n#1\tAnnotatorNotes T2\tC1\r\n",
    )
    doc = read_brat(tmp_path)[0]
    assert [(e.text, e.attrs) for e in doc.entities] == [("Fièvre", {}), ("toux", {"note": "C1"})]


def test_backups_and_txt_without_ann_are_warnings_with_counts_and_strict_makes_them_errors(corpus_dir, caplog):
    with caplog.at_level(logging.INFO, logger="medkit_exp.ner"):
        corpus = read_brat(corpus_dir)
    assert corpus.report.ignored == {"BRAT configuration or hidden file (not read)": 1}  # annotation.conf
    assert corpus.report.warnings == {
        "editor backups not read": 1,  # doc1.ann~
        "texts without .ann (read as documents without entities)": 1,
    }
    assert corpus[1].entities == [] and corpus[1].text == "Texte sans annotation.\n"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("1 editor backups not read, e.g. " in w and "doc1.ann~" in w for w in warnings)
    assert any("1 texts without .ann" in w and "noann.txt" in w for w in warnings)
    with pytest.raises(DataError, match=r"doc1\.ann~: not allowed with errors='strict': editor backups"):
        read_brat(corpus_dir, errors="strict")
    (corpus_dir / "sub" / "doc1.ann~").unlink()
    with pytest.raises(DataError, match=r"noann\.txt: not allowed with errors='strict': texts without \.ann"):
        read_brat(corpus_dir, errors="strict")


def test_relations_and_attributes_can_be_ignored_explicitly_and_are_counted(corpus_dir):
    corpus = read_brat(corpus_dir, relations="ignore", attributes="ignore")
    doc = corpus[0]
    assert doc.relations == []
    assert all(set(e.attrs) <= {"note", "norm", "norm_text"} for e in doc.entities)
    assert corpus.report.ignored["relation"] == 1 and corpus.report.ignored["event"] == 1
    assert corpus.report.ignored["equiv"] == 1 and corpus.report.ignored["attribute"] == 3
    assert corpus.report.ignored["# on ignored relation"] == 1
    with pytest.raises(ConfigError, match="relations"):
        read_brat(corpus_dir, relations="drop")


def test_single_pair_can_be_read_from_its_txt_or_ann(corpus_dir):
    for name in ("doc1.txt", "doc1.ann"):
        corpus = read_brat(corpus_dir / "sub" / name)
        assert len(corpus) == 1 and corpus[0].doc_id == "doc1" and len(corpus[0].entities) == 5


def test_fragments_listed_out_of_order_check_the_text_in_file_order(tmp_path):
    # As in QUAERO train/MEDLINE/5903500.ann: BRAT writes the fragments' text in file order.
    text = "Les fractures méconnues des sinus de la face ."
    write_pair(tmp_path, "d", text, "T2\tDISO 24 44;4 13\tdes sinus de la face fractures\n")
    entity = read_brat(tmp_path)[0].entities[0]
    assert entity.spans == [(4, 13), (24, 44)] and entity.text == "fractures des sinus de la face"


FEVER = "Fièvre et toux.\n"


@pytest.mark.parametrize(
    ("ann", "line", "message"),
    [
        ("T1\tDISO 0 6\tFièvre\nT2 DISO 10 14 toux\n", 2, "malformed text-bound line"),
        ("T1\tDISO 0 6\n", 1, "malformed text-bound line"),
        ("T1\tDISO a 6\tFièvre\n", 1, "bad offsets 'a 6'"),
        ("T1\tDISO 6 6\t\n", 1, "start must be < end"),
        ("T1\tDISO 10 99\ttoux\n", 1, "beyond the text (16 characters)"),
        ("T1\tDISO 0 6\tfever\n", 1, "span text 'fever' does not match the .txt 'Fièvre'"),
        ("T1\tDISO 0 6\tFièvre\n\nX1\tfoo T1\n", 3, "unknown line type 'X'"),
        ("T1\tDISO 0 6\tFièvre\nT1\tDISO 10 14\ttoux\n", 2, "duplicate annotation id 'T1'"),
        ("T1\tDISO 0 6\tFièvre\n#1\tAnnotatorNotes T9\tnote\n", 2, "refers to an unknown annotation 'T9'"),
        ("T1\tDISO 0 6\tFièvre\nR1\tRel Arg1:T1 Arg2:T9\n", 2, "refers to an unknown annotation 'T9'"),
        ("T1\tDISO 0 6\tFièvre\nR1\tRel Arg1:T1\n", 2, "malformed relation line"),
        ("T1\tDISO 0 6\tFièvre\nN1\tReference T1\n", 2, "malformed line"),
    ],
)
def test_bad_ann_lines_raise_data_error_naming_file_and_line(tmp_path, ann, line, message):
    write_pair(tmp_path, "doc", FEVER, ann)
    with pytest.raises(DataError) as caught:
        read_brat(tmp_path)
    assert f"doc.ann:{line}: " in str(caught.value) and message in str(caught.value)
    assert caught.value.line == line and caught.value.path.endswith("doc.ann")


def test_bad_files_raise_data_error_naming_the_file(tmp_path):
    write_pair(tmp_path / "empty", "doc", "", "")
    with pytest.raises(DataError, match=r"doc\.txt: empty text file"):
        read_brat(tmp_path / "empty")
    write_pair(tmp_path / "bytes", "doc", FEVER, b"T1\tDISO 0 6\tFi\xe8vre\n")
    with pytest.raises(DataError, match=r"doc\.ann:1: not valid utf-8"):
        read_brat(tmp_path / "bytes")
    (tmp_path / "orphan").mkdir()
    (tmp_path / "orphan" / "doc.ann").write_text("T1\tDISO 0 1\tF\n")
    with pytest.raises(DataError, match=r"orphan/doc\.ann: the \.ann file has no \.txt"):
        read_brat(tmp_path / "orphan")
    with pytest.raises(DataError, match=r"nowhere: no such file or directory"):
        read_brat(tmp_path / "nowhere")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match="no BRAT document"):
        read_brat(tmp_path / "nothing")


def test_empty_ann_is_a_document_without_entities(tmp_path):
    write_pair(tmp_path, "doc", FEVER, "")
    assert read_brat(tmp_path)[0].entities == []


def test_skip_mode_leaves_bad_lines_out_and_lists_them(tmp_path, caplog):
    ann = "T1\tDISO 0 6\tFièvre\nT2\tDISO 10 14\ttoux!\n#1\tAnnotatorNotes T2\tC1\nR1\tRel Arg1:T1 Arg2:T2\nQ\tx\n"
    write_pair(tmp_path / "a", "doc", FEVER, ann)
    write_pair(tmp_path / "a", "latin", b"caf\xe9\n", "")
    with caplog.at_level(logging.WARNING):
        corpus = read_brat(tmp_path / "a", errors="skip")
    assert [e.id for e in corpus[0].entities] == ["T1"] and corpus[0].relations == []
    reasons = [(item.line, item.reason) for item in corpus.report.skipped]
    assert [line for line, _ in reasons] == [2, 5, 3, 4, 1]
    assert "does not match" in reasons[0][1] and "unknown line type" in reasons[1][1]
    assert "skipped annotation T2" in reasons[2][1] and "skipped annotation T2" in reasons[3][1]
    assert reasons[4][1].startswith("document left out: not valid utf-8 (byte 0xe9 at offset 3)")
    assert corpus.report.skipped[4].path.endswith("latin.txt")
    assert len(corpus) == 1 and "skipped" in caplog.text


def test_check_text_can_be_turned_off(tmp_path):
    write_pair(tmp_path, "doc", FEVER, "T1\tDISO 0 6\tfever\n")
    assert read_brat(tmp_path, check_text=False)[0].entities[0].text == "Fièvre"


def _strip_paths(corpus):
    return [(d.doc_id, d.text, d.entities, d.relations) for d in corpus]


def test_write_then_read_gives_the_same_documents(corpus_dir, tmp_path):
    corpus = read_brat(corpus_dir)
    written = write_brat(corpus, tmp_path / "out")
    assert sorted(p.name for p in written) == ["doc1.ann", "noann.ann"]
    again = read_brat(tmp_path / "out")
    assert _strip_paths(again) == _strip_paths(corpus)
    assert (tmp_path / "out" / "sub" / "doc1.txt").read_bytes() == TEXT.encode()  # \r\n kept


def test_write_numbers_entities_without_brat_ids_and_warns_about_what_it_cannot_hold(tmp_path, caplog):
    doc = TextDocument(
        "Fièvre\net toux.",
        [
            Entity("DISO", [(0, 6)], id="e1", attrs={"codes": ["a", "b"]}, score=0.9),
            Entity("DISO", [(3, 6), (10, 14)], id="T7"),
        ],
        relations=[Relation("r", "Rel", [("Arg1", "e1"), ("Arg2", "T7")])],
    )
    with caplog.at_level(logging.WARNING):
        write_brat([doc], tmp_path)
    assert "codes, score" in caplog.text
    ann = (tmp_path / "doc-00000.ann").read_text()
    assert "T8\tDISO 0 6\tFièvre\n" in ann and "T7\tDISO 3 6;10 14\tvre toux\n" in ann
    back = read_brat(tmp_path)[0]
    assert [(e.id, e.spans) for e in back.entities] == [("T8", [(0, 6)]), ("T7", [(3, 6), (10, 14)])]
    assert back.relations[0].args == [("Arg1", "T8"), ("Arg2", "T7")] and back.relations[0].id == "R1"


def test_write_refuses_unsafe_or_duplicate_names(tmp_path):
    with pytest.raises(DataError, match="unsafe"):
        write_brat([TextDocument("a", doc_id="../x")], tmp_path)
    with pytest.raises(DataError, match="duplicate"):
        write_brat([TextDocument("a", doc_id="x"), TextDocument("b", doc_id="x")], tmp_path)


@pytest.mark.slow
def test_real_quaero_counts():
    root = require_real_data("quaero_frenchmed", "corpus")
    expected = {"train": (844, 5689), "dev": (844, 5237), "test": (848, 5307)}  # (documents, mentions)
    for split, (documents, mentions) in expected.items():
        corpus = read_brat(root / split)
        assert (len(corpus), corpus.report.entities) == (documents, mentions), split
        assert corpus.report.skipped == []
        entities = [e for doc in corpus for e in doc.entities]
        assert any(e.is_discontinuous for e in entities)
        assert all(e.attrs.get("note", "").startswith("C") for e in entities[:50])  # CUIs in notes
    # dev/MEDLINE holds 52 editor backups (*.ann~): warned about with their count; the 6 BRAT
    # configuration files (annotation/visual/tools.conf of MEDLINE and EMEA) are counted at INFO.
    report = read_brat(root / "dev").report
    assert report.warnings == {"editor backups not read": 52}
    assert report.ignored == {"BRAT configuration or hidden file (not read)": 6}
