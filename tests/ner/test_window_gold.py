"""The entities as annotated in a window's scored coordinates (medkit_exp.ner.window_gold)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from medkit_exp.ner.documents import Entity
from medkit_exp.ner.encoding import subtoken_tags
from medkit_exp.ner.tagging import chunks_to_tags, tags_to_chunks
from medkit_exp.ner.window_gold import (
    UNALIGNED, locate_entities, scored_offsets, window_of_word, windows_annotated,
)

LABELS = ["DISO", "ANAT", "CHEM"]


@st.composite
def words_and_entities(draw):
    """Words with random lengths and gaps, entities (nested, overlapping, duplicated) whose
    edges are word edges, and a partition of the words into windows' owned ranges (some empty)."""
    nb_words = draw(st.integers(1, 30))
    words, position = [], draw(st.integers(0, 3))
    for _ in range(nb_words):
        length = draw(st.integers(1, 6))
        words.append((position, position + length))
        position += length + draw(st.integers(1, 3))
    spans = st.tuples(st.integers(0, nb_words - 1), st.integers(1, 5))
    entities = []
    for first, size in draw(st.lists(spans, max_size=12)):
        end = min(first + size, nb_words)
        entities.append((draw(st.sampled_from(LABELS)), first, end))
    cuts = sorted(draw(st.lists(st.integers(0, nb_words), max_size=4)))
    bounds = [0, *cuts, nb_words]
    owned = [range(a, b) for a, b in zip(bounds, bounds[1:])]
    return words, entities, owned


def as_entity(words, label, first, end) -> Entity:
    return Entity(label, [(words[first][0], words[end - 1][1])])


@settings(max_examples=150, deadline=None)
@given(words_and_entities())
def test_each_entity_lands_once_in_the_window_owning_its_first_word(case):
    words, entities, owned = case
    located = locate_entities(words, [as_entity(words, *e) for e in entities])
    rows = windows_annotated(located, owned, [scored_offsets([], r, per_subtoken=False) for r in owned])
    assert sum(len(row) for row in rows) == len(entities)
    expected = [[] for _ in owned]
    for label, first, end in entities:
        index = next(i for i, r in enumerate(owned) if first in r)
        expected[index].append((label, first - owned[index].start, end - owned[index].start))
    assert rows == expected


@settings(max_examples=150, deadline=None)
@given(words_and_entities(), st.data())
def test_subtoken_coordinates_are_those_of_the_decoded_subtoken_chunks(case, data):
    """With every sub-token scored, an entity inside the owned words is the chunk that strict
    decoding of its sub-token tags gives (the tags training writes); one running past the owned
    words ends past the last scored position."""
    words, entities, owned = case
    sizes = [data.draw(st.integers(1, 4)) for _ in words]
    word_ids = [word for word, size in enumerate(sizes) for _ in range(size)]
    located = locate_entities(words, [as_entity(words, *e) for e in entities])
    offsets = [scored_offsets(word_ids, r, per_subtoken=True) for r in owned]
    rows = windows_annotated(located, owned, offsets)
    for r, row, offset in zip(owned, rows, offsets):
        nb_positions = sum(sizes[w] for w in r)
        assert offset[-1] == nb_positions
        for label, first, end in row:
            assert 0 <= first < nb_positions
            if end > nb_positions:
                continue  # runs past the owned words: cannot equal a chunk of this window
            # Encode this one entity as word tags, align them to sub-tokens, decode: same tuple.
            first_word = r.start + offset.index(first)
            words_end = r.start + offset.index(end)
            word_tags = chunks_to_tags([(label, first_word - r.start, words_end - r.start)], len(r), "bilou")
            tags = [t for w, tag in zip(r, word_tags) for t in subtoken_tags(tag, sizes[w], "bilou")]
            assert tags_to_chunks(tags, "bilou") == [(label, first, end)]


def test_unaligned_and_discontinuous_entities_never_equal_a_chunk():
    text = "cancers colorectaux et du foie"
    words = [(0, 7), (8, 19), (20, 22), (23, 25), (26, 30)]
    entities = [
        Entity("DISO", [(0, 19)]),  # aligned
        Entity("DISO", [(0, 6)]),  # ends inside "cancers"
        Entity("DISO", [(0, 7), (26, 30)]),  # discontinuous: "cancers ... foie"
        Entity("ANAT", [(7, 8)]),  # only the space between two words: covers no word
    ]
    assert text[26:30] == "foie"
    rows = windows_annotated(locate_entities(words, entities), [range(0, 5)], [list(range(6))])
    assert rows == [[("DISO", 0, 2), ("DISO", UNALIGNED, 0, 6), ("DISO", 0, 1, 4, 5), ("ANAT", UNALIGNED, 7, 8)]]
    possible_chunks = {(label, a, b) for label in ("DISO", "ANAT") for a in range(5) for b in range(a + 1, 6)}
    assert [entity in possible_chunks for entity in rows[0]] == [True, False, False, False]


def test_an_entity_past_the_owned_words_ends_past_the_last_position():
    words = [(0, 3), (4, 7), (8, 11), (12, 15)]
    entity = Entity("X", [(4, 15)])  # words 1..3
    rows = windows_annotated(locate_entities(words, [entity]), [range(0, 2), range(2, 4)], [[0, 1, 2], [0, 1, 2]])
    assert rows == [[("X", 1, 4)], []]  # window 0 scores positions 0..1: no chunk ends at 4


def test_document_without_words_keeps_its_entities_in_its_one_window():
    rows = windows_annotated(locate_entities([], [Entity("X", [(0, 1)])]), [range(0, 0)], [[0]])
    assert rows == [[("X", UNALIGNED, 0, 1)]]
    assert window_of_word([range(0, 0)], 0) == 0
