"""CoNLL/IOB reader on small awkward files, and the real NCBI Disease corpus (slow)."""

from __future__ import annotations

import pytest

from medkit_exp.errors import ConfigError, DataError
from medkit_exp.ner.formats import read_brat, read_conll
from medkit_exp.ner.formats import read_documents, read_splits
from tests.ner.conftest import require_real_data


def write(tmp_path, content: str | bytes, name: str = "data.tsv"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def spans(doc):
    return [(e.label, e.text, e.spans) for e in doc.entities]


def test_rebuilds_text_with_exact_offsets_and_sentence_boundaries(tmp_path):
    path = write(tmp_path, "Fièvre\tB-DISO\net\tO\ntoux\tB-DISO\nsèche\tI-DISO\n\nPas\tO\nde\tO\nrhume\tB-DISO\n")
    corpus = read_conll(path, without_docstart="file")
    doc = corpus[0]
    assert doc.text == "Fièvre et toux sèche\nPas de rhume"
    assert spans(doc) == [
        ("DISO", "Fièvre", [(0, 6)]),
        ("DISO", "toux sèche", [(10, 20)]),
        ("DISO", "rhume", [(28, 33)]),
    ]
    assert doc.metadata["sentences"] == [(0, 20), (21, 33)]
    assert [doc.text[s:e] for s, e in doc.metadata["tokens"]] == "Fièvre et toux sèche Pas de rhume".split()
    assert doc.metadata["line"] == 1 and corpus.report.entities == 3


def test_space_separated_columns_take_first_token_and_last_tag(tmp_path):
    path = write(tmp_path, "Fièvre NN x B-DISO\r\net CC x O\r\n\r\n")  # \r\n line ends too
    doc = read_conll(path)[0]
    assert doc.text == "Fièvre et" and spans(doc) == [("DISO", "Fièvre", [(0, 6)])]


def test_docstart_starts_documents(tmp_path):
    content = "-DOCSTART- -X- O O\n\nA\tB-X\n\nb\tO\n\n-DOCSTART- -X- O O\n\nc\tB-Y\nd\tI-Y\n"
    corpus = read_conll(write(tmp_path, content))
    assert [doc.text for doc in corpus] == ["A\nb", "c d"]
    assert [doc.doc_id for doc in corpus] == ["data-0", "data-1"]
    assert spans(corpus[1]) == [("Y", "c d", [(0, 3)])]


def test_without_docstart_sentence_or_file(tmp_path):
    path = write(tmp_path, "a\tO\n\nb\tB-X\n\n\nc\tO\n")
    assert [doc.text for doc in read_conll(path, without_docstart="sentence")] == ["a", "b", "c"]
    assert [doc.text for doc in read_conll(path, without_docstart="file")] == ["a\nb\nc"]
    with pytest.raises(ConfigError, match="without_docstart"):
        read_conll(path, without_docstart="paragraph")


def test_iob1_input_and_auto_detection(tmp_path):
    # IOB1: I- starts an entity, B- only splits two adjacent entities of the same label.
    path = write(tmp_path, "a\tI-X\nb\tI-X\nc\tB-X\nd\tO\ne\tI-Y\n")
    expected = [("X", "a b", [(0, 3)]), ("X", "c", [(4, 5)]), ("Y", "e", [(8, 9)])]
    assert spans(read_conll(path, scheme="iob1")[0]) == expected
    corpus = read_conll(path)  # auto
    assert spans(corpus[0]) == expected and "tagging scheme detected: iob1" in corpus.report.notes


def test_i_after_o_is_an_error_in_strict_iob2(tmp_path):
    path = write(tmp_path, "a\tO\nb\tB-X\n\nc\tO\nd\tI-X\n")
    with pytest.raises(DataError, match=r"data\.tsv:5: 'I-X' after 'O'"):
        read_conll(path, scheme="iob2")
    corpus = read_conll(path, scheme="iob2", errors="skip")
    assert [doc.text for doc in corpus] == ["a b"]
    assert [(s.line, s.reason.endswith("(sentence left out)")) for s in corpus.report.skipped] == [(5, True)]


@pytest.mark.parametrize("scheme", ["bioes", "bilou", "auto"])
def test_bioes_and_bilou_letters_are_both_accepted(tmp_path, scheme):
    path = write(tmp_path, "a\tS-X\nb\tB-Y\nc\tI-Y\nd\tE-Y\ne\tU-X\nf\tB-X\ng\tL-X\n")
    doc = read_conll(path, scheme=scheme)[0]
    assert [(e.label, e.text) for e in doc.entities] == [("X", "a"), ("Y", "b c d"), ("X", "e"), ("X", "f g")]


def test_unclosed_bilou_entity_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"data\.tsv:2: 'I-X' is not closed"):
        read_conll(write(tmp_path, "a\tB-X\nb\tI-X\nc\tO\n"), scheme="bilou")


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        ("a\tO\nb\tB_X\n", 2, "unknown tag 'B_X' for the iob2 scheme"),
        ("a\tO\nb\tDisease\n", 2, "unknown tag 'Disease'"),
        ("a\tO\nb\tU-X\n", 2, "unknown tag 'U-X' for the iob2 scheme"),
        ("a\tO\nlonely\n", 2, "expected a token and a tag column"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, content, line, message):
    with pytest.raises(DataError) as caught:
        read_conll(write(tmp_path, content), scheme="iob2")
    assert f"data.tsv:{line}: " in str(caught.value) and message in str(caught.value)


