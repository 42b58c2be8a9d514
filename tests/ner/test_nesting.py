"""Stacked tag layers (medkit_exp.ner.nesting): entity sets round-trip exactly while they fit the
layers; deeper ones are dropped and counted; the nested metrics count a flattened prediction as a miss."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medkit_exp.ner.documents import Entity
from medkit_exp.ner.nested_metrics import NestedMetricsComputer
from medkit_exp.ner.nesting import (
    NestingReport, assign_layers, assign_layers_inner_first, layered_tags, layered_tags_to_spans, layers_to_chunks, max_overlap, word_chunks,
)
from medkit_exp.ner.tagging import find_tag_errors, tokenize_words

LABELS = ["ANAT", "DISO", "PROC"]
NB_WORDS = 12
TEXT = " ".join(f"w{index}" for index in range(NB_WORDS))  # each word "wN" is 2 or 3 characters
WORDS = tokenize_words(TEXT)


def entity_on_words(label: str, first: int, end: int) -> Entity:
    return Entity(label, [(WORDS[first].start, WORDS[end - 1].end)])


chunks_strategy = st.lists(
    st.tuples(st.sampled_from(LABELS), st.integers(0, NB_WORDS - 1), st.integers(1, 5)).map(
        lambda t: (t[0], t[1], min(NB_WORDS, t[1] + t[2]))
    ),
    max_size=14,
    unique=True,  # a chunk given twice is one entity (tested apart)
)


def laminar(chunks: list[tuple[str, int, int]]) -> bool:
    """No two chunks cross: any two are disjoint or one holds the other."""
    return all(
        b[1] >= a[2] or a[1] >= b[2] or (a[1] <= b[1] and b[2] <= a[2]) or (b[1] <= a[1] and a[2] <= b[2])
        for i, a in enumerate(chunks) for b in chunks[i + 1 :]
    )


@pytest.mark.parametrize("order", ["outer_first", "inner_first"])
@pytest.mark.parametrize("scheme", ["iob2", "bilou"])
@settings(max_examples=150, deadline=None)
@given(chunks=chunks_strategy, depth=st.integers(1, 4))
def test_entity_sets_round_trip_or_count_what_is_too_deep(scheme, order, chunks, depth):
    entities = [entity_on_words(*chunk) for chunk in chunks]
    report = NestingReport()
    tags = layered_tags(WORDS, entities, depth, scheme, report, order)
    assert len(tags) == NB_WORDS and all(len(row) == depth for row in tags)
    for layer in range(depth):  # every layer is a valid tag sequence of the scheme
        assert find_tag_errors([row[layer] for row in tags], scheme) == []
    decoded = layers_to_chunks(tags, scheme)
    assert len(decoded) == len(set(decoded))
    assert set(decoded) <= set(chunks)  # never an entity that was not given
    # outermost first is optimal for any overlaps; innermost first for nesting (no crossing)
    if max_overlap(chunks) <= depth and (order == "outer_first" or laminar(chunks)):
        assert sorted(decoded) == sorted(chunks)
        assert report.too_deep_dropped == 0
    assert report.entities == len(chunks)
    assert report.tagged == len(decoded) and report.too_deep_dropped == len(chunks) - len(decoded)
    # the entities at character offsets: the same spans as given
    spans = layered_tags_to_spans(WORDS, tags, scheme, text=TEXT)
    assert Counter((e.label, e.start, e.end) for e in spans) == Counter(
        (e.label, e.start, e.end) for e in entities if (e.label, *word_range(e)) in set(decoded)
    )
    assert all(e.text == TEXT[e.start : e.end] for e in spans)


def word_range(entity: Entity) -> tuple[int, int]:
    first = next(i for i, w in enumerate(WORDS) if w.start == entity.start)
    end = next(i for i, w in enumerate(WORDS) if w.end == entity.end) + 1
    return first, end


@given(chunks=chunks_strategy)
@settings(max_examples=100, deadline=None)
def test_greedy_layers_use_as_many_layers_as_the_deepest_overlap(chunks):
    ordered = sorted(chunks, key=lambda c: (c[1], -c[2], c[0]))
    layers = assign_layers(ordered, len(ordered) + 1)
    assert max(layers, default=-1) + 1 == max_overlap(chunks)
    for i, (chunk, layer) in enumerate(zip(ordered, layers)):  # no two chunks of a layer overlap
        for other, other_layer in zip(ordered[i + 1 :], layers[i + 1 :]):
            if layer == other_layer:
                assert other[1] >= chunk[2]


def test_same_label_and_cross_label_nesting_layers():
    text = "cancers colorectaux du foie et biopsie"
    words = tokenize_words(text)
    entities = [
        Entity("DISO", [(0, 19)]), Entity("DISO", [(0, 7)]),  # same label nested
        Entity("DISO", [(0, 27)]),  # the outermost: cancers colorectaux du foie
        Entity("ANAT", [(23, 27)]),  # cross label inside it
        Entity("PROC", [(31, 38)]), Entity("DISO", [(31, 38)]),  # same words, two labels
    ]
    tags = layered_tags(words, entities, 3)
    assert [row[0] for row in tags] == ["B-DISO", "I-DISO", "I-DISO", "I-DISO", "O", "B-DISO"]  # outermost first
    assert [row[1] for row in tags] == ["B-DISO", "I-DISO", "O", "B-ANAT", "O", "B-PROC"]
    assert [row[2] for row in tags] == ["B-DISO", "O", "O", "O", "O", "O"]
    decoded = {(e.label, e.start, e.end) for e in layered_tags_to_spans(words, tags, text=text)}
    assert decoded == {(e.label, e.start, e.end) for e in entities}
    # with two layers the innermost "cancers" does not fit: dropped and counted
    report = NestingReport()
    two = layered_tags(words, entities, 2, report=report)
    assert report.too_deep_dropped == 1 and report.tagged == 5
    assert ("DISO", 0, 1) not in layers_to_chunks(two)


def test_duplicates_snapping_and_discontinuous_are_counted():
    text = "cancers colorectaux"
    words = tokenize_words(text)
    report = NestingReport()
    entities = [Entity("DISO", [(0, 19)]), Entity("DISO", [(0, 19)]), Entity("DISO", [(0, 5)]),
                Entity("DISO", [(0, 7), (8, 19)]), Entity("DISO", [(7, 8)])]
    tags = layered_tags(words, entities, 3, report=report)
    # the snapped (0, 5) -> "cancers"; the discontinuous filled -> a duplicate of (0, 19); (7, 8) covers no word
    assert (report.entities, report.tagged, report.duplicates_dropped, report.snapped, report.discontinuous_filled,
            report.empty_dropped) == (5, 2, 2, 1, 1, 1)
    assert layers_to_chunks(tags) == [("DISO", 0, 2), ("DISO", 0, 1)]


def test_word_chunks_order_is_outermost_first():
    words = tokenize_words("a b c d")
    chunks = word_chunks(words, [Entity("X", [(2, 3)]), Entity("Y", [(0, 7)]), Entity("X", [(0, 3)])], NestingReport())
    assert chunks == [("Y", 0, 4), ("X", 0, 2), ("X", 1, 2)]


def test_nested_metrics_count_a_flattened_prediction_as_a_miss():
    computer = NestedMetricsComputer(["O", "B-ANAT", "I-ANAT", "B-DISO", "I-DISO"], "iob2", nesting_depth=2)
    gold = [["B-DISO|O", "I-DISO|O", "I-DISO|B-ANAT"]]  # DISO over 3 words, ANAT inside
    flat = [["B-DISO|O", "I-DISO|O", "I-DISO|O"]]  # what keep_longest would predict
    scores = computer.compute({"references": gold, "predictions": flat})
    assert (scores["precision"], scores["recall"]) == (1.0, 0.5)
    assert scores["labels/ANAT/recall"] == 0.0 and computer.supports == {"ANAT": 1, "DISO": 1}
    exact = computer.compute({"references": gold, "predictions": gold})
    assert exact["f1"] == 1.0
    # the same chunk predicted in two layers is one entity (no extra false positive)
    twice = [["B-DISO|B-DISO", "I-DISO|I-DISO", "I-DISO|I-DISO"]]
    assert computer.compute({"references": gold, "predictions": twice})["precision"] == 1.0


def test_nested_metrics_prepare_batch_joins_the_layers():
    import torch

    computer = NestedMetricsComputer(["O", "B-X", "I-X"], "iob2", nesting_depth=2)
    logits = torch.full((1, 4, 6), -5.0)
    wanted = [(0, 0), (1, 1), (2, 0), (0, 0)]  # position -> (layer 0 tag, layer 1 tag)
    for position, (first, second) in enumerate(wanted):
        logits[0, position, first] = 5.0
        logits[0, position, 3 + second] = 5.0
    labels = torch.tensor([[[-100, -100], [1, 1], [2, 0], [-100, -100]]])
    mask = torch.tensor([[False, True, True, False]])
    prepared = computer.prepare_batch({"logits": logits}, {"labels": labels, "eval_mask": mask})
    assert prepared == {"references": [["B-X|B-X", "I-X|O"]], "predictions": [["B-X|B-X", "I-X|O"]]}
    computer.start_recording()
    assert computer.take_recording() is None  # nothing recorded: a nested report predicts again


@given(chunks=chunks_strategy)
@settings(max_examples=100, deadline=None)
def test_inner_first_layers_are_heights(chunks):
    """Innermost first: an entity holding no other is in layer 0 wherever it occurs; one holding
    others is above each of them; no two chunks of a layer overlap."""
    layers = assign_layers_inner_first(chunks, len(chunks) + 1, NB_WORDS)
    assert None not in layers
    for chunk, layer in zip(chunks, layers):
        inside = [other_layer for other, other_layer in zip(chunks, layers)
                  if other != chunk and chunk[1] <= other[1] and other[2] <= chunk[2] and other[2] - other[1] < chunk[2] - chunk[1]]
        if not any(o[1] < chunk[2] and chunk[1] < o[2] for o in chunks if o != chunk):
            assert layer == 0
        assert all(layer > other_layer for other_layer in inside)
        for other, other_layer in zip(chunks, layers):
            if other != chunk and other_layer == layer:
                assert other[2] <= chunk[1] or chunk[2] <= other[1]


def test_inner_first_keeps_an_entity_in_the_same_layer_alone_or_nested():
    words = tokenize_words("cancers colorectaux et cancers")
    entities = [Entity("DISO", [(0, 19)]), Entity("DISO", [(0, 7)]), Entity("DISO", [(23, 30)])]
    assert layered_tags(words, entities, 2, order="inner_first") == [
        ["B-DISO", "B-DISO"], ["O", "I-DISO"], ["O", "O"], ["B-DISO", "O"]]
    assert layered_tags(words, entities, 2, order="outer_first") == [
        ["B-DISO", "B-DISO"], ["I-DISO", "O"], ["O", "O"], ["B-DISO", "O"]]
