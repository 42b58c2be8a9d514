"""Honest scores: predictions against the documents as annotated, and the ceiling of a tagger.

The data policies flatten the gold for a tagger (``data.nested``, ``data.discontinuous``); the
scores of :func:`medkit_exp.ner.metrics.evaluate_documents` read that flattened gold, so they never
count what the tagger cannot represent. Here the gold is each document's
:attr:`~medkit_exp.ner.documents.TextDocument.annotated_entities` (nesting, overlaps and
discontinuity intact):

- :func:`annotated_scores`: predicted entities against it, matched on label and every fragment
  (a discontinuous gold entity is found only by an entity with the same fragments);
- :func:`ceiling`: the share of it that the tagger's representation can express (the recall a
  perfect model of that representation would reach).

>>> from medkit_exp.ner.documents import Entity, TextDocument
>>> gold = TextDocument("cancers colorectaux", [Entity("DISO", [(0, 19)])],
...                     annotated=[Entity("DISO", [(0, 19)]), Entity("DISO", [(0, 7)])])
>>> pred = TextDocument("cancers colorectaux", [Entity("DISO", [(0, 19)])])
>>> annotated_scores([gold], [pred])["recall"]
0.5
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

from medkit_exp.ner.documents import Entity, TextDocument
from medkit_exp.ner.metrics import evaluate_documents, label_metric
from medkit_exp.ner.representation import expressible_entities

logger = logging.getLogger(__name__)

#: The ceiling's summary names (per label: ``labels/<label>/ceiling``, see :func:`ceiling`).
CEILING = "ceiling"
EXPRESSIBLE = "expressible"
ANNOTATED = "annotated"


def _keys(entities: Iterable[Entity], index: int) -> Counter[tuple[Hashable, ...]]:
    """Entities as match keys: label, document, every fragment (so all fragments must agree)."""
    return Counter((entity.label, index, tuple(entity.spans)) for entity in entities)


def annotated_scores(gold_docs: Sequence[TextDocument], pred_docs: Sequence[TextDocument]) -> dict[str, float]:
    """Exact-match scores of ``pred_docs``' entities against each gold document's entities as
    annotated (:attr:`~medkit_exp.ner.documents.TextDocument.annotated_entities`): same label and
    same character spans, fragment by fragment.

    Documents pair as in :func:`~medkit_exp.ner.metrics.evaluate_documents` (by ``doc_id`` when
    every document has a unique one, else by position; a text that differs is a DataError), and the
    names are the same: ``precision``, ``recall``, ``f1``, ``macro_*`` and
    ``labels/<label>/<precision|recall|f1|support>`` for the labels seen in gold or predictions.
    """
    return evaluate_documents(gold_docs, pred_docs, as_annotated=True)


def ceiling(tagger: Any, gold_docs: Sequence[TextDocument]) -> dict[str, float]:
    """What ``tagger``'s representation can express of the gold entities as annotated.

    The rule: the gold entities are each document's ``annotated_entities`` whose label is one of
    ``tagger.labels`` (``annotated``: their number); the expressible ones are the entities of
    :func:`~medkit_exp.ner.representation.expressible_entities` (the document's policy-processed
    entities encoded into the tagger's tags and decoded back) that equal a gold entity of the same
    document on label and every fragment, each gold entity matched at most once (``expressible``:
    their number). ``ceiling`` = expressible / annotated (0 when there is no gold entity), and
    ``labels/<label>/ceiling`` the same share per label of ``tagger.labels`` that has gold
    entities (a label without any has no share: left out). It works for the flat tagger and for
    any tagger with an ``expressible_entities(document)`` method.

    Returns ``{"ceiling", "expressible", "annotated", "labels/<label>/ceiling", ...}``.
    """
    labels = list(tagger.labels)
    wanted = set(labels)
    gold: Counter[str] = Counter()
    found: Counter[str] = Counter()
    for index, document in enumerate(gold_docs):
        annotated = _keys((e for e in document.annotated_entities if e.label in wanted), index)
        expressible = _keys(expressible_entities(tagger, document), index)
        for key, count in annotated.items():
            gold[key[0]] += count
        for key, count in (annotated & expressible).items():
            found[key[0]] += count
    total, matched = sum(gold.values()), sum(found.values())
    scores = {CEILING: matched / total if total else 0.0, EXPRESSIBLE: float(matched), ANNOTATED: float(total)}
    for label in sorted(label for label in labels if gold[label]):  # no gold entity: no share to give
        scores[label_metric(label, CEILING)] = found[label] / gold[label]
    logger.info("ceiling of the representation: %d of %d gold entities as annotated expressible (%.4f)",
                matched, total, scores[CEILING])
    return scores
