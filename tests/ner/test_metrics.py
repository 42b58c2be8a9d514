"""Entity metrics: the MetricsComputer against seqeval's strict mode, and document evaluation."""

from __future__ import annotations

import math
import random
from collections import Counter
import warnings

import pytest
import torch

from medkit_exp.errors import ConfigError, DataError
from medkit_exp.ner.documents import Entity, TextDocument
from medkit_exp.ner.metrics import EntityMetricsComputer, entity_scores, evaluate_documents, label_table
from medkit_exp.ner.tagging import make_tag_labels
from medkit_exp.training.batch import BatchData
from medkit_exp.training.metrics import MetricsComputer

SCHEMES = [("iob2", "IOB2"), ("bilou", "BILOU"), ("bioes", "IOBES")]


def seqeval_report(refs, preds, seqeval_scheme):
    seqeval_metrics = pytest.importorskip("seqeval.metrics", reason="seqeval is a test-only dependency")
    import seqeval.scheme

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined-metric warnings: both sides count them as 0
        return seqeval_metrics.classification_report(
            refs,
            preds,
            mode="strict",
            scheme=getattr(seqeval.scheme, seqeval_scheme),
            output_dict=True,
            zero_division=0,
        )


def assert_equals_seqeval(ours, report, supports):
    """Bit-for-bit equality with seqeval's classification report (macro nan: no entity at all)."""
    for name, row in report.items():
        values = (row["precision"], row["recall"], row["f1-score"])
        if name == "micro avg":
            assert (ours["precision"], ours["recall"], ours["f1"]) == values
        elif name == "macro avg":
            if math.isnan(row["precision"]):
                assert (ours["macro_precision"], ours["macro_recall"], ours["macro_f1"]) == (0.0, 0.0, 0.0)
            else:
                assert (ours["macro_precision"], ours["macro_recall"], ours["macro_f1"]) == values
        elif name != "weighted avg":
            per_label = (ours[f"labels/{name}/precision"], ours[f"labels/{name}/recall"], ours[f"labels/{name}/f1"])
            assert per_label == values, name
            assert supports[name] == row["support"], name


HAND_WRITTEN = {
    "iob2": (
        [["B-A", "I-A", "O", "B-B"], ["O", "B-A", "I-A", "I-A"], ["B-B", "I-B"]],
        [["B-A", "I-A", "O", "I-B"], ["O", "I-A", "I-A", "I-A"], ["B-B", "B-B"]],  # I- after O twice
    ),
    "bilou": (
        [["B-A", "L-A", "O", "U-B"], ["U-A", "B-B", "I-B", "L-B"]],
        [["B-A", "I-A", "O", "U-B"], ["U-A", "B-B", "L-B", "L-B"]],  # unclosed B-A I-A
    ),
    "bioes": (
        [["B-A", "E-A", "S-B"], ["O", "S-A", "O"]],
        [["B-A", "E-A", "E-A"], ["I-A", "E-A", "O"]],
    ),
}


@pytest.mark.parametrize(("scheme", "seqeval_scheme"), SCHEMES)
def test_hand_written_sequences_equal_seqeval(scheme, seqeval_scheme):
    refs, preds = HAND_WRITTEN[scheme]
    computer = EntityMetricsComputer(make_tag_labels(["A", "B", "C"], scheme), scheme)
    ours = computer.compute({"references": refs, "predictions": preds})
    assert_equals_seqeval(ours, seqeval_report(refs, preds, seqeval_scheme), computer.supports)
    assert computer.supports["C"] == 0 and ours["labels/C/f1"] == 0.0  # a label of id2label never seen


def test_hand_written_iob2_values():
    refs, preds = HAND_WRITTEN["iob2"]
    computer = EntityMetricsComputer(make_tag_labels(["A", "B"]))
    ours = computer.compute({"references": refs, "predictions": preds})
    # gold: A(0,2) B(3,4) A(5,8) B(0,2); predicted: A(0,2) B(0,1) B(1,2) -> 1 hit of 3 / 4
    assert (ours["precision"], ours["recall"], computer.supports) == (1 / 3, 1 / 4, {"A": 2, "B": 2})


