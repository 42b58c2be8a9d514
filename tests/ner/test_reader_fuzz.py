"""Property tests of the readers: arbitrary input raises nothing but a DataError naming the file,
and a generated corpus written then read back is unchanged (BRAT, JSON lines)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medkit_exp.errors import DataError
from medkit_exp.ner.documents import Entity, Relation, TextDocument
from medkit_exp.ner.formats import read_brat, read_conll, read_jsonl, write_brat, write_jsonl

# MEDKIT_EXP_FUZZ_EXAMPLES: more examples (the slow test below runs this file with 2,000).
FUZZ = settings(
    max_examples=int(os.environ.get("MEDKIT_EXP_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
ROUND_TRIP = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Bytes that look like each format, so that Hypothesis reaches past the first check.
_CONLL_PIECES = [b"tok\tO\n", b"a\tB-X\n", b"b\tI-X\n", b"\tE-X\r", b"-DOCSTART- O\n", b"\n", b"\r\n", b"\xef\xbb\xbf",
                 b"c B-Y\r", b"\t", b" ", b"-X", b"\xff", b"U-", b"S-Z\n", b"L-"]
_JSONL_PIECES = [b'{"text": "abc"', b', "entities": [', b'{"label": "X", "start": 0, "end": 2}', b"]}", b"\n",
                 b'"\\ud800"', b"{", b"}", b"[", b"]", b",", b":", b'"id"', b'"spans": [[0, 1], [1, 2]]', b"NaN",
                 b'"relations": [{"id": "R1", "label": "r", "args": [["a", "T1"]]}]', b"\xef\xbb\xbf", b"\r", b"1e999"]
_ANN_PIECES = [b"T1\tX 0 3\tabc\n", b"T2\tY 1 2;2 3\tb c\n", b"#1\tAnnotatorNotes T1\tnote\n",
               b"N1\tReference T1 a:b\n",
               b"R1\tr Arg1:T1 Arg2:T2\n", b"E1\tE:T1 A:T2\n", b"*\tEquiv T1 T2\n", b"A1\tNeg T1\n", b"M1\tX T9 v\n",
               b"\t", b" ", b";", b"\r", b"\xef\xbb\xbf", b"\xff", b"9", b"T1", b"\n"]


def _structured(pieces: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=300), st.lists(st.sampled_from(pieces), max_size=30).map(b"".join))


def _only_data_errors(read, path: Path, *allowed: Path) -> None:
    try:
        read(path)
    except DataError as error:
        assert error.path is not None and Path(error.path) in {path, *allowed}, error
        assert len(str(error)) < 2000


@FUZZ
@given(content=_structured(_CONLL_PIECES))
def test_conll_arbitrary_bytes_raise_only_data_errors_naming_the_file(content):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.tsv"
        path.write_bytes(content)
        for scheme in ("auto", "iob2", "bilou"):
            _only_data_errors(lambda p, s=scheme: read_conll(p, scheme=s), path)
        _only_data_errors(lambda p: read_conll(p, errors="skip"), path)


@FUZZ
@given(content=_structured(_JSONL_PIECES))
def test_jsonl_arbitrary_bytes_raise_only_data_errors_naming_the_file(content):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "docs.jsonl"
        path.write_bytes(content)
        _only_data_errors(read_jsonl, path)
        _only_data_errors(lambda p: read_jsonl(p, errors="skip"), path)


@FUZZ
@given(text=st.one_of(st.binary(min_size=0, max_size=40), st.just(b"abc def\r\nghi")), ann=_structured(_ANN_PIECES))
def test_brat_arbitrary_bytes_raise_only_data_errors_naming_the_file(text, ann):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "d.txt").write_bytes(text)
        (root / "d.ann").write_bytes(ann)
        for errors in ("raise", "skip", "strict"):
            _only_data_errors(lambda p, e=errors: read_brat(p, errors=e), root, root / "d.txt", root / "d.ann")
        _only_data_errors(lambda p: read_brat(p, relations="ignore", attributes="ignore"), root / "d.ann",
                          root / "d.txt")


@FUZZ
@given(content=st.binary(max_size=300))
def test_medkit_json_arbitrary_bytes_raise_only_data_errors_naming_the_file(content):
    pytest.importorskip("medkit", reason="medkit-lib is not installed")
    from medkit_exp.ner.formats import read_medkit_json

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "docs.jsonl"
        path.write_bytes(b'{"version": "0.2", "content_type": "text_document_list"}\n' + content)
        _only_data_errors(read_medkit_json, path)
        path.write_bytes(content)
        _only_data_errors(read_medkit_json, path)


@FUZZ
@given(text=st.text(max_size=200))
def test_arbitrary_text_raises_only_data_errors_in_every_reader(text):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for name, read in (("data.tsv", read_conll), ("docs.jsonl", read_jsonl)):
            (root / name).write_text(text, encoding="utf-8", newline="")
            _only_data_errors(read, root / name)
        (root / "b").mkdir()
        (root / "b" / "d.txt").write_text("some text\n")
        (root / "b" / "d.ann").write_text(text, encoding="utf-8", newline="")
        _only_data_errors(read_brat, root / "b", root / "b" / "d.ann", root / "b" / "d.txt")


# A generated corpus: texts of any characters (but no leading BOM, see test_brat_refuses_...),
# entities with one or more non-overlapping fragments, labels without spaces.
_LABELS = st.text(alphabet=st.sampled_from("ABCXYZ_-éß0"), min_size=1, max_size=6)


@st.composite
def _documents(draw, with_relations: bool) -> list[TextDocument]:
    documents = []
    for index in range(draw(st.integers(1, 4))):
        text = draw(st.text(min_size=1, max_size=60).filter(lambda t: not t.startswith("\ufeff")))
        entities = []
        for number in range(draw(st.integers(0, 5))):
            cuts = sorted(draw(st.sets(st.integers(0, len(text)), min_size=2, max_size=6)))
            pairs = [(a, b) for a, b in zip(cuts[::2], cuts[1::2])]
            if not pairs:
                continue
            attrs = draw(st.sampled_from([{}, {"note": "C0011849"}, {"norm": ["MeSH:D1"]}, {"Negation": True}]))
            entities.append(Entity(draw(_LABELS), pairs, attrs=attrs, id=f"T{number + 1}"))
        relations = []
        if with_relations and len(entities) >= 2:
            relations.append(Relation("R1", draw(_LABELS), [("Arg1", entities[0].id), ("Arg2", entities[-1].id)]))
        documents.append(TextDocument(text, entities, f"d{index}", {}, relations))
    return documents


def _essence(documents) -> list:
    return [
        (d.doc_id, d.text, [(e.id, e.label, e.spans, e.text, e.attrs, e.score) for e in d.entities], d.relations)
        for d in documents
    ]


@ROUND_TRIP
@given(documents=_documents(with_relations=True))
def test_brat_write_then_read_gives_the_corpus_back_unchanged(documents):
    with tempfile.TemporaryDirectory() as folder:
        write_brat(documents, folder)
        back = read_brat(folder, errors="strict")
    assert _essence(back) == _essence(documents)
    assert back.report.warnings == {} and back.report.skipped == []


@ROUND_TRIP
@given(documents=_documents(with_relations=True), score=st.none() | st.floats(0, 1))
def test_jsonl_write_then_read_gives_the_corpus_back_unchanged(documents, score):
    for document in documents:
        document.metadata["source"] = {"kind": "generated", "n": len(document.text)}
        for entity in document.entities:
            entity.score = score
    with tempfile.TemporaryDirectory() as folder:
        path = write_jsonl(documents, Path(folder) / "c.jsonl")
        back = read_jsonl(path)
    assert _essence(back) == _essence(documents)
    assert [d.metadata["source"] for d in back] == [d.metadata["source"] for d in documents]


@pytest.mark.slow
def test_readers_fuzzed_with_2000_examples_each():
    environment = {**os.environ, "MEDKIT_EXP_FUZZ_EXAMPLES": "2000"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", "arbitrary"]
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "5 passed" in result.stdout