def test_bad_files(tmp_path):
    with pytest.raises(DataError, match=r"empty\.tsv: empty file"):
        read_conll(write(tmp_path, "\n\n", "empty.tsv"))
    with pytest.raises(DataError, match=r"latin\.tsv:2: not valid utf-8"):
        read_conll(write(tmp_path, b"a\tO\nfi\xe8vre\tB-X\n", "latin.tsv"))
    with pytest.raises(DataError, match=r"missing\.tsv: no such file"):
        read_conll(tmp_path / "missing.tsv")
    with pytest.raises(DataError, match="got a folder"):
        read_conll(tmp_path)
    with pytest.raises(DataError, match="no sentence found"):
        read_conll(write(tmp_path, "-DOCSTART- O\n\n", "only_docstart.tsv"))


def test_read_documents_and_read_splits_name_missing_paths(tmp_path):
    write(tmp_path, "a\tB-X\n", "train.tsv")
    write(tmp_path, "b\tO\n", "dev.tsv")
    assert read_documents(tmp_path / "train.tsv")[0].entities[0].label == "X"
    corpora = read_splits(tmp_path, ("train", "dev"))
    assert sorted(corpora) == ["dev", "train"] and corpora["dev"][0].text == "b"
    with pytest.raises(DataError, match=r"split 'test' not found .*present: \['dev.tsv', 'train.tsv'\]") as caught:
        read_splits(tmp_path, ("train", "test"))
    assert caught.value.path == str(tmp_path)
    with pytest.raises(DataError, match="no such data folder"):
        read_splits(tmp_path / "nope")
    with pytest.raises(DataError, match="cannot tell the format"):
        read_documents(write(tmp_path, "x", "data.xml"))


@pytest.mark.slow
def test_real_ncbi_disease_counts():
    root = require_real_data("ncbi_disease")
    expected = {"train": (5432, 136086, 5145), "devel": (923, 23969, 787), "test": (940, 24497, 960)}
    for split, (sentences, tokens, mentions) in expected.items():
        corpus = read_conll(root / "conll" / f"{split}.tsv")
        assert len(corpus) == sentences and corpus.report.entities == mentions
        assert sum(len(doc.metadata["tokens"]) for doc in corpus) == tokens
    deduplicated = read_conll(root / "MTL-Bioinformatics-2016" / "data" / "NCBI-disease-IOB" / "train.tsv")
    assert (len(deduplicated), deduplicated.report.entities) == (5424, 5134)
    # Standoff: 593/100/100 documents (train holds PMID 8528200 twice, as 8528200 and 8528200.1);
    # its mentions equal the CoNLL ones.
    for split, documents, mentions in (("train", 593, 5145), ("devel", 100, 787), ("test", 100, 960)):
        corpus = read_brat(root / "standoff" / split)
        assert (len(corpus), corpus.report.entities) == (documents, mentions)
        assert {e.label for doc in corpus for e in doc.entities} <= {
            "SpecificDisease",
            "DiseaseClass",
            "Modifier",
            "CompositeMention",
        }
    assert {"8528200", "8528200.1"} <= {doc.doc_id for doc in read_brat(root / "standoff" / "train")}
