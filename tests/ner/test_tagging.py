"""Word tokenizer, entities <-> tags for IOB2/BILOU/BIOES, strict decoding, scheme converters."""

from __future__ import annotations

import random
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medkit_exp.ner.documents import Entity
from medkit_exp.ner.tagging import (
    OUTPUT_SCHEMES,
    TaggingReport,
    Word,
    bioes_to_bilou,
    chunks_to_tags,
    convert_tags,
    find_tag_errors,
    iob1_to_iob2,
    labels_of_tags,
    make_tag_labels,
    spans_to_tags,
    split_tag,
    tags_to_chunks,
    tags_to_spans,
    tokenize_words,
)


def test_tokenizer_offsets_accents_and_apostrophes():
    text = "Pas d'hypertension\tartérielle (HTA) ; l’œdème a régressé, T° 38.5."
    words = tokenize_words(text)
    assert all(text[w.start : w.end] == w.text for w in words)
    assert [w.text for w in words] == [
        "Pas",
        "d",
        "'",
        "hypertension",
        "artérielle",
        "(",
        "HTA",
        ")",
        ";",
        "l",
        "’",
        "œdème",
        "a",
        "régressé",
        ",",
        "T",
        "°",
        "38",
        ".",
        "5",
        ".",
    ]
    assert words[3] == Word(6, 18, "hypertension")


def test_tokenizer_keeps_decomposed_accents_inside_words():
    text = unicodedata.normalize("NFD", "fièvre élevée")
    assert [w.text for w in tokenize_words(text)] == text.split()


WORDS = tokenize_words("Le patient a une insuffisance rénale aiguë et une toux .")


def entity(first: int, last: int, label: str = "DISO") -> Entity:
    return Entity(label, [(WORDS[first].start, WORDS[last].end)])


@pytest.mark.parametrize(
    ("scheme", "expected"),
    [
        ("iob2", ["O", "O", "O", "O", "B-DISO", "I-DISO", "I-DISO", "O", "O", "B-DISO", "O"]),
        ("bilou", ["O", "O", "O", "O", "B-DISO", "I-DISO", "L-DISO", "O", "O", "U-DISO", "O"]),
        ("bioes", ["O", "O", "O", "O", "B-DISO", "I-DISO", "E-DISO", "O", "O", "S-DISO", "O"]),
    ],
)
def test_multi_and_single_word_entities_both_ways(scheme, expected):
    entities = [entity(4, 6), entity(9, 9)]
    tags = spans_to_tags(WORDS, entities, scheme)
    assert tags == expected
    assert [(e.label, e.spans) for e in tags_to_spans(WORDS, tags, scheme)] == [(e.label, e.spans) for e in entities]


@pytest.mark.parametrize("scheme", ["iob2", "bilou", "bioes"])
def test_random_round_trip_is_identity(scheme):
    rng = random.Random(scheme)
    for _ in range(300):
        words = [(i * 3, i * 3 + 2) for i in range(rng.randint(0, 25))]
        entities, position = [], 0
        while words and position < len(words):
            position += rng.randint(0, 3)
            length = rng.randint(1, 4)
            if position + length <= len(words):  # adjacent entities, same label included
                entities.append(Entity(rng.choice("ABC"), [(words[position][0], words[position + length - 1][1])]))
            position += length
        tags = spans_to_tags(words, entities, scheme)
        assert find_tag_errors(tags, scheme) == []
        back = tags_to_spans(words, tags, scheme)
        assert [(e.label, e.spans) for e in back] == [(e.label, e.spans) for e in entities]


def test_boundaries_inside_words_are_snapped_and_counted():
    words = tokenize_words("hypertension artérielle")
    report = TaggingReport()
    tags = spans_to_tags(words, [Entity("DISO", [(5, 15)])], "iob2", report)  # "tension art"
    assert tags == ["B-DISO", "I-DISO"] and report.snapped == 1 and report.tagged == 1
    assert tags_to_spans(words, tags, text="hypertension artérielle")[0].text == "hypertension artérielle"


