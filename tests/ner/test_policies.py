"""Label, discontinuity and overlap policies: explicit, counted, logged, non-mutating."""

from __future__ import annotations

import copy
import logging

import pytest

from medkit_exp.errors import ConfigError, DataError
from medkit_exp.ner.documents import Entity, TextDocument
from medkit_exp.ner.policies import (
    NCBI_DISEASE_LABELS,
    PolicyReport,
    apply_policies,
    flatten_documents,
    resolve_overlaps,
)

TEXT = "Traitement des métastases hépatiques de cancers colorectaux"
#       0         1         2         3         4         5
#       0123456789012345678901234567890123456789012345678901234567


def nested_doc() -> TextDocument:
    return TextDocument(
        TEXT,
        [
            Entity("PROC", [(0, 10)], id="T1"),
            Entity("DISO", [(15, 36)], id="T2"),  # métastases hépatiques
            Entity("ANAT", [(26, 36)], id="T3"),  # hépatiques, nested in T2
            Entity("DISO", [(40, 59)], id="T4"),  # cancers colorectaux
            Entity("DISO", [(40, 47)], id="T5"),  # cancers, nested in T4
            Entity("CHEM", [(40, 47)], id="T6"),  # same span, other label
        ],
        doc_id="quaero-1",
        metadata={"path": "q/1.ann"},
    )


def ids(doc):
    return [e.id for e in doc.entities]


def test_keep_longest_keeps_outer_entities_and_counts_the_rest(caplog):
    with caplog.at_level(logging.INFO, logger="medkit_exp.ner.policies"):
        (doc,), report = apply_policies([nested_doc()], overlaps="keep_longest")
    assert ids(doc) == ["T1", "T2", "T4"]
    assert report.overlaps_dropped == 3 and report.entities_in == 6 and report.entities_out == 3
    assert "overlapping dropped 3 (e.g. quaero-1: T3 ANAT [26-36] 'hépatiques' under T2 DISO" in caplog.text


def test_keep_first_keeps_the_earliest_then_the_first_listed():
    doc = TextDocument(
        "abcdefghij", [Entity("X", [(3, 9)], id="a"), Entity("Y", [(1, 4)], id="b"), Entity("Z", [(5, 6)], id="c")]
    )
    (kept,), report = apply_policies([doc], overlaps="keep_first")
    assert ids(kept) == ["b", "c"] and report.overlaps_dropped == 1  # c does not touch b
    (longest,), _ = apply_policies([doc], overlaps="keep_longest")
    assert ids(longest) == ["a"]


def test_overlap_error_names_document_and_both_entities():
    with pytest.raises(DataError) as caught:
        apply_policies([nested_doc()], overlaps="error")
    message = str(caught.value)
    assert message.startswith("q/1.ann: document 'quaero-1'")
    assert "T2 DISO [15-36] 'métastases hépatiques'" in message and "T3 ANAT [26-36] 'hépatiques'" in message


def test_keep_keeps_overlaps():
    (doc,), report = apply_policies([nested_doc()], overlaps="keep")
    assert len(doc.entities) == 6 and report.overlaps_dropped == 0


def test_discontinuous_fill_or_drop_counted():
    doc = TextDocument(
        "Sécrétion d' oestrone , d' oestradiol",
        [Entity("PHYS", [(0, 9), (24, 37)], id="T1"), Entity("CHEM", [(27, 37)], id="T2")],
    )
    (filled,), report = apply_policies([doc], discontinuous="fill", overlaps="keep")
    assert filled.entities[0].spans == [(0, 37)] and filled.entities[0].text == doc.text[:37]
    assert report.discontinuous_filled == 1
    (dropped,), report = apply_policies([doc], discontinuous="drop")
    assert ids(dropped) == ["T2"] and report.discontinuous_dropped == 1
    (kept,), _ = apply_policies([doc], discontinuous="keep", overlaps="keep")
    assert kept.entities[0].spans == [(0, 9), (24, 37)]
    # Filled, T1 covers T2: keep_longest then drops T2 (overlap checked after filling).
    (flat,), report = apply_policies([doc], discontinuous="fill")
    assert ids(flat) == ["T1"] and report.overlaps_dropped == 1


def test_label_map_for_ncbi_disease():
    labels = ["SpecificDisease", "DiseaseClass", "Modifier", "CompositeMention", "Modifier"]
    doc = TextDocument("a b c d e", [Entity(label, [(2 * i, 2 * i + 1)]) for i, label in enumerate(labels)])
    (new,), report = apply_policies([doc], label_map=NCBI_DISEASE_LABELS, labels=["Disease"])
    assert [e.label for e in new.entities] == ["Disease"] * 5
    assert report.remapped["Modifier->Disease"] == 2 and sum(report.remapped.values()) == 5


