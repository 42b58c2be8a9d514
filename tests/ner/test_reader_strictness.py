"""The readers on the malformed inputs of issue 13: line ends, BOMs, tags, JSONL schema, paths
that are not files, files not read, duplicate ids, huge values in error lines."""

from __future__ import annotations

import json
import logging
import os

import pytest

from medkit_exp.errors import DataError
from medkit_exp.ner.formats import read_brat, read_conll, read_documents, read_jsonl, read_splits
from medkit_exp.ner.policies import apply_policies
from tests.ner.conftest import write_pair

CONLL = "-DOCSTART- -X- O O\n\nFever\tB-Disease\nand\tO\ncough\tB-Disease\n.\tO\n\nNo\tO\nrash\tB-Disease\n"


def _entities(corpus):
    return [[(e.label, e.text) for e in doc.entities] for doc in corpus]


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_conll_any_line_end_and_a_bom_read_the_same(tmp_path, end, bom):
    path = tmp_path / "data.tsv"
    path.write_bytes(bom + CONLL.replace("\n", end).encode())
    corpus = read_conll(path)
    # The BOM neither sticks to the first token nor hides the -DOCSTART- line.
    assert [doc.text for doc in corpus] == ["Fever and cough .\nNo rash"]
    assert _entities(corpus) == [[("Disease", "Fever"), ("Disease", "cough"), ("Disease", "rash")]]


def test_a_bom_before_the_first_token_is_not_part_of_it(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_bytes(b"\xef\xbb\xbfFever\tB-Disease\n")
    assert read_conll(path)[0].entities[0].text == "Fever"


@pytest.mark.parametrize("tag", ["-Disease", "BI-Disease", "b-Disease", "B-", "B", "BB-X", "B-Dis ease", "IB-X"])
def test_tags_are_checked_exactly_against_the_scheme(tmp_path, tag):
    path = tmp_path / "data.tsv"
    path.write_text(f"a\tB-Disease\nb\tI-Disease\nc\t{tag}\n")
    for scheme in ("auto", "iob2", "iob1", "bioes"):
        with pytest.raises(DataError, match=r"data\.tsv:3: unknown tag"):
            read_conll(path, scheme=scheme)


def test_one_e_tag_in_an_iob2_file_is_reported_on_its_own_line(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_text("a\tB-X\nb\tO\n\nc\tB-X\nd\tI-X\n\ne\tB-X\nf\tE-X\n\ng\tB-Y\n")
    with pytest.raises(DataError) as caught:
        read_conll(path)
    assert caught.value.line == 8 and "unknown tag 'E-X' for the iob2 scheme" in str(caught.value)
    assert "detected from the whole file: iob2" in str(caught.value)


@pytest.mark.parametrize(
    ("key", "hint"),
    [("entites", "did you mean 'entities'?"), ("entity", "did you mean 'entities'?"),
     ("Entities", "did you mean 'entities'?"), ("annotations", "known keys: id, text, entities"),
     ("txt", "did you mean 'text'?"), ("meta_data", "did you mean 'metadata'?")],
)
def test_jsonl_unknown_document_keys_are_errors_naming_the_nearest_key(tmp_path, key, hint):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "ok"}\n' + json.dumps({"text": "Fever", key: []}) + "\n")
    with pytest.raises(DataError, match=rf"docs\.jsonl:2: .*unknown key '{key}' in a document; {hint}"):
        read_jsonl(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"text": "Fever", "entities": [], "entities": []}', "key 'entities' appears twice"),
        ('{"text": "Fever", "entities": [{"label": "X", "label": "Y", "start": 0, "end": 1}]}',
         "'label' appears twice"),
        ({"text": "Fever", "entities": [{"label": "X", "spans": [[0, 3], [2, 5]]}]}, "overlapping or duplicate"),
        ({"text": "Fever", "entities": [{"label": "X", "spans": [[0, 3], [0, 3]]}]}, "overlapping or duplicate"),
        ({"text": "Fever", "entities": [{"label": "Dis ease", "start": 0, "end": 5}]}, "without spaces"),
        ({"text": "Fever", "entities": [{"label": "X", "start": 0, "end": 5, "lable": 1}]}, "did you mean 'label'"),
        ({"text": "Fever", "entities": [{"label": "X", "start": 0, "end": 5, "score": True}]}, "finite number"),
        ({"text": "Fever", "entities": [{"label": "X", "start": 0, "end": 2, "id": "T1"},
                                        {"label": "X", "start": 2, "end": 4, "id": "T1"}]}, "duplicate entity id"),
        ({"text": "Fever", "relations": [{"id": "R1", "label": "r", "args": [["Arg1", "T9"]]}]}, "does not hold: 'T9'"),
        ({"text": "Fever", "relations": [{"id": "R1", "label": "r s", "args": [["A", "R1"]]}]}, "without spaces"),
        ({"text": "Fever", "relations": [{"id": "R1", "label": "r", "args": "T1"}]}, "'args' must be"),
        ({"text": "Fever", "metadata": []}, "'metadata' must be a JSON object"),
        ({"text": "Fever", "id": True}, "document id must be"),
        ('{"text": "Fe\\ud800ver"}', "lone surrogate"),
        ('{"text": "Fever", "entities": [{"label": "X", "start": 0, "end": 5, "score": NaN}]}', "NaN is not"),
    ],
)
def test_jsonl_follows_the_brat_rules_and_refuses_what_would_crash_later(tmp_path, line, message):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "ok"}\n' + (line if isinstance(line, str) else json.dumps(line)) + "\n")
    with pytest.raises(DataError) as caught:
        read_jsonl(path)
    assert caught.value.line == 2 and message in str(caught.value), str(caught.value)