def test_overlapping_discontinuous_and_empty_entities_are_counted():
    text = "Fracture du fémur droit"
    words = tokenize_words(text)
    report = TaggingReport()
    entities = [
        Entity("DISO", [(0, 17)]),  # Fracture du fémur: overlaps X, dropped
        Entity("ANAT", [(12, 23)]),  # fémur droit: overlaps X, dropped
        Entity("DISO", [(8, 9)]),  # the space between two words: covers no word
        Entity("X", [(0, 8), (18, 23)]),  # discontinuous, filled; starts first and is longest
    ]
    tags = spans_to_tags(words, entities, "iob2", report)
    assert tags == ["B-X", "I-X", "I-X", "I-X"]
    assert (
        report.entities,
        report.tagged,
        report.overlapping_dropped,
        report.empty_dropped,
        report.discontinuous_filled,
    ) == (4, 1, 2, 1, 1)


@pytest.mark.parametrize(
    ("tags", "scheme", "chunks"),
    [
        (["O", "I-X", "I-X", "O"], "iob2", []),  # I- after O is not an entity start
        (["B-X", "I-Y", "I-Y"], "iob2", [("X", 0, 1)]),
        (["B-X", "B-X", "I-X"], "iob2", [("X", 0, 1), ("X", 1, 3)]),
        (["B-X", "I-X", "O", "U-Y"], "bilou", [("Y", 3, 4)]),  # unclosed B-X I-X is no entity
        (["B-X", "L-X", "L-X", "I-X", "L-X"], "bilou", [("X", 0, 2)]),
        (["B-X", "B-X", "L-X", "U-X"], "bilou", [("X", 1, 3), ("X", 3, 4)]),
        (["B-X", "I-Y", "L-X"], "bilou", []),
        (["S-X", "B-X", "E-X", "E-X"], "bioes", [("X", 0, 1), ("X", 1, 3)]),
        (["I-X", "I-X", "B-X", "O", "I-Y", "I-X"], "iob1", [("X", 0, 2), ("X", 2, 3), ("Y", 4, 5), ("X", 5, 6)]),
    ],
)
def test_strict_decoding_of_invalid_sequences(tags, scheme, chunks):
    assert tags_to_chunks(tags, scheme) == chunks


@pytest.mark.parametrize(("scheme", "seqeval_scheme"), [("iob2", "IOB2"), ("bilou", "BILOU"), ("bioes", "IOBES")])
def test_decoding_equals_seqeval_strict_on_random_sequences(scheme, seqeval_scheme):
    seqeval_scheme_module = pytest.importorskip("seqeval.scheme", reason="seqeval is a test-only dependency")
    tag_set = make_tag_labels(["A", "B"], scheme)
    rng = random.Random(1)
    for _ in range(500):
        tags = [rng.choice(tag_set) for _ in range(rng.randint(0, 12))]
        tokens = seqeval_scheme_module.Tokens(tags, getattr(seqeval_scheme_module, seqeval_scheme))
        assert tags_to_chunks(tags, scheme) == [(e.tag, e.start, e.end) for e in tokens.entities], tags


def test_scheme_converters():
    assert iob1_to_iob2(["I-X", "I-X", "B-X", "O", "I-Y"]) == ["B-X", "I-X", "B-X", "O", "B-Y"]
    assert bioes_to_bilou(["S-X", "B-Y", "I-Y", "E-Y"]) == ["U-X", "B-Y", "I-Y", "L-Y"]
    assert convert_tags(["B-X", "I-X", "B-Y"], "iob2", "bilou") == ["B-X", "L-X", "U-Y"]
    assert convert_tags(["U-X", "B-Y", "L-Y"], "bilou", "iob2") == ["B-X", "B-Y", "I-Y"]


def test_make_tag_labels_is_stable_and_checked():
    assert make_tag_labels(["DISO", "ANAT", "DISO"]) == ["O", "B-ANAT", "I-ANAT", "B-DISO", "I-DISO"]
    assert (
        make_tag_labels(("b", "a"), "bilou")
        == make_tag_labels(["a", "b"], "bilou")
        == [
            "O",
            "B-a",
            "I-a",
            "L-a",
            "U-a",
            "B-b",
            "I-b",
            "L-b",
            "U-b",
        ]
    )
    assert labels_of_tags(make_tag_labels(["x", "y"], "bioes")) == ["x", "y"]
    with pytest.raises(ValueError, match="unknown tagging scheme"):
        make_tag_labels(["a"], "iob1")
    with pytest.raises(ValueError, match="bad entity label"):
        make_tag_labels(["two words"])