@pytest.mark.parametrize(("scheme", "seqeval_scheme"), SCHEMES)
def test_random_sequences_equal_seqeval_bit_for_bit(scheme, seqeval_scheme):
    rng = random.Random(scheme)
    for _ in range(150):
        labels = [f"L{i}" for i in range(rng.randint(1, 11))]  # > 8 labels: numpy's pairwise sum path
        tags = make_tag_labels(labels, scheme)
        refs, preds = [], []
        for _ in range(rng.randint(1, 8)):
            length = rng.randint(0, 14)
            ref = [rng.choice(tags) if rng.random() < 0.5 else "O" for _ in range(length)]
            pred = [tag if rng.random() < 0.7 else rng.choice(tags) for tag in ref]
            refs.append(ref)
            preds.append(pred)
        computer = EntityMetricsComputer(tags, scheme)
        ours = computer.compute({"references": refs, "predictions": preds})
        assert_equals_seqeval(ours, seqeval_report(refs, preds, seqeval_scheme), computer.supports)


def test_prepare_batch_uses_labels_mask_or_eval_mask():
    id2label = {0: "O", 1: "B-X", 2: "I-X"}
    computer = EntityMetricsComputer(id2label)
    assert isinstance(computer, MetricsComputer)
    logits = torch.full((2, 4, 3), -1.0)
    predicted = [[0, 1, 2, 2], [1, 0, 0, 0]]
    for b, row in enumerate(predicted):
        for t, tag in enumerate(row):
            logits[b, t, tag] = 5.0
    labels = torch.tensor([[-100, 1, 2, -100], [1, 0, -100, -100]])
    data = computer.prepare_batch(BatchData(logits=logits), BatchData(labels=labels))
    assert data == {"references": [["B-X", "I-X"], ["B-X", "O"]], "predictions": [["B-X", "I-X"], ["B-X", "O"]]}
    eval_mask = torch.tensor([[False, True, False, False], [True, True, False, False]])
    data = computer.prepare_batch({"logits": logits}, {"labels": labels, "eval_mask": eval_mask})
    assert data == {"references": [["B-X"], ["B-X", "O"]], "predictions": [["B-X"], ["B-X", "O"]]}
    with pytest.raises(ValueError, match="label is -100"):
        computer.prepare_batch({"logits": logits}, {"labels": labels, "eval_mask": torch.ones(2, 4, dtype=torch.bool)})
    with pytest.raises(ValueError, match="do not match labels"):
        computer.prepare_batch({"logits": logits}, {"labels": labels[:, :3]})


def test_recording_keeps_predicted_ids_probabilities_and_gold_of_scored_positions():
    computer = EntityMetricsComputer(["O", "B-X", "I-X"])
    logits = torch.tensor([[[0.0, 2.0, 0.0], [0.0, 0.0, 9.0], [9.0, 0.0, 0.0]], [[1.0, 0.0, 0.0]] * 3])
    labels = torch.tensor([[1, -100, 0], [0, 0, -100]])
    unrecorded = computer.prepare_batch({"logits": logits}, {"labels": labels})
    assert computer.take_recording() is None
    computer.start_recording()
    assert computer.prepare_batch({"logits": logits}, {"labels": labels}) == unrecorded  # what compute sees is unchanged
    computer.prepare_batch({"logits": logits[:1]}, {"labels": labels[:1]})
    first, second, third = computer.take_recording()
    assert (first.predicted, first.gold, second.predicted, second.gold) == ([1, 0], [1, 0], [0, 0], [0, 0])
    assert first.probabilities == pytest.approx([math.exp(2) / (math.exp(2) + 2), math.exp(9) / (math.exp(9) + 2)])
    assert third == first
    assert computer.take_recording() is None  # taking it stops the recording
    computer.prepare_batch({"logits": logits}, {"labels": labels})
    assert computer.take_recording() is None


def test_prepared_batches_concatenate_into_compute():
    computer = EntityMetricsComputer(["O", "B-X", "I-X"])
    logits = torch.tensor([[[0.0, 9.0, 0.0], [0.0, 0.0, 9.0], [9.0, 0.0, 0.0]]])
    batches = [computer.prepare_batch({"logits": logits}, {"labels": torch.tensor([[1, 2, 0]])}) for _ in range(2)]
    all_data = {key: sum((batch[key] for batch in batches), []) for key in batches[0]}
    scores = computer.compute(all_data)
    assert scores["f1"] == 1.0 and computer.supports == {"X": 2}


