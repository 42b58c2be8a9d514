"""JSON-lines reader/writer."""

from __future__ import annotations

import json

import pytest

from medkit_exp.errors import DataError
from medkit_exp.ner.documents import Entity, Relation, TextDocument
from medkit_exp.ner.formats import read_documents, read_jsonl, write_jsonl


def write(tmp_path, lines, name="docs.jsonl"):
    path = tmp_path / name
    path.write_text(
        "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines), encoding="utf-8"
    )
    return path


def test_reads_spans_and_start_end_entities(tmp_path):
    path = write(
        tmp_path,
        [
            {
                "id": "d1",
                "text": "Fièvre et toux.",
                "entities": [
                    {"label": "DISO", "spans": [[0, 6], [10, 14]], "attrs": {"cui": "C1"}, "id": "e1"},
                    {"label": "DISO", "start": 10, "end": 14, "text": "toux", "score": 0.5},
                ],
            },
            "",
            {"text": "Rien."},
        ],
    )
    corpus = read_jsonl(path)
    first, second = corpus
    assert first.doc_id == "d1" and second.doc_id == "docs-3" and second.entities == []
    assert [(e.spans, e.text, e.attrs, e.id, e.score) for e in first.entities] == [
        ([(0, 6), (10, 14)], "Fièvre toux", {"cui": "C1"}, "e1", None),
        ([(10, 14)], "toux", {}, None, 0.5),
    ]
    assert corpus.report.documents == 2 and corpus.report.entities == 2


def test_write_then_read_is_identity(tmp_path):
    docs = [
        TextDocument(
            "Sécrétion d' oestradiol\r\n",
            [Entity("PHYS", [(0, 9), (10, 23)], id="T1", attrs={"norm": ["umls:C1"]}, score=0.25)],
            "d1",
            {"sentences": [(0, 23)], "source": "x"},
            [Relation("R1", "Rel", [("Arg1", "T1"), ("Arg2", "T1")])],
        ),
        TextDocument("Pas d'entité.", doc_id="d2"),
    ]
    path = write_jsonl(docs, tmp_path / "sub" / "out.jsonl")
    assert "Sécrétion" in path.read_text(encoding="utf-8")  # not \u-escaped
    back = read_documents(path)  # format guessed from the .jsonl suffix
    assert [(d.doc_id, d.text, d.entities, d.relations) for d in back] == [
        (d.doc_id, d.text, d.entities, d.relations) for d in docs
    ]
    assert back[0].metadata == {"sentences": [(0, 23)], "source": "x", "path": str(path)}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"text": "abc", ', "bad document line"),
        ('{"id": 1}', "string 'text'"),
        ('["abc"]', "string 'text'"),
        ({"text": "abc", "entities": [{"label": "X", "start": 2, "end": 9}]}, "beyond the text (3 characters)"),
        ({"text": "abc", "entities": [{"label": "X", "start": 2, "end": 2}]}, "need 0 <= start < end"),
        ({"text": "abc", "entities": [{"label": "X", "start": "0", "end": 2}]}, "offsets must be integers"),
        ({"text": "abc", "entities": [{"label": "X", "spans": [[0, 1, 2]]}]}, "'spans' must be"),
        ({"text": "abc", "entities": [{"label": "X"}]}, "needs 'spans' or 'start' and 'end'"),
        ({"text": "abc", "entities": [{"start": 0, "end": 1}]}, "non-empty 'label'"),
        ({"text": "abc", "entities": [{"label": "X", "start": 0, "end": 1, "text": "b"}]}, "does not match"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    path = write(tmp_path, [{"text": "ok"}, line])
    with pytest.raises(DataError) as caught:
        read_jsonl(path)
    assert "docs.jsonl:2: " in str(caught.value) and message in str(caught.value)


def test_skip_mode_keeps_good_entities_and_lists_the_rest(tmp_path):
    path = write(
        tmp_path,
        [
            "not json",
            {"text": "abc", "entities": [{"label": "X", "start": 0, "end": 1}, {"label": "X", "start": 0, "end": 9}]},
        ],
    )
    corpus = read_jsonl(path, errors="skip")
    assert len(corpus) == 1 and [e.spans for e in corpus[0].entities] == [[(0, 1)]]
    assert [item.line for item in corpus.report.skipped] == [1, 2]


def test_bad_files(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="empty.jsonl: empty file"):
        read_jsonl(tmp_path / "empty.jsonl")
    (tmp_path / "latin.jsonl").write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"latin\.jsonl:2: not valid utf-8"):
        read_jsonl(tmp_path / "latin.jsonl")
    with pytest.raises(DataError, match="missing.jsonl: no such file"):
        read_jsonl(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="cannot be written as JSON"):
        write_jsonl([TextDocument("a", metadata={"bad": object()})], tmp_path / "o.jsonl")
