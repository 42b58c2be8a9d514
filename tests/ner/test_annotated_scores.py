"""Scores against the documents as annotated, and the ceiling of a tagger's representation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medkit_exp.errors import DataError
from medkit_exp.ner.annotated_scores import annotated_scores, ceiling
from medkit_exp.ner.documents import Entity, TextDocument
from medkit_exp.ner.metrics import evaluate_documents
from medkit_exp.ner.policies import flatten_documents

TEXT = "Cancers colorectaux et métastases hépatiques. Sécrétion d' oestrone , d' oestradiol accrue. Pas de fièvre."


def span(piece: str) -> tuple[int, int]:
    start = TEXT.index(piece)
    return start, start + len(piece)


def annotated_entities() -> list[Entity]:
    return [
        Entity("DISO", [span("Cancers colorectaux")], id="T1"),
        Entity("DISO", [span("Cancers")], id="T2"),  # same-label nesting
        Entity("DISO", [span("métastases hépatiques")], id="T3"),
        Entity("ANAT", [span("hépatiques")], id="T4"),  # cross-label nesting
        Entity("PHYS", [span("Sécrétion"), span("oestradiol")], id="T5"),  # discontinuous
        Entity("CHEM", [span("oestradiol")], id="T6"),
        Entity("DISO", [span("fièvre")], id="T7"),
    ]


def gold_document(discontinuous: str = "fill") -> TextDocument:
    (doc,) = flatten_documents([TextDocument(TEXT, annotated_entities(), doc_id="d1")],
                               discontinuous=discontinuous, overlaps="keep_longest")
    return doc


def predicted(*entities: Entity) -> TextDocument:
    return TextDocument(TEXT, list(entities), doc_id="d1")


def test_a_flattened_prediction_is_a_miss_against_the_annotated_gold():
    gold = TextDocument("cancers colorectaux", [Entity("DISO", [(0, 19)])], doc_id="d",
                        annotated=[Entity("DISO", [(0, 19)]), Entity("DISO", [(0, 7)])])
    pred = TextDocument("cancers colorectaux", [Entity("DISO", [(0, 19)])], doc_id="d")
    assert evaluate_documents([gold], [pred])["recall"] == 1.0  # the flattened gold: all found
    scores = annotated_scores([gold], [pred])
    assert scores["recall"] == 0.5 and scores["precision"] == 1.0 and scores["f1"] == pytest.approx(2 / 3)
    assert scores["labels/DISO/support"] == 2.0 and scores["labels/DISO/recall"] == 0.5


def test_the_flat_prediction_of_a_perfect_flat_tagger_against_the_annotated_gold():
    gold = gold_document()
    perfect_flat = predicted(*[Entity(e.label, e.spans) for e in gold.entities])
    assert evaluate_documents([gold], [perfect_flat])["f1"] == 1.0
    scores = annotated_scores([gold], [perfect_flat])
    # T1, T3, T7 found; the filled T5 is not the discontinuous one: a miss and a spurious entity
    assert scores["recall"] == 3 / 7 and scores["precision"] == 3 / 4
    assert scores["labels/DISO/recall"] == 3 / 4 and scores["labels/PHYS/recall"] == 0.0
    assert scores["labels/ANAT/support"] == 1.0 and scores["labels/ANAT/recall"] == 0.0


def test_a_discontinuous_gold_entity_is_found_only_by_the_same_fragments():
    gold = gold_document()
    phys = lambda scores: scores["labels/PHYS/recall"]  # noqa: E731
    filled = Entity("PHYS", [(span("Sécrétion")[0], span("oestradiol")[1])])
    assert phys(annotated_scores([gold], [predicted(filled)])) == 0.0
    assert phys(annotated_scores([gold], [predicted(Entity("PHYS", [span("Sécrétion")]))])) == 0.0
    assert phys(annotated_scores([gold], [predicted(Entity("PHYS", [span("oestradiol"), span("Sécrétion")]))])) == 1.0
    assert phys(annotated_scores([gold], [predicted(Entity("CHEM", [span("Sécrétion"), span("oestradiol")]))])) == 0.0


def test_documents_pair_by_id_and_a_different_text_is_an_error():
    first, second = gold_document(), TextDocument("Pas de fièvre.", [Entity("DISO", [(7, 13)])], doc_id="d2")
    scores = annotated_scores([first, second], [TextDocument("Pas de fièvre.", [Entity("DISO", [(7, 13)])], doc_id="d2"),
                                                predicted()])
    assert scores["recall"] == 1 / 8 and scores["precision"] == 1.0
    with pytest.raises(DataError, match="text differs"):
        annotated_scores([first], [TextDocument("other", doc_id="d1")])
    with pytest.raises(DataError, match="do not pair by id"):
        annotated_scores([first], [TextDocument(TEXT, doc_id="x")])


entity_sets = st.lists(
    st.tuples(st.sampled_from(["A", "B"]), st.integers(0, 20), st.integers(1, 5)), max_size=6
).map(lambda items: [Entity(label, [(start, start + length)]) for label, start, length in items])


@settings(max_examples=50, deadline=None)
@given(entity_sets, entity_sets)
def test_without_flattening_the_scores_equal_evaluate_documents(gold_entities, pred_entities):
    text = "x" * 30
    gold, pred = TextDocument(text, gold_entities, doc_id="g"), TextDocument(text, pred_entities, doc_id="g")
    assert annotated_scores([gold], [pred]) == evaluate_documents([gold], [pred])


@pytest.fixture(scope="module")
def flat_tagger(tiny_bert_dir):
    from medkit_exp.ner.tagger import HFEntityMatcherTrainable

    return HFEntityMatcherTrainable(str(tiny_bert_dir), labels=["ANAT", "CHEM", "DISO", "PHYS"], tagging_scheme="iob2")


def test_ceiling_of_a_flat_tagger_on_nested_documents(flat_tagger):
    scores = ceiling(flat_tagger, [gold_document("fill")])
    # expressible: T1, T3 (the outer ones kept by keep_longest) and T7; not T2, T4 (nested),
    # T5 (filled), T6 (dropped under the filled T5)
    assert scores["ceiling"] == 3 / 7 and scores["expressible"] == 3.0 and scores["annotated"] == 7.0
    assert scores["labels/DISO/ceiling"] == 3 / 4 and scores["labels/ANAT/ceiling"] == 0.0
    assert scores["labels/CHEM/ceiling"] == 0.0 and scores["labels/PHYS/ceiling"] == 0.0
    dropped = ceiling(flat_tagger, [gold_document("drop")])  # T5 dropped: T6 is left and expressible
    assert dropped["ceiling"] == 4 / 7 and dropped["labels/CHEM/ceiling"] == 1.0


def test_ceiling_counts_only_the_tagger_labels_and_snapped_entities_are_misses(flat_tagger):
    doc = TextDocument("hypertension sévère", [Entity("DISO", [(0, 5)]), Entity("LIVB", [(13, 19)])], doc_id="x")
    scores = ceiling(flat_tagger, [doc])  # "hyper": inside a word, snapped to it, not the gold span
    assert scores["annotated"] == 1.0 and scores["ceiling"] == 0.0 and "labels/LIVB/ceiling" not in scores


def test_ceiling_uses_a_tagger_own_representation():
    class Nested:
        labels = ["ANAT", "CHEM", "DISO", "PHYS"]

        def expressible_entities(self, document):  # every continuous entity as annotated
            return [e for e in document.annotated_entities if not e.is_discontinuous]

    scores = ceiling(Nested(), [gold_document()])
    assert scores["ceiling"] == 6 / 7 and scores["labels/PHYS/ceiling"] == 0.0 and scores["labels/ANAT/ceiling"] == 1.0
    assert ceiling(Nested(), [TextDocument("rien")]) == {"ceiling": 0.0, "expressible": 0.0, "annotated": 0.0}


QUAERO_LABELS = ["ANAT", "CHEM", "DEVI", "DISO", "GEOG", "LIVB", "OBJC", "PHEN", "PHYS", "PROC"]


@pytest.mark.slow
def test_flat_keep_longest_ceiling_on_the_quaero_test_split(tiny_bert_dir):
    """The issue's number: a flat tagger (keep_longest, fill) can express about 77% of the QUAERO
    test entities as annotated."""
    from medkit_exp.ner.data import NERDataConfig, load_corpus
    from medkit_exp.ner.tagger import HFEntityMatcherTrainable
    from tests.ner.conftest import real_data_dir, require_real_data

    require_real_data("quaero_frenchmed", "corpus", "test")
    config = NERDataConfig(name="quaero_frenchmed", path="quaero_frenchmed/corpus", data_dir=str(real_data_dir()),
                           test="test", labels=QUAERO_LABELS, nested="keep_longest", discontinuous="fill")
    documents = load_corpus(config, only=["test"])["test"]
    tagger = HFEntityMatcherTrainable(str(tiny_bert_dir), labels=QUAERO_LABELS, tagging_scheme="iob2")
    scores = ceiling(tagger, documents)
    print(f"QUAERO test, flat keep_longest + fill: ceiling {scores['ceiling']:.4f} "
          f"({int(scores['expressible'])} of {int(scores['annotated'])})")
    assert scores["annotated"] == sum(len(doc.annotated_entities) for doc in documents)
    assert 0.70 <= scores["ceiling"] <= 0.85