def test_unknown_labels_error_lists_them_all_or_are_dropped_and_counted():
    docs = [nested_doc(), nested_doc()]
    with pytest.raises(DataError, match=r"unknown entity labels: 'ANAT' \(2\), 'CHEM' \(2\), 'PROC' \(2\)"):
        apply_policies(docs, labels=["DISO"])
    new, report = apply_policies(docs, labels=["DISO"], unknown_labels="drop", overlaps="keep")
    assert ids(new[0]) == ["T2", "T4", "T5"] and report.unknown_labels == {"ANAT": 2, "CHEM": 2, "PROC": 2}
    new, report = apply_policies(docs, labels=["DISO"], drop_labels=["ANAT", "CHEM", "PROC"], overlaps="keep")
    assert ids(new[0]) == ["T2", "T4", "T5"] and report.dropped_labels == {"ANAT": 2, "CHEM": 2, "PROC": 2}
    assert not report.unknown_labels


def test_input_documents_are_not_changed():
    docs = [nested_doc()]
    before = copy.deepcopy(docs)
    new, _ = apply_policies(docs, label_map={"DISO": "Disorder"}, discontinuous="fill")
    new[0].entities[0].attrs["x"] = 1
    new[0].metadata["y"] = 2
    assert docs == before and new[0].entities[1].label == "Disorder"


def test_bad_options_are_config_errors():
    for option in ({"overlaps": "longest"}, {"discontinuous": "merge"}, {"unknown_labels": "keep"}):
        with pytest.raises(ConfigError):
            apply_policies([nested_doc()], **option)


def test_resolve_overlaps_on_fragments_not_extents():
    # The gap of a discontinuous entity is not part of it: an entity inside the gap does not overlap.
    doc = TextDocument("abc def ghi", [Entity("X", [(0, 3), (8, 11)]), Entity("Y", [(4, 7)])])
    assert len(resolve_overlaps(doc, "error", PolicyReport())) == 2


def test_keep_all_is_no_longer_a_choice():
    with pytest.raises(ConfigError, match="overlaps.*'keep'.*got 'keep_all'"):
        apply_policies([nested_doc()], overlaps="keep_all")


def test_keep_annotated_holds_the_entities_before_flattening():
    doc = nested_doc()
    doc.entities.append(Entity("ANAT", [(15, 25), (37, 39)], id="T7"))  # discontinuous
    (flat,), report = apply_policies([doc], label_map={"CHEM": "DRUG"}, labels=["PROC", "DISO", "ANAT", "DRUG"],
                                     keep_annotated=True)
    assert ids(flat) == ["T1", "T4", "T7"]  # T7 filled (15-39) covers T2 and T3: the longest
    assert [e.id for e in flat.annotated] == ["T1", "T2", "T3", "T4", "T5", "T6", "T7"]
    assert [e.label for e in flat.annotated][-2:] == ["DRUG", "ANAT"]  # label policies applied to both
    assert flat.annotated[-1].spans == [(15, 25), (37, 39)] and flat.annotated[-1].text == "métastases de"
    assert report.annotated_kept == 7 and report.entities_out == 3 and report.discontinuous_filled == 1
    assert report.overlaps_dropped == 4
    assert flat.annotated_entities is flat.annotated
    (plain,), _ = apply_policies([doc])
    assert plain.annotated is None and plain.annotated_entities is plain.entities


def test_flatten_documents_keeps_sub_documents_and_copies():
    from medkit_exp.ner.splitting import split_document

    doc = TextDocument("Bien. " + TEXT, [shift(e, 6) for e in nested_doc().entities], doc_id="d")
    subs = split_document(doc)
    report = PolicyReport()
    flat = flatten_documents(subs, overlaps="keep_longest", report=report)
    assert [type(d).__name__ for d in flat] == ["SubDocument", "SubDocument"]
    assert [d.offset for d in flat] == [0, 6] and [d.doc_id for d in flat] == ["d#0", "d#1"]
    assert ids(flat[1]) == ["T1", "T2", "T4"] and len(flat[1].annotated) == 6
    assert report.overlaps_dropped == 3 and report.entities_out == 3 and report.annotated_kept == 6
    flat[1].annotated[0].attrs["x"] = 1
    assert subs[1].entities[0].attrs == {}  # the input is not changed
    assert subs[1].annotated is None


def shift(entity: Entity, delta: int) -> Entity:
    from medkit_exp.ner.splitting import shift_entity

    return shift_entity(entity, delta)