def test_metric_names_list_what_compute_returns():
    computer = EntityMetricsComputer(make_tag_labels(["DISO", "ANAT"], "bilou"), "bilou")
    scores = computer.compute({"references": [["U-DISO"]], "predictions": [["O"]]})
    assert sorted(computer.metric_names) == sorted(scores)
    assert computer.metric_names[:6] == ["precision", "recall", "f1", "macro_precision", "macro_recall", "macro_f1"]
    assert "labels/ANAT/f1" in computer.metric_names and scores["labels/DISO/recall"] == 0.0
    assert not any("support" in name for name in scores)  # a count of the data, not a curve
    assert computer.supports == {"ANAT": 0, "DISO": 1}


def test_a_label_named_like_a_split_or_a_summary_metric_cannot_be_misread():
    computer = EntityMetricsComputer(make_tag_labels(["test", "macro", "f1"]))
    scores = computer.compute({"references": [["B-test", "O"]], "predictions": [["B-test", "B-macro"]]})
    assert scores["labels/test/f1"] == 1.0 and scores["labels/macro/precision"] == 0.0
    assert not any(name.startswith(("test", "dev", "train", "eval")) for name in scores)
    assert scores["f1"] == pytest.approx(2 / 3)  # the summary name is the summary, whatever the labels
    table = label_table({f"eval/{k}": v for k, v in scores.items()})
    assert table["test"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_bad_configuration():
    with pytest.raises(ConfigError, match="tagging_scheme"):
        EntityMetricsComputer(["O", "B-X"], "iob1")
    with pytest.raises(ConfigError, match="id2label"):
        EntityMetricsComputer(["O", "U-X"], "iob2")
    with pytest.raises(ValueError, match="2 reference tags but 1 predicted"):
        EntityMetricsComputer(["O", "B-X"]).compute({"references": [["O", "O"]], "predictions": [["O"]]})


def test_entity_scores_counts_duplicates_as_a_multiset():
    scores = entity_scores(Counter([("X", 1), ("X", 1)]), Counter([("X", 1)]))
    assert (scores["precision"], scores["recall"]) == (1.0, 0.5)


TEXT = "Fièvre et toux sèche depuis hier."


def test_evaluate_documents_exact_spans_and_labels_per_label():
    gold = [
        TextDocument(TEXT, [Entity("DISO", [(0, 6)]), Entity("DISO", [(10, 20)]), Entity("TIME", [(21, 32)])], "a"),
        TextDocument("Sécrétion d' oestradiol", [Entity("PHYS", [(0, 9), (10, 23)])], "b"),
    ]
    pred = [
        TextDocument("Sécrétion d' oestradiol", [Entity("PHYS", [(0, 23)])], "b"),  # filled span: no match
        TextDocument(
            TEXT,
            [
                Entity("DISO", [(0, 6)]),
                Entity("DISO", [(10, 14)]),
                Entity("TIME", [(21, 32)]),
                Entity("ANAT", [(10, 14)]),
            ],
            "a",
        ),
    ]
    scores = evaluate_documents(gold, pred)  # paired by id, whatever the order
    assert (scores["precision"], scores["recall"]) == (2 / 5, 2 / 4)
    table = label_table(scores)
    assert table["DISO"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2.0}
    assert (table["TIME"]["f1"], table["PHYS"]["recall"], table["ANAT"]["support"]) == (1.0, 0.0, 0.0)
    assert scores["macro_recall"] == (0.5 + 1.0 + 0.0 + 0.0) / 4


def test_evaluate_documents_pairs_by_position_without_ids_and_checks_pairing():
    gold = [TextDocument("abc", [Entity("X", [(0, 3)])]), TextDocument("de", [])]
    assert evaluate_documents(gold, [TextDocument("abc", [Entity("X", [(0, 3)])]), TextDocument("de")])["f1"] == 1.0
    with pytest.raises(DataError, match="1 gold but 2 predicted"):
        evaluate_documents(gold[:1], gold)
    with pytest.raises(DataError, match=r"no prediction for \['b'\], no gold for \['c'\]"):
        evaluate_documents(
            [TextDocument("x", doc_id="a"), TextDocument("y", doc_id="b")],
            [TextDocument("x", doc_id="a"), TextDocument("y", doc_id="c")],
        )
    with pytest.raises(DataError, match="text differs"):
        evaluate_documents([TextDocument("abc")], [TextDocument("abd")])


# ------------------------------------------------------------------ scores against the entities as annotated
def one_hot_logits(rows: list[list[int]], nb_tags: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(rows), nb_tags).float()


def test_annotated_scores_need_the_batch_entry_and_are_named_only_when_computed():
    tags = ["O", "B-X", "I-X"]
    labels = torch.tensor([[1, 2, 0]])
    logits = one_hot_logits([[1, 0, 0]], 3)  # predicts X over word 0 only
    plain = EntityMetricsComputer(tags)
    assert not any(name.startswith("annotated/") for name in plain.metric_names)
    prepared = plain.prepare_batch({"logits": logits}, {"labels": labels, "annotated": [[("X", 0, 2)]]})
    assert "annotated" not in prepared and not any(n.startswith("annotated/") for n in plain.compute(prepared))

    computer = EntityMetricsComputer(tags, annotated=True)
    annotated_names = ["annotated/precision", "annotated/recall", "annotated/f1", "annotated/ceiling"]
    assert computer.metric_names[-4:] == annotated_names
    with pytest.raises(ValueError, match="no 'annotated' entry"):
        computer.prepare_batch({"logits": logits}, {"labels": labels})
    with pytest.raises(ValueError, match="1 items but 'annotated' holds 2"):
        computer.prepare_batch({"logits": logits}, {"labels": labels, "annotated": [[], []]})
    # Gold as annotated: X over words 0-1 and, nested in it, X over word 0.
    prepared = computer.prepare_batch({"logits": logits}, {"labels": labels, "annotated": [[("X", 0, 2), ("X", 0, 1)]]})
    scores = computer.compute(prepared)
    assert sorted(scores) == sorted(computer.metric_names)
    assert (scores["f1"], scores["annotated/precision"], scores["annotated/recall"]) == (0.0, 1.0, 0.5)
    assert scores["annotated/ceiling"] == 0.5  # the flat gold tags express the outer one only
    # What a computer scoring tags another way (seqeval) adds in one call: the same values.
    assert computer.annotated_metrics(prepared) == {k: v for k, v in scores.items() if k.startswith("annotated/")}
    assert plain.annotated_metrics(prepared) == {}
    with pytest.raises(ValueError, match="no 'annotated' entities"):
        computer.compute({"references": prepared["references"], "predictions": prepared["predictions"]})


class LayeredComputer(EntityMetricsComputer):
    """What a tagger with stacked tag layers does: one string per position joining the layers'
    tags, decoded into the union of the layers' chunks (the restructured computer's hooks)."""

    def prepare_tags(self, model_output, input_batch):
        return {"references": input_batch["gold_layers"], "predictions": model_output["predicted_layers"]}

    def decode(self, tags):
        layers = [list(layer) for layer in zip(*(tag.split("|") for tag in tags))]
        flat_decode = super().decode  # (a bare super() does not work inside a comprehension)
        return sorted({chunk for layer in layers for chunk in flat_decode(layer)})


def test_a_layered_computer_reuses_the_annotated_scores():
    computer = LayeredComputer(["O", "B-X", "I-X"], annotated=True)
    gold = [["B-X|B-X", "I-X|O", "O|O"]]  # X 0-2 and X 0-1: same-label nesting, both expressed
    predicted = [["B-X|O", "I-X|O", "O|O"]]  # the outer one only
    annotated = [[("X", 0, 2), ("X", 0, 1), ("X", "unaligned", 0, 3)]]
    prepared = computer.prepare_batch({"predicted_layers": predicted},
                                      {"gold_layers": gold, "annotated": annotated})
    scores = computer.compute(prepared)
    assert scores["annotated/ceiling"] == pytest.approx(2 / 3)
    assert (scores["annotated/precision"], scores["annotated/recall"]) == (1.0, pytest.approx(1 / 3))
    assert scores["recall"] == 0.5 and scores["precision"] == 1.0  # against its own (layered) gold


def test_annotated_inputs_gathered_in_rank_order_score_as_one_process():
    from medkit_exp.training.shards import merge_in_rank_order

    computer = EntityMetricsComputer(["O", "B-X", "I-X"], annotated=True)
    labels = torch.tensor([[1, 2, 0], [0, 1, 0]])
    logits = one_hot_logits([[1, 2, 0], [1, 0, 0]], 3)
    batch = BatchData(labels=labels, annotated=[[("X", 0, 2)], [("X", 1, 2), ("X", 0, 1)]])
    whole = computer.compute(computer.prepare_batch({"logits": logits}, batch))
    parts = [computer.prepare_batch({"logits": logits[i : i + 1]}, batch[i : i + 1]) for i in range(2)]
    assert computer.compute(merge_in_rank_order(parts)) == whole
    assert (whole["annotated/precision"], whole["annotated/recall"]) == (pytest.approx(2 / 2), pytest.approx(2 / 3))
