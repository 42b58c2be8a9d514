"""Sentence and window splitting with offsets, entity-safe cuts, mapping predictions back."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medkit_exp.errors import ConfigError, DataError
from medkit_exp.ner.documents import Entity, TextDocument
from medkit_exp.ner.splitting import (
    SplitReport,
    SubDocument,
    merge_predictions,
    shift_entity,
    split_document,
    split_documents,
    split_sentences,
)


def sentences(text):
    return [text[start:end] for start, end in split_sentences(text)]


def test_english_sentences_with_abbreviations_decimals_and_initials():
    text = (
        "Dr. Smith saw the patient, i.e. a 45-year-old man. BP was 120/80 and temp 38.5 C. J. Doe agreed! "
        "Why? 3 doses given."
    )
    assert sentences(text) == [
        "Dr. Smith saw the patient, i.e. a 45-year-old man.",
        "BP was 120/80 and temp 38.5 C. J. Doe agreed!",
        "Why?",
        "3 doses given.",
    ]


def test_french_sentences_with_newlines_quotes_and_accents():
    text = (
        "Le patient (M. Dupont) présente une HTA. « Pas de fièvre », dit-il.\n  Écho : normale.\r\n"
        "À revoir dans 3 mois... Etc."
    )
    assert sentences(text) == [
        "Le patient (M. Dupont) présente une HTA.",
        "« Pas de fièvre », dit-il.",
        "Écho : normale.",
        "À revoir dans 3 mois...",
        "Etc.",
    ]


def test_no_cut_before_a_lower_case_word_and_empty_lines_dropped():
    assert sentences("Dose : 2 cp. par jour.\n\n\nFin") == ["Dose : 2 cp. par jour.", "Fin"]
    assert sentences("   ") == []


def doc_with(text, *pieces, doc_id="d"):
    entities = []
    for label, piece in pieces:
        start = text.index(piece)
        entities.append(Entity(label, [(start, start + len(piece))]))
    return TextDocument(text, entities, doc_id=doc_id)


def test_sentence_split_shifts_entities_and_keeps_offsets():
    doc = doc_with(
        "Fièvre aiguë. Toux sèche depuis hier.\nPas de rhume.",
        ("DISO", "Fièvre aiguë"),
        ("DISO", "Toux sèche"),
        ("DISO", "rhume"),
    )
    subs = split_document(doc)
    assert [sub.text for sub in subs] == ["Fièvre aiguë.", "Toux sèche depuis hier.", "Pas de rhume."]
    for sub in subs:
        assert isinstance(sub, SubDocument) and sub.parent_id == "d"
        assert doc.text[sub.offset : sub.offset + len(sub.text)] == sub.text
        for entity in sub.entities:
            assert sub.text[entity.start : entity.end] == entity.text
    assert [sub.doc_id for sub in subs] == ["d#0", "d#1", "d#2"]
    assert [e.spans for e in subs[1].entities] == [[(0, 10)]]


def test_sentences_an_entity_runs_across_stay_together():
    doc = doc_with("Insuffisance. Rénale aiguë ici. Fin.", ("DISO", "Insuffisance. Rénale aiguë"))
    report = SplitReport()
    subs = split_document(doc, report=report)
    assert [sub.text for sub in subs] == ["Insuffisance. Rénale aiguë ici.", "Fin."]
    assert report.merged_for_entities == 1 and report.entities_dropped == 0


def test_windows_respect_max_chars_and_do_not_cut_entities():
    text = "aaaa bbbb cccc dddd eeee ffff gggg"
    doc = doc_with(text, ("X", "cccc dddd eeee"))
    report = SplitReport()
    subs = split_document(doc, mode="window", max_chars=16, report=report)
    # The first window would end at 16, inside the entity: it ends before the entity instead.
    assert [sub.text for sub in subs] == ["aaaa bbbb", "cccc dddd eeee", "ffff gggg"]
    assert [sub.offset for sub in subs] == [0, 10, 25]
    assert [e.spans for e in subs[1].entities] == [[(0, 14)]]
    assert report.cuts_moved == 1 and report.entities_dropped == 0


def test_entity_longer_than_a_window_is_dropped_and_counted(caplog):
    doc = doc_with("aaaa bbbbbbbbbbbbbbbbbbbbbbbb cc", ("X", "bbbbbbbbbbbbbbbbbbbbbbbb"))
    subs, report = split_documents([doc], mode="window", max_chars=10)
    assert report.entities_dropped == 1 and all(not sub.entities for sub in subs)
    assert all(len(sub.text) <= 10 for sub in subs)
    assert "is cut by a split" in caplog.text


def test_split_options_are_checked():
    doc = TextDocument("abc")
    with pytest.raises(ConfigError, match="max_chars"):
        split_document(doc, mode="window")
    with pytest.raises(ConfigError, match="max_chars"):
        split_document(doc, max_chars=0)
    with pytest.raises(ConfigError, match="mode"):
        split_document(doc, mode="paragraph")


def random_document(rng: random.Random, index: int) -> TextDocument:
    words = ["Fièvre", "toux", "l'hypertension", "Dr.", "HTA", "2.5", "mg", "aiguë", "patient"]
    parts, entities, offset = [], [], 0
    for _ in range(rng.randint(5, 60)):
        word = rng.choice(words) + rng.choice(["", "", ".", ",", ".\n"])
        if rng.random() < 0.3 and (not entities or entities[-1].end < offset):
            entities.append(Entity("X", [(offset, offset + len(word.rstrip(".,\n")) or offset + 1)]))
        parts.append(word)
        offset += len(word) + 1
    return TextDocument(" ".join(parts), entities, doc_id=f"r{index}")


@pytest.mark.parametrize(
    "options", [{"mode": "sentence"}, {"mode": "window", "max_chars": 40}, {"mode": "sentence", "max_chars": 25}]
)
def test_split_then_merge_gives_back_every_entity_kept(options):
    rng = random.Random(7)
    docs = [random_document(rng, i) for i in range(40)]
    subs, report = split_documents(docs, **options)
    merged = merge_predictions(subs, docs)
    assert report.documents == 40 and report.sub_documents == len(subs)
    kept = sum(len(doc.entities) for doc in merged)
    assert kept + report.entities_dropped == sum(len(doc.entities) for doc in docs)
    for doc, back in zip(docs, merged):
        assert set(map(repr, back.entities)) <= set(map(repr, doc.entities))
        assert back.text == doc.text and back.doc_id == doc.doc_id
    if "max_chars" in options:
        assert all(len(sub.text) <= options["max_chars"] for sub in subs)


def test_merge_predictions_maps_sub_document_entities_to_parent_offsets():
    doc = TextDocument("Pas de fièvre. Toux sèche.", doc_id="p", metadata={"path": "x"})
    subs = split_document(doc)
    predicted = [sub.with_entities([Entity("DISO", [(0, 4)], score=0.9)]) if sub.offset else sub for sub in subs]
    predicted = [
        SubDocument(p.text, p.entities, p.doc_id, p.metadata, [], offset=s.offset, parent_id=s.parent_id)
        for p, s in zip(predicted, subs)
    ]
    (merged,) = merge_predictions(predicted, [doc])  # found by parent_id
    assert [(e.spans, e.text, e.score) for e in merged.entities] == [([(15, 19)], "Toux", 0.9)]
    broken = SubDocument("Toux", [], "p#1", offset=0, parent_id="p")
    with pytest.raises(DataError, match="does not match its parent"):
        merge_predictions([broken], [doc])
    with pytest.raises(DataError, match="has no parent"):
        merge_predictions([SubDocument("x", parent_id="other")], [doc])


def test_shift_entity_copies():
    entity = Entity("X", [(2, 5), (7, 9)], text="abc de", attrs={"a": 1})
    moved = shift_entity(entity, 10)
    moved.attrs["a"] = 2
    assert moved.spans == [(12, 15), (17, 19)] and entity.attrs == {"a": 1} and moved.text == "abc de"


def test_nested_and_discontinuous_entities_are_never_cut_by_a_sentence_split():
    text = "Cancer du colon. Droit opéré. Fin. Sécrétion accrue. Ici d' oestradiol. Suite."
    outer = text.index("Cancer du colon. Droit")
    inner = text.index("colon. Droit")
    gap_start, gap_end = text.index("Sécrétion"), text.index("oestradiol")
    doc = TextDocument(text, [
        Entity("DISO", [(outer, outer + len("Cancer du colon. Droit"))], id="T1"),
        Entity("ANAT", [(inner, inner + len("colon. Droit"))], id="T2"),  # same boundary, nested
        Entity("DISO", [(outer, outer + len("Cancer"))], id="T3"),  # same-label nesting
        Entity("PHYS", [(gap_start, gap_start + 9), (gap_end, gap_end + 10)], id="T4"),  # across two sentences
    ], doc_id="d")
    report = SplitReport()
    subs = split_document(doc, report=report)
    assert [sub.text for sub in subs] == [
        "Cancer du colon. Droit opéré.", "Fin.", "Sécrétion accrue. Ici d' oestradiol.", "Suite."
    ]
    assert report.merged_for_entities == 2 and report.entities_dropped == 0
    assert [e.id for e in subs[0].entities] == ["T1", "T2", "T3"] and [e.id for e in subs[2].entities] == ["T4"]
    for sub in subs:
        for entity in sub.entities:
            assert sub.covered_text(entity) == doc.covered_text(next(e for e in doc.entities if e.id == entity.id))
    assert subs[2].entities[0].spans == [(0, 9), (gap_end - subs[2].offset, gap_end - subs[2].offset + 10)]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_a_sentence_split_keeps_every_overlapping_entity_whole(data):
    """Random overlapping (nested, crossing) and discontinuous entities over sentences: every one
    lands whole in one sub-document, with the same covered text."""
    sentences_ = data.draw(st.lists(st.sampled_from(["Fièvre aiguë.", "Toux.", "Cancer du colon.", "Dr. Martin."]),
                                    min_size=1, max_size=6))
    text = " ".join(sentences_)
    bounds = st.integers(0, len(text) - 1)
    entities = []
    for index in range(data.draw(st.integers(0, 6))):
        starts = sorted(data.draw(st.lists(bounds, min_size=1, max_size=2, unique=True)))
        spans = [(start, min(len(text), start + data.draw(st.integers(1, 8)))) for start in starts]
        if len(spans) == 2 and spans[0][1] >= spans[1][0]:
            spans = spans[:1]
        entities.append(Entity("X", spans, id=f"T{index}"))
    doc = TextDocument(text, entities, doc_id="d")
    subs = split_document(doc)
    placed = {e.id: (sub, e) for sub in subs for e in sub.entities}
    assert sorted(placed) == sorted(e.id for e in entities)
    for entity in entities:
        sub, moved = placed[entity.id]
        assert [(s + sub.offset, e + sub.offset) for s, e in moved.spans] == entity.spans


def test_the_entities_as_annotated_are_split_with_the_document():
    text = "Cancer du colon. Droit opéré. Fin."
    outer, inner = Entity("DISO", [(0, 15)], id="T1"), Entity("ANAT", [(10, 22)], id="T2")  # T2 crosses a boundary
    doc = TextDocument(text, [outer], doc_id="d", annotated=[outer, inner])
    report = SplitReport()
    subs = split_document(doc, report=report)
    assert [sub.text for sub in subs] == ["Cancer du colon. Droit opéré.", "Fin."]  # kept whole for T2
    assert [e.id for e in subs[0].entities] == ["T1"] and [e.id for e in subs[0].annotated] == ["T1", "T2"]
    assert subs[1].annotated == [] and subs[1].annotated_entities == []
    windows, report = split_documents([doc], mode="window", max_chars=12)
    assert report.annotated_dropped == 2 and report.entities_dropped == 1  # longer than a window: cut, counted
    plain = split_document(TextDocument(text, [outer], doc_id="p"))
    assert all(sub.annotated is None for sub in plain)
