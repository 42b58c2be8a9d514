"""Entity-level metrics: on tag sequences (a MetricsComputer for the Trainer) and on documents.

Sequence metrics equal seqeval's strict mode (``mode="strict"`` with the IOB2/BILOU/IOBES
scheme) to the last bit, without depending on seqeval: entities are decoded by
:func:`medkit_exp.ner.tagging.tags_to_chunks`, precision/recall/F1 are computed with the same
float operations, an undefined ratio counts as 0, and macro averages run over the labels seen
in the references or the predictions (numpy's mean, as seqeval).

Beside them, the training evaluation scores the same predictions against the documents *as
annotated* (``annotated/precision``, ``annotated/recall``, ``annotated/f1``; exact spans,
nesting and discontinuity intact) with ``annotated/ceiling``, the share of those entities the
tagger's gold tags express: see :class:`EntityMetricsComputer` and :mod:`medkit_exp.ner.window_gold`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from medkit_exp.errors import ConfigError, DataError
from medkit_exp.ner.documents import TextDocument
from medkit_exp.ner.tagging import OUTPUT_SCHEMES, labels_of_tags, split_tag, tags_to_chunks

logger = logging.getLogger(__name__)

SUMMARY_METRICS = ("precision", "recall", "f1", "macro_precision", "macro_recall", "macro_f1")
PER_LABEL_METRICS = ("precision", "recall", "f1")
#: Overall scores against the documents as annotated, and the ceiling of the representation.
#: No per-label ones here: a ``labels/`` in their names would read as per-label flat scores.
ANNOTATED_METRICS = ("annotated/precision", "annotated/recall", "annotated/f1", "annotated/ceiling")
#: Where per-label metrics live: a namespace of their own, so that a label named like a split
#: (``test``) or a summary metric can never be read as one (``labels/test/f1``, not ``test_f1``).
LABELS_PREFIX = "labels/"
IGNORE_INDEX = -100


class WindowTags(NamedTuple):
    """What a tagger predicted on one item (window) at its scored positions, in order: the tag
    ids, the probability of each, and the gold tag ids (see :meth:`EntityMetricsComputer.start_recording`)."""

    predicted: list[int]
    probabilities: list[float]
    gold: list[int]


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def _f1(precision: float, recall: float) -> float:
    # The same operations as seqeval (sklearn): (1 + beta²)·p·r / (beta²·p + r), beta = 1.
    denominator = precision + recall
    return 2.0 * precision * recall / denominator if denominator else 0.0


def label_metric(label: str, metric: str) -> str:
    """The name of a per-label metric: ``labels/<label>/<metric>``.

    >>> label_metric("test", "f1")
    'labels/test/f1'
    """
    return f"{LABELS_PREFIX}{label}/{metric}"


def label_table(scores: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """``{label: {metric: value}}`` from the per-label names of ``scores`` (any prefix before
    ``labels/``, e.g. ``eval/labels/X/f1``, is ignored); labels in sorted order.

    >>> label_table({"f1": 0.5, "labels/X/f1": 1.0, "labels/X/support": 2.0})
    {'X': {'f1': 1.0, 'support': 2.0}}
    """
    table: dict[str, dict[str, float]] = {}
    for name, value in scores.items():
        _, found, rest = name.partition(LABELS_PREFIX)
        label, slash, metric = rest.rpartition("/")
        if found and slash and label:
            table.setdefault(label, {})[metric] = value
    return {label: table[label] for label in sorted(table)}


def _mean(values: list[float]) -> float:
    if not values:
        return 0.0  # no entity at all: seqeval gives nan here, 0 is safer to track
    import numpy as np  # numpy's pairwise summation, so macro averages equal seqeval's exactly

    return float(np.mean(np.asarray(values, dtype=np.float64)))


def entity_scores(
    true: Counter[tuple[Hashable, ...]], pred: Counter[tuple[Hashable, ...]], labels: Iterable[str] = ()
) -> dict[str, float]:
    """Micro, macro and per-label precision/recall/F1 (+ support) of entity multisets.

    Each entity is a tuple whose first item is its label; two entities match when their tuples
    are equal. Per-label metrics (``labels/<label>/<precision|recall|f1|support>``, see
    :func:`label_metric`) are given for ``labels`` and every label seen; the macro average runs
    over the labels seen in ``true`` or ``pred`` only (as seqeval).

    >>> scores = entity_scores(Counter([("X", 0, 2)]), Counter([("X", 0, 2), ("Y", 3, 4)]))
    >>> scores["precision"], scores["recall"], scores["labels/Y/support"]
    (0.5, 1.0, 0.0)
    """
    hits = true & pred
    count = {name: Counter() for name in ("true", "pred", "hit")}
    for name, entities in (("true", true), ("pred", pred), ("hit", hits)):
        for entity, number in entities.items():
            count[name][entity[0]] += number
    seen = sorted(set(count["true"]) | set(count["pred"]))
    scores: dict[str, float] = {}
    per_label: dict[str, tuple[float, float, float]] = {}
    for label in sorted(set(labels) | set(seen)):
        precision = _ratio(count["hit"][label], count["pred"][label])
        recall = _ratio(count["hit"][label], count["true"][label])
        per_label[label] = (precision, recall, _f1(precision, recall))
        scores.update(zip((label_metric(label, m) for m in (*PER_LABEL_METRICS, "support")),
                          (*per_label[label], float(count["true"][label]))))
    precision = _ratio(sum(count["hit"].values()), sum(count["pred"].values()))
    recall = _ratio(sum(count["hit"].values()), sum(count["true"].values()))
    scores.update(precision=precision, recall=recall, f1=_f1(precision, recall))
    for index, name in enumerate(("macro_precision", "macro_recall", "macro_f1")):
        scores[name] = _mean([per_label[label][index] for label in seen])
    return scores


def metric_names(labels: Iterable[str], annotated: bool = False) -> list[str]:
    """The names an :class:`EntityMetricsComputer` over ``labels`` gives (supports aside), with
    the :data:`ANNOTATED_METRICS` when it scores against the documents as annotated.

    >>> metric_names(["DISO"])[-3:]
    ['labels/DISO/precision', 'labels/DISO/recall', 'labels/DISO/f1']
    >>> metric_names(["DISO"], annotated=True)[-1]
    'annotated/ceiling'
    """
    names = list(SUMMARY_METRICS)
    for label in sorted(labels):
        names += [label_metric(label, metric) for metric in PER_LABEL_METRICS]
    return names + (list(ANNOTATED_METRICS) if annotated else [])


def annotated_window_scores(
    annotated: Sequence[Sequence[tuple[Hashable, ...]]],
    predicted: Sequence[Sequence[tuple[Hashable, ...]]],
    expressed: Sequence[Sequence[tuple[Hashable, ...]]],
) -> dict[str, float]:
    """Exact-match scores against the entities as annotated, item by item (window by window).

    ``annotated[i]`` holds item i's annotated entities as tuples (``(label, first, end)``, or a
    tuple no chunk equals: see :mod:`medkit_exp.ner.window_gold`); ``predicted[i]`` the chunks
    decoded from the predictions, ``expressed[i]`` those decoded from the gold tags. Precision,
    recall and F1 compare ``predicted`` with ``annotated`` (multisets); the ceiling is the share
    of ``annotated`` that ``expressed`` matches: the recall of a perfect model of these tags.

    >>> scores = annotated_window_scores([[("X", 0, 2), ("X", 0, 1)]], [[("X", 0, 2)]], [[("X", 0, 2)]])
    >>> scores["annotated/recall"], scores["annotated/precision"], scores["annotated/ceiling"]
    (0.5, 1.0, 0.5)
    """
    if not len(annotated) == len(predicted) == len(expressed):
        raise ValueError(
            f"{len(annotated)} annotated items but {len(predicted)} predicted and {len(expressed)} gold ones"
        )

    def keyed(rows: Sequence[Sequence[tuple[Hashable, ...]]]) -> Counter[tuple[Hashable, ...]]:
        # (label, item, coordinates...): the label first, as entity_scores reads it
        return Counter((entity[0], index, *entity[1:]) for index, row in enumerate(rows) for entity in row)

    true, pred, gold = keyed(annotated), keyed(predicted), keyed(expressed)
    scores = entity_scores(true, pred)
    return {
        "annotated/precision": scores["precision"],
        "annotated/recall": scores["recall"],
        "annotated/f1": scores["f1"],
        "annotated/ceiling": _ratio(sum((true & gold).values()), sum(true.values())),
    }


def split_supports(scores: dict[str, float]) -> tuple[dict[str, float], dict[str, int]]:
    """``scores`` less its per-label supports, and the supports as ``{label: count}``: a support
    is a count of the data, the same at every evaluation, not a curve."""
    kept, supports = {}, {}
    for name, value in scores.items():
        if name.startswith(LABELS_PREFIX) and name.endswith("/support"):
            supports[name[len(LABELS_PREFIX): -len("/support")]] = int(value)
        else:
            kept[name] = value
    return kept, supports


class EntityMetricsComputer:
    """Strict entity-level metrics from token classification logits (a MetricsComputer).

    ``prepare_batch`` turns ``model_output["logits"]`` [B, T, C] and ``input_batch["labels"]``
    [B, T] (``-100`` where a position is not scored: special tokens, padding, non-first
    sub-tokens) into tag strings; when ``input_batch`` has a bool ``"eval_mask"`` [B, T], it
    chooses the scored positions instead (the gold tag still comes from ``labels``).
    ``compute`` gives ``precision``, ``recall``, ``f1`` (micro), ``macro_*`` and, for each label
    of ``id2label``, ``labels/<label>/<precision|recall|f1>``, equal to seqeval's strict mode.
    The number of gold entities of each label (the support) is a count of the data, not a score
    that moves: it is left out of the metrics and kept in :attr:`supports` after each ``compute``.

    With ``annotated=True``, each input batch must hold ``"annotated"``: per item, the entities
    as annotated in the item's scored coordinates (the tagger's ``collate`` adds them, see
    :mod:`medkit_exp.ner.window_gold`); ``compute`` then also gives the :data:`ANNOTATED_METRICS`
    (see :func:`annotated_window_scores`), and :attr:`metric_names` names them.

    A tagger with another representation reuses the rest by overriding :meth:`prepare_tags`
    (one string per scored position, e.g. the layers' tags joined) and :meth:`decode` (that
    string sequence -> ``(label, first, end)`` chunks, possibly overlapping).

    >>> computer = EntityMetricsComputer(["O", "B-DISO", "I-DISO"])
    >>> computer.compute({"references": [["B-DISO", "I-DISO", "O"]], "predictions": [["B-DISO", "I-DISO", "O"]]})["f1"]
    1.0
    """

    def __init__(
        self, id2label: Mapping[int, str] | Sequence[str], tagging_scheme: str = "iob2", annotated: bool = False
    ):
        if tagging_scheme not in OUTPUT_SCHEMES:
            raise ConfigError("tagging_scheme", f"must be one of {', '.join(OUTPUT_SCHEMES)}, got {tagging_scheme!r}")
        self.id2label = (
            {int(k): v for k, v in id2label.items()} if isinstance(id2label, Mapping) else dict(enumerate(id2label))
        )
        for tag in self.id2label.values():
            try:
                split_tag(tag, tagging_scheme)
            except ValueError as error:
                raise ConfigError("id2label", str(error)) from None
        self.tagging_scheme = tagging_scheme
        self.labels = labels_of_tags(self.id2label.values())
        self.annotated = annotated
        self._metric_names = metric_names(self.labels, annotated)
        self._recording: list[WindowTags] | None = None
        #: ``{label: gold entities}`` of the last :meth:`compute` ({} before the first).
        self.supports: dict[str, int] = {}

    @property
    def metric_names(self) -> list[str]:
        """Every name :meth:`compute` returns."""
        return list(self._metric_names)

    def start_recording(self) -> None:
        """Keep what :meth:`prepare_batch` sees from now on (e.g. one evaluation pass): for each
        item, the predicted tag ids, their probabilities and the gold tag ids at its scored
        positions, in order; :meth:`take_recording` returns them. It lets a report reuse an
        evaluation's predictions instead of predicting the same data again."""
        self._recording = []

    def take_recording(self) -> list[WindowTags] | None:
        """What was recorded since :meth:`start_recording` (None if not recording); stops recording."""
        recorded, self._recording = self._recording, None
        return recorded

    def _tag(self, index: int) -> str:
        if index not in self.id2label:
            raise ValueError(f"tag id {index} is not in id2label (ids {min(self.id2label)}..{max(self.id2label)})")
        return self.id2label[index]

    def prepare_batch(self, model_output: Mapping[str, Any], input_batch: Mapping[str, Any]) -> dict[str, list[Any]]:
        """Tag strings of the scored positions of each item: ``{"references", "predictions"}``
        (:meth:`prepare_tags`), and ``"annotated"``, each item's annotated entities, when the
        computer scores against them (:meth:`annotated_rows`)."""
        prepared: dict[str, list[Any]] = dict(self.prepare_tags(model_output, input_batch))
        if self.annotated:
            prepared["annotated"] = self.annotated_rows(input_batch, len(prepared["references"]))
        return prepared

    def annotated_rows(self, input_batch: Mapping[str, Any], nb_items: int) -> list[list[tuple[Hashable, ...]]]:
        """The batch's ``"annotated"`` entry, one list of entity tuples per item, checked."""
        rows = input_batch.get("annotated")
        if rows is None:
            raise ValueError(
                "the input batch has no 'annotated' entry (the entities as annotated, added by the tagger's "
                "collate): build the computer with annotated=False to score the tags only"
            )
        if len(rows) != nb_items:
            raise ValueError(f"the batch has {nb_items} items but 'annotated' holds {len(rows)}")
        return [[tuple(entity) for entity in row] for row in rows]

    def decode(self, tags: Sequence[str]) -> list[tuple[str, int, int]]:
        """The ``(label, first, end)`` chunks of one item's tag strings (strict decoding)."""
        return tags_to_chunks(tags, self.tagging_scheme)

    def prepare_tags(
        self, model_output: Mapping[str, Any], input_batch: Mapping[str, Any]
    ) -> dict[str, list[list[str]]]:
        """Tag strings of the scored positions of each item: ``{"references", "predictions"}``."""
        logits, labels = model_output["logits"], input_batch["labels"]
        if logits.dim() != 3 or tuple(logits.shape[:2]) != tuple(labels.shape):
            raise ValueError(
                f"logits {tuple(logits.shape)} do not match labels {tuple(labels.shape)} ([B, T, C] vs [B, T])"
            )
        predicted = logits.argmax(dim=-1).tolist()
        gold = labels.tolist()
        mask = input_batch.get("eval_mask")
        if mask is not None and tuple(mask.shape) != tuple(labels.shape):
            raise ValueError(f"eval_mask {tuple(mask.shape)} does not match labels {tuple(labels.shape)}")
        scored = mask.tolist() if mask is not None else [[g != IGNORE_INDEX for g in row] for row in gold]
        # Probabilities only while recording: an evaluation pass that is not recorded pays nothing.
        probabilities = logits.float().softmax(-1).amax(-1).tolist() if self._recording is not None else None
        references, predictions = [], []
        for row, (gold_row, pred_row, mask_row) in enumerate(zip(gold, predicted, scored)):
            positions = [t for t, keep in enumerate(mask_row) if keep]
            if any(gold_row[t] == IGNORE_INDEX for t in positions):
                raise ValueError("eval_mask selects a position whose label is -100 (no gold tag there)")
            references.append([self._tag(gold_row[t]) for t in positions])
            predictions.append([self._tag(pred_row[t]) for t in positions])
            if probabilities is not None:
                self._recording.append(WindowTags(
                    [pred_row[t] for t in positions], [probabilities[row][t] for t in positions],
                    [gold_row[t] for t in positions],
                ))
        return {"references": references, "predictions": predictions}

    def annotated_metrics(
        self,
        all_data: Mapping[str, list[Any]],
        predicted_chunks: Sequence[Sequence[tuple[str, int, int]]] | None = None,
        gold_chunks: Sequence[Sequence[tuple[str, int, int]]] | None = None,
    ) -> dict[str, float]:
        """The :data:`ANNOTATED_METRICS` of ``all_data`` ({} when the computer does not score
        them): its ``"annotated"`` items against the chunks :meth:`decode` gives of its
        predictions and references (pass them when already decoded). A subclass computing the
        tag metrics another way (seqeval) adds these with one call."""
        if not self.annotated:
            return {}
        if "annotated" not in all_data:
            raise ValueError("no 'annotated' entities to score against (the computer has annotated=True)")
        if predicted_chunks is None:
            predicted_chunks = [self.decode(row) for row in all_data["predictions"]]
        if gold_chunks is None:
            gold_chunks = [self.decode(row) for row in all_data["references"]]
        return annotated_window_scores(all_data["annotated"], predicted_chunks, gold_chunks)

    def compute(self, all_data: Mapping[str, list[Any]]) -> dict[str, float]:
        """Strict entity-level metrics over every sequence, and the annotated ones when the
        computer scores them (see the class doc)."""
        references, predictions = all_data["references"], all_data["predictions"]
        if len(references) != len(predictions):
            raise ValueError(f"{len(references)} reference sequences but {len(predictions)} predicted ones")
        gold_chunks, predicted_chunks = [], []
        for index, (ref, hyp) in enumerate(zip(references, predictions)):
            if len(ref) != len(hyp):
                raise ValueError(f"sequence {index}: {len(ref)} reference tags but {len(hyp)} predicted")
            gold_chunks.append(self.decode(ref))
            predicted_chunks.append(self.decode(hyp))
        true = Counter((label, index, start, end) for index, row in enumerate(gold_chunks) for label, start, end in row)
        pred = Counter(
            (label, index, start, end) for index, row in enumerate(predicted_chunks) for label, start, end in row
        )
        scores, self.supports = split_supports(entity_scores(true, pred, self.labels))
        scores.update(self.annotated_metrics(all_data, predicted_chunks, gold_chunks))
        unexpected = sorted(set(scores) - set(self._metric_names))
        if unexpected:  # a label outside id2label: cannot come from argmax over id2label
            logger.warning("tags name labels outside id2label: %s", unexpected)
        return scores