def test_split_tag_and_find_tag_errors():
    assert split_tag("B-Specific-Disease") == ("B", "Specific-Disease")
    for bad in ("B_X", "X", "B-", "L-X"):
        with pytest.raises(ValueError, match="unknown tag"):
            split_tag(bad, "iob2")
    assert find_tag_errors(["B-X", "I-Y"], "iob2") == [(1, "'I-Y' after 'B-X' (an IOB2 entity starts with B-)")]
    assert find_tag_errors(["I-X"], "iob1") == []
    assert [index for index, _ in find_tag_errors(["B-X", "I-X", "O", "L-X"], "bilou")] == [1, 3]
    assert find_tag_errors(["B-X", "I-X", "L-X", "U-Y"], "bilou") == []


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 words but 1 tags"):
        tags_to_spans([(0, 1), (2, 3)], ["O"])


@pytest.mark.parametrize("tag", ["-X", "BI-X", "IB-X", "b-X", "B-", "B- X", "B-X Y", "BB-X", "O-X", "--X"])
def test_split_tag_takes_exactly_one_letter_of_the_scheme_as_prefix(tag):
    # A substring test ("" in "BI", "BI" in "BI") let "-X" and "BI-X" through and changed entities.
    for scheme in ("iob1", "iob2", "bioes", "bilou"):
        with pytest.raises(ValueError, match="unknown tag"):
            split_tag(tag, scheme)


_TAG_LABELS = st.sampled_from(["X", "Y", "Dis-ease", "é"])


@st.composite
def _chunks(draw) -> tuple[int, list[tuple[str, int, int]]]:
    """A length and non-overlapping (label, first, end) chunks within it, in order."""
    length = draw(st.integers(0, 40))
    cuts = sorted(draw(st.sets(st.integers(0, length), max_size=20)))
    chunks = [(draw(_TAG_LABELS), a, b) for a, b in zip(cuts[::2], cuts[1::2]) if a < b]
    return length, chunks


@settings(max_examples=200, deadline=None)
@given(drawn=_chunks())
def test_chunks_round_trip_through_tags_in_every_scheme(drawn):
    length, chunks = drawn
    for scheme in OUTPUT_SCHEMES:
        tags = chunks_to_tags(chunks, length, scheme)
        assert find_tag_errors(tags, scheme) == []
        assert tags_to_chunks(tags, scheme) == chunks
        for other in OUTPUT_SCHEMES:  # converting there and back changes nothing
            assert convert_tags(convert_tags(tags, scheme, other), other, scheme) == tags
    iob2 = chunks_to_tags(chunks, length, "iob2")
    iob1 = [  # IOB1: I- everywhere, B- only where an entity follows one of the same label
        f"B-{tag[2:]}" if tag.startswith("B-") and index and iob2[index - 1][2:] == tag[2:] else
        ("I-" + tag[2:] if tag != "O" else tag)
        for index, tag in enumerate(iob2)
    ]
    assert find_tag_errors(iob1, "iob1") == [] and tags_to_chunks(iob1, "iob1") == chunks
    assert iob1_to_iob2(iob1) == iob2


@settings(max_examples=200, deadline=None)
@given(tags=st.lists(st.sampled_from(["O", "B-X", "I-X", "E-X", "S-X", "L-Y", "U-Y", "B-Y", "I-Y", "-X", "BI-Y"])))
def test_any_tag_sequence_is_valid_and_round_trips_or_is_reported(tags):
    for scheme in OUTPUT_SCHEMES:
        if find_tag_errors(tags, scheme):
            continue  # reported: the reader names the first problem's line
        assert chunks_to_tags(tags_to_chunks(tags, scheme), len(tags), scheme) == tags