def test_jsonl_pairs_of_surrogate_escapes_are_one_character(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('\ufeff{"text": "\\ud83d\\ude00 ok"}\r{"text": "b"}\r')  # BOM and CR-only line ends too
    assert [doc.text for doc in read_jsonl(path)] == ["\U0001f600 ok", "b"]


def test_brat_bom_is_read_as_a_space_so_offsets_still_match(tmp_path):
    # BRAT counts the BOM as a character: "Fever" is at 1-6 in this file.
    write_pair(tmp_path, "d", b"\xef\xbb\xbfFever.\n", b"\xef\xbb\xbfT1\tDISO 1 6\tFever\r")
    doc = read_brat(tmp_path)[0]
    assert doc.text == " Fever.\n" and [(e.text, e.spans) for e in doc.entities] == [("Fever", [(1, 6)])]


@pytest.mark.parametrize("name", ["d.ann", "d.txt"])
def test_brat_folder_named_like_a_file_is_a_data_error(tmp_path, name):
    write_pair(tmp_path, "d", "Fever.\n", "T1\tDISO 0 5\tFever\n")
    (tmp_path / name).unlink()
    (tmp_path / name).mkdir()
    with pytest.raises(DataError, match=rf"{name}: a folder named like a BRAT file"):
        read_brat(tmp_path)
    with pytest.raises(DataError, match=rf"{name}: "):
        read_brat(tmp_path / ("d.txt" if name == "d.ann" else "d.ann"))


def test_symlink_loops_are_named_as_such(tmp_path):
    write_pair(tmp_path / "corpus", "d", "Fever.\n", "T1\tDISO 0 5\tFever\n")
    os.symlink(tmp_path / "corpus", tmp_path / "corpus" / "again")  # a folder containing a link to itself
    with pytest.raises(DataError, match=r"again: symlink loop"):
        read_brat(tmp_path / "corpus")
    os.symlink("train", tmp_path / "train")  # a link to itself: not "split not found"
    with pytest.raises(DataError, match=r"train: symlink loop"):
        read_splits(tmp_path, ["train"])
    with pytest.raises(DataError, match=r"train: symlink loop"):
        read_documents(tmp_path / "train")


def test_dangling_links_and_unreadable_files(tmp_path):
    write_pair(tmp_path, "d", "Fever.\n", "T1\tDISO 0 5\tFever\n")
    os.symlink(tmp_path / "gone.txt", tmp_path / "e.txt")
    assert read_brat(tmp_path).report.warnings == {"dangling links not read": 1}
    with pytest.raises(DataError, match=r"e\.txt: not allowed with errors='strict': dangling links"):
        read_brat(tmp_path, errors="strict")
    with pytest.raises(DataError, match=r"e\.txt: dangling link to"):
        read_brat(tmp_path / "e.txt")
    os.unlink(tmp_path / "e.txt")
    os.symlink("/proc/self/mem", tmp_path / "data.tsv")  # a file whose read fails (EIO)
    with pytest.raises(DataError, match=r"data\.tsv: cannot read the file"):
        read_conll(tmp_path / "data.tsv")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_a_file_we_may_not_read_is_a_data_error(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_text("a\tO\n")
    path.chmod(0)
    with pytest.raises(DataError, match=r"data\.tsv: permission denied"):
        read_conll(path)


def test_brat_misnamed_and_other_files_are_warnings_with_counts(tmp_path, caplog):
    write_pair(tmp_path, "d", "Fever.\n", "T1\tDISO 0 5\tFever\n")
    for name in ("e.ANN", "e.txt.orig", "f.ann.bak", "notes.md", "#d.ann#", ".hidden"):
        (tmp_path / name).write_text("x")
    with caplog.at_level(logging.WARNING, logger="medkit_exp.ner"):
        report = read_brat(tmp_path).report
    assert report.warnings == {
        "misnamed files not read (a document is NAME.txt + NAME.ann)": 1,
        "editor backups not read": 3,
        "other files not read": 1,
    }
    assert "3 editor backups not read, e.g." in caplog.text and "1 other files not read" in caplog.text


@pytest.mark.parametrize("line", ["#1\tAnnotatorNotes T1\tsecond", "N1\tReference T1 MeSH:D2", "A1\tNeg T1"])
def test_brat_duplicate_note_norm_and_attribute_ids_are_errors(tmp_path, line):
    ann = f"T1\tDISO 0 5\tFever\n#1\tAnnotatorNotes T1\tC1\nN1\tReference T1 MeSH:D1\nA1\tNeg T1\n{line}\n"
    write_pair(tmp_path, "d", "Fever.\n", ann)
    with pytest.raises(DataError, match=rf"d\.ann:5: duplicate annotation id '{line.split()[0]}'"):
        read_brat(tmp_path)
    corpus = read_brat(tmp_path, errors="skip")  # the first one kept, the duplicate listed
    assert [item.line for item in corpus.report.skipped] == [5] and corpus[0].entities[0].attrs["note"] == "C1"


def test_error_lines_are_capped_whatever_the_input_holds(tmp_path):
    label = "L" * 100_000
    write_pair(tmp_path, "d", "Fever.\n", f"T1\t{label} 0 5\tFever\n")
    with pytest.raises(DataError) as caught:
        apply_policies(read_brat(tmp_path), labels=["DISO"])
    assert len(str(caught.value)) < 1000 and "…' (100000 characters)" in str(caught.value)
    (tmp_path / "data.tsv").write_text(f"a\tB-{label}\nb\tZ{label}\n")
    with pytest.raises(DataError) as caught:
        read_conll(tmp_path / "data.tsv")
    assert len(str(caught.value)) < 1000 and "(100001 characters)" in str(caught.value)
    (tmp_path / "docs.jsonl").write_text(json.dumps({"text": "a", "entities": [{"label": label, "start": 0}]}))
    with pytest.raises(DataError) as caught:
        read_jsonl(tmp_path / "docs.jsonl")
    assert len(str(caught.value)) < 1100


def test_write_brat_says_when_a_text_starts_with_what_readers_take_for_a_bom(tmp_path, caplog):
    from medkit_exp.ner.documents import TextDocument
    from medkit_exp.ner.formats import write_brat

    with caplog.at_level(logging.WARNING, logger="medkit_exp.ner"):
        write_brat([TextDocument("\ufeffFever.", doc_id="a"), TextDocument("ok", doc_id="b")], tmp_path)
    assert "1 texts start with U+FEFF" in caplog.text
    assert read_brat(tmp_path)[0].text == " Fever."


def test_data_errors_strict_reaches_the_reader(tmp_path, caplog):
    from medkit_exp.ner.data import NERDataConfig, load_corpus

    write_pair(tmp_path / "train", "d", "Fever.\n", "T1\tDISO 0 5\tFever\n")
    (tmp_path / "train" / "d.ann~").write_text("old")
    config = {"name": "t", "path": str(tmp_path), "dev": None, "labels": ["DISO"], "split": "none"}
    with caplog.at_level(logging.WARNING, logger="medkit_exp.ner"):
        assert len(load_corpus(NERDataConfig(**config))["train"]) == 1  # errors: raise (the default)
    assert "1 editor backups not read" in caplog.text
    with pytest.raises(DataError, match=r"d\.ann~: not allowed with errors='strict'"):
        load_corpus(NERDataConfig(**config, errors="strict"))


def test_a_bom_inside_a_conll_file_and_huge_json_numbers_are_errors(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_bytes(b"\xef\xbb\xbfa\tO\n\n\xef\xbb\xbf-DOCSTART- O\n\nb\tO\n")  # two files joined
    with pytest.raises(DataError, match=r"data\.tsv:3: a byte order mark"):
        read_conll(path)
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "a", "metadata": {"x": 1e999}}\n')
    with pytest.raises(DataError, match=r"docs\.jsonl:1: .*'1e999' is too large"):
        read_jsonl(path)


def test_jsonl_document_ids_name_one_document(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"id": "a", "text": "x"}\n{"id": "b", "text": "y"}\n{"id": "a", "text": "z"}\n')
    with pytest.raises(DataError, match=r"docs\.jsonl:3: document id 'a' already names the document of line 1"):
        read_jsonl(path)
    corpus = read_jsonl(path, errors="skip")
    assert [doc.text for doc in corpus] == ["x", "y"] and [item.line for item in corpus.report.skipped] == [3]


def test_one_i_after_o_in_an_iob2_file_is_reported_not_read_as_iob1(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_text("a\tB-X\nb\tO\n\nc\tB-X\nd\tI-X\n\ne\tO\nf\tI-X\n\ng\tB-Y\n")
    with pytest.raises(DataError, match=r"data\.tsv:8: 'I-X' after 'O' .*detected from the whole file: iob2"):
        read_conll(path)
    path.write_text("a\tI-X\nb\tB-X\n\nc\tO\nd\tI-X\n")  # true IOB1: B- only between two X entities
    assert "tagging scheme detected: iob1" in read_conll(path).report.notes


def test_a_corpus_folder_that_is_a_symlink_loop_is_named_as_one(tmp_path):
    from medkit_exp.ner.data import NERDataConfig, corpus_root

    loop = tmp_path / "corpus"
    loop.symlink_to(loop)
    with pytest.raises(DataError, match=r"corpus: symlink loop"):
        corpus_root(NERDataConfig(name="mine", path=str(loop)))


def test_predict_names_a_symlink_loop_given_as_input(tmp_path):
    from medkit_exp.predict import read_input

    loop = tmp_path / "notes"
    loop.symlink_to(loop)
    with pytest.raises(DataError, match=r"notes: symlink loop"):
        read_input(str(loop), "auto", "raise")