def _pair_documents(
    gold: Sequence[TextDocument], pred: Sequence[TextDocument]
) -> list[tuple[TextDocument, TextDocument]]:
    gold_ids = [doc.doc_id for doc in gold]
    pred_ids = [doc.doc_id for doc in pred]
    by_id = None not in gold_ids and None not in pred_ids and len(set(gold_ids)) == len(gold_ids) == len(set(pred_ids))
    if not by_id:
        if len(gold) != len(pred):
            raise DataError(f"cannot pair documents by position: {len(gold)} gold but {len(pred)} predicted")
        return list(zip(gold, pred))
    missing, extra = sorted(set(gold_ids) - set(pred_ids)), sorted(set(pred_ids) - set(gold_ids))
    if missing or extra:
        raise DataError(f"documents do not pair by id: no prediction for {missing[:5]}, no gold for {extra[:5]}")
    predicted = {doc.doc_id: doc for doc in pred}
    return [(doc, predicted[doc.doc_id]) for doc in gold]


def evaluate_documents(
    gold_docs: Sequence[TextDocument], pred_docs: Sequence[TextDocument], as_annotated: bool = False
) -> dict[str, float]:
    """Exact-match entity evaluation on documents: same label and same character spans (every
    fragment of a discontinuous entity).

    The gold is each document's :attr:`~TextDocument.entities` (after the data policies), or with
    ``as_annotated`` its :attr:`~TextDocument.annotated_entities` (nesting, overlaps and
    discontinuity intact; see :mod:`medkit_exp.ner.annotated_scores`).
    Documents pair by ``doc_id`` when every document has a unique one, else by position.
    Returns the names of :class:`EntityMetricsComputer` (micro, macro, per label) and the
    per-label supports ``labels/<label>/support`` (a one-off evaluation shows them in its
    table) for the labels seen in gold or predictions. A predicted document whose text
    differs from its gold one is a DataError.

    >>> from medkit_exp.ner.documents import Entity
    >>> gold = [TextDocument("Fièvre et toux", [Entity("DISO", [(0, 6)]), Entity("DISO", [(10, 14)])])]
    >>> pred = [TextDocument("Fièvre et toux", [Entity("DISO", [(0, 6)])])]
    >>> evaluate_documents(gold, pred)["recall"]
    0.5
    """
    true: Counter[tuple[Hashable, ...]] = Counter()
    pred: Counter[tuple[Hashable, ...]] = Counter()
    for index, (gold, hyp) in enumerate(_pair_documents(gold_docs, pred_docs)):
        if gold.text != hyp.text:
            raise DataError(
                f"document {gold.doc_id or index!r}: the predicted document's text differs from the gold one"
            )
        gold_entities = gold.annotated_entities if as_annotated else gold.entities
        true.update((e.label, index, tuple(e.spans)) for e in gold_entities)
        pred.update((e.label, index, tuple(e.spans)) for e in hyp.entities)
    scores = entity_scores(true, pred)
    logger.info(
        "document evaluation%s: %d gold, %d predicted entities; P %.4f R %.4f F1 %.4f",
        " against the documents as annotated" if as_annotated else "",
        sum(true.values()),
        sum(pred.values()),
        scores["precision"],
        scores["recall"],
        scores["f1"],
    )
    return scores
