"""Explicit policies that make annotated documents fit a tagger (flat: one tag per word).

Each choice is a named option, and what it changed is counted in a :class:`PolicyReport`,
logged at INFO: label remapping and filtering, discontinuous entities, overlapping entities.
:func:`apply_policies` returns new documents and never changes its input; with ``keep_annotated``
(and always in :func:`flatten_documents`) each keeps its entities before the discontinuity and
overlap policies as :attr:`~medkit_exp.ner.documents.TextDocument.annotated`, for honest scores.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from medkit_exp.errors import DataError
from medkit_exp.ner.documents import Entity, TextDocument, check_choice
from medkit_exp.ner.textfiles import clip, shorten

logger = logging.getLogger(__name__)

OVERLAP_POLICIES = ("keep_longest", "keep_first", "error", "keep")
DISCONTINUOUS_POLICIES = ("fill", "drop", "keep")
UNKNOWN_LABEL_POLICIES = ("error", "drop")

# NCBI Disease's four mention types folded into one label, as usual in the literature.
NCBI_DISEASE_LABELS = {
    "SpecificDisease": "Disease",
    "DiseaseClass": "Disease",
    "Modifier": "Disease",
    "CompositeMention": "Disease",
}


@dataclass
class PolicyReport:
    """What :func:`apply_policies` did, entity by entity, summed over documents."""

    documents: int = 0
    entities_in: int = 0
    entities_out: int = 0
    remapped: Counter[str] = field(default_factory=Counter)  # "old->new": count
    dropped_labels: Counter[str] = field(default_factory=Counter)  # label: count (asked for)
    unknown_labels: Counter[str] = field(default_factory=Counter)  # label: count (dropped)
    discontinuous_filled: int = 0
    discontinuous_dropped: int = 0
    overlaps_dropped: int = 0
    annotated_kept: int = 0  # entities kept as annotated beside the flattened ones (for honest scores)
    overlap_examples: list[str] = field(default_factory=list)  # the first few, for the log

    def log(self, level: int = logging.INFO) -> None:
        logger.log(
            level,
            "policies on %d documents: %d -> %d entities; remapped %s; dropped by label %s; "
            "unknown labels dropped %s; discontinuous filled %d, dropped %d; overlapping dropped %d%s%s",
            self.documents,
            self.entities_in,
            self.entities_out,
            dict(self.remapped),
            dict(self.dropped_labels),
            dict(self.unknown_labels),
            self.discontinuous_filled,
            self.discontinuous_dropped,
            self.overlaps_dropped,
            f" (e.g. {'; '.join(self.overlap_examples)})" if self.overlap_examples else "",
            f"; {self.annotated_kept} entities kept as annotated for scoring" if self.annotated_kept else "",
        )


def _overlap(a: Entity, b: Entity) -> bool:
    return any(s1 < e2 and s2 < e1 for s1, e1 in a.spans for s2, e2 in b.spans)


def _where(doc: TextDocument) -> dict[str, object]:
    return {"path": doc.metadata.get("path")}


def resolve_overlaps(doc: TextDocument, policy: str, report: PolicyReport) -> list[Entity]:
    """The entities of ``doc`` with no two overlapping, following ``policy``.

    ``"keep_longest"`` keeps the longest of overlapping entities (ties: the earliest, then the
    first listed), i.e. the outer one of nested entities; ``"keep_first"`` keeps the one that
    starts first (ties: the first listed); ``"error"`` raises a DataError naming the document
    and both entities; ``"keep"`` changes nothing (every entity kept: for a nested tagger and for
    scoring against the documents as annotated; a flat tagger cannot learn overlaps).
    Two entities overlap when any of their fragments share a character.

    >>> doc = TextDocument("Fracture du fémur", [Entity("ANAT", [(12, 17)]), Entity("DISO", [(0, 17)])])
    >>> [e.label for e in resolve_overlaps(doc, "keep_longest", PolicyReport())]
    ['DISO']
    """
    if policy == "keep":
        return list(doc.entities)
    entities = doc.entities
    if policy == "keep_longest":
        length = [sum(end - start for start, end in e.spans) for e in entities]
        order = sorted(range(len(entities)), key=lambda i: (-length[i], entities[i].start, i))
    else:
        order = sorted(range(len(entities)), key=lambda i: (entities[i].start, i))
    # One byte per character, set where a kept entity lies: a clash is a set byte under a new
    # entity's fragments (memchr-fast), so the whole pass is linear in the text and the entities,
    # not quadratic in the entities as comparing each with every kept one was.
    taken = bytearray(max((e.end for e in entities), default=0))
    kept: list[int] = []
    for index in order:
        entity = entities[index]
        if not any(taken.find(1, start, end) >= 0 for start, end in entity.spans):
            for start, end in entity.spans:
                taken[start:end] = b"\x01" * (end - start)
            kept.append(index)
            continue
        if policy == "error" or len(report.overlap_examples) < 3:  # name the other one: rare
            other = entities[next(k for k in kept if _overlap(entities[k], entity))]
        if policy == "error":
            raise DataError(
                f"document {clip(doc.doc_id)}: entities {shorten(other.describe())} and {shorten(entity.describe())} "
                "overlap (choose overlaps='keep_longest' or 'keep_first' to resolve them)",
                **_where(doc),
            )
        report.overlaps_dropped += 1
        if len(report.overlap_examples) < 3:
            example = f"{doc.doc_id}: {shorten(entity.describe())} under {shorten(other.describe())}"
            report.overlap_examples.append(example)
    return [entities[i] for i in sorted(kept)]


def _map_labels(
    entities: Iterable[Entity],
    label_map: Mapping[str, str],
    labels: Collection[str] | None,
    drop_labels: Collection[str],
    report: PolicyReport,
) -> tuple[list[Entity], Counter[str]]:
    """Entities after remapping and label filtering, and the unknown labels met."""
    out, unknown = [], Counter()
    for entity in entities:
        label = label_map.get(entity.label, entity.label)
        if label != entity.label:
            report.remapped[f"{entity.label}->{label}"] += 1
            entity = dataclasses.replace(entity, label=label)
        if label in drop_labels:
            report.dropped_labels[label] += 1
        elif labels is not None and label not in labels:
            unknown[label] += 1
        else:
            out.append(entity)
    return out, unknown


def _apply_discontinuous(entities: Iterable[Entity], policy: str, report: PolicyReport) -> list[Entity]:
    out = []
    for entity in entities:
        if not entity.is_discontinuous or policy == "keep":
            out.append(entity)
        elif policy == "fill":
            report.discontinuous_filled += 1
            out.append(dataclasses.replace(entity, spans=[(entity.start, entity.end)], text=None))
        else:
            report.discontinuous_dropped += 1
    return out


def apply_policies(
    documents: Iterable[TextDocument],
    *,
    label_map: Mapping[str, str] | None = None,
    labels: Collection[str] | None = None,
    drop_labels: Collection[str] = (),
    unknown_labels: str = "error",
    discontinuous: str = "fill",
    overlaps: str = "keep_longest",
    keep_annotated: bool = False,
    log: bool = True,
) -> tuple[list[TextDocument], PolicyReport]:
    """New documents with the policies applied in this order, and a report of the changes:

    1. ``label_map`` renames labels (e.g. :data:`NCBI_DISEASE_LABELS`);
    2. entities whose (new) label is in ``drop_labels`` are dropped on purpose; with
       ``labels`` given, any other label not in it is unknown: ``unknown_labels="error"``
       raises a DataError listing every unknown label with its count, ``"drop"`` drops them;
    3. ``discontinuous``: ``"fill"`` (one span from the first start to the last end),
       ``"drop"``, or ``"keep"`` (leave them, e.g. for document-level evaluation);
    4. ``overlaps``: see :func:`resolve_overlaps`.

    Steps 3 and 4 are :func:`flatten_documents`. With ``keep_annotated``, each new document's
    :attr:`~TextDocument.annotated` holds its entities after steps 1-2 (before 3-4: what honest
    scores count); without, it is None. The report is logged at INFO unless ``log`` is false
    (a caller that runs the steps apart, as :func:`medkit_exp.ner.data.load_corpus`, logs it once).

    >>> docs = [TextDocument("Fièvre et toux", [Entity("SpecificDisease", [(0, 6)])])]
    >>> new, report = apply_policies(docs, label_map=NCBI_DISEASE_LABELS, labels=["Disease"])
    >>> new[0].entities[0].label, report.remapped
    ('Disease', Counter({'SpecificDisease->Disease': 1}))
    """
    check_choice("unknown_labels", unknown_labels, UNKNOWN_LABEL_POLICIES)
    check_choice("discontinuous", discontinuous, DISCONTINUOUS_POLICIES)
    check_choice("overlaps", overlaps, OVERLAP_POLICIES)
    label_map = dict(label_map or {})
    report = PolicyReport()
    mapped: list[tuple[TextDocument, list[Entity]]] = []
    unknown: Counter[str] = Counter()
    for doc in documents:
        report.documents += 1
        report.entities_in += len(doc.entities)
        entities, doc_unknown = _map_labels(doc.entities, label_map, labels, drop_labels, report)
        unknown.update(doc_unknown)
        mapped.append((doc, entities))
    if unknown and unknown_labels == "error":
        shown = sorted(unknown.items())[:20]  # a corpus of thousands of labels must not give a huge line
        listing = ", ".join(f"{clip(label)} ({count})" for label, count in shown)
        listing += f" and {len(unknown) - len(shown)} more" if len(unknown) > len(shown) else ""
        raise DataError(
            f"unknown entity labels: {listing}; expected {clip(sorted(labels or []), 300)} "
            "(map them with label_map, list them in drop_labels, or set unknown_labels='drop')"
        )
    report.unknown_labels.update(unknown)
    labelled = [doc.with_entities(entities) for doc, entities in mapped]
    out = flatten_documents(
        labelled, discontinuous=discontinuous, overlaps=overlaps, report=report, keep_annotated=keep_annotated
    )
    if log:
        report.log()
    return out, report


def flatten_documents(
    documents: Iterable[TextDocument],
    *,
    discontinuous: str = "fill",
    overlaps: str = "keep_longest",
    report: PolicyReport | None = None,
    keep_annotated: bool = True,
) -> list[TextDocument]:
    """New documents (of the same class: a sub-document keeps its offset and ids) whose entities
    went through the ``discontinuous`` then the ``overlaps`` policy; with ``keep_annotated`` each
    one's :attr:`~TextDocument.annotated` holds copies of the entities it had before (the labels
    are taken as they are: label policies come first, see :func:`apply_policies`).

    ``report`` (a new one when None) counts what was filled or dropped, the entities kept as
    annotated (:attr:`PolicyReport.annotated_kept`), and its ``entities_out`` is set to the
    entities returned; nothing is logged.

    >>> doc = TextDocument("cancers colorectaux", [Entity("DISO", [(0, 19)]), Entity("DISO", [(0, 7)])])
    >>> (flat,) = flatten_documents([doc])
    >>> [e.spans for e in flat.entities], [e.spans for e in flat.annotated]
    ([[(0, 19)]], [[(0, 19)], [(0, 7)]])
    """
    check_choice("discontinuous", discontinuous, DISCONTINUOUS_POLICIES)
    check_choice("overlaps", overlaps, OVERLAP_POLICIES)
    report = report if report is not None else PolicyReport()
    out = []
    for doc in documents:
        entities = _apply_discontinuous(doc.entities, discontinuous, report)
        new_doc = doc.with_entities(entities)
        kept = resolve_overlaps(new_doc, overlaps, report)
        # Fresh entities (own attrs dict), so that changing the output never changes the input.
        new_doc = new_doc.with_entities([dataclasses.replace(e, attrs=dict(e.attrs)) for e in kept])
        if keep_annotated:
            new_doc.annotated = [_fresh(doc, entity) for entity in doc.entities]
            report.annotated_kept += len(new_doc.annotated)
        out.append(new_doc)
    report.entities_out = sum(len(doc.entities) for doc in out)
    return out


def _fresh(doc: TextDocument, entity: Entity) -> Entity:
    """A copy of ``entity`` (own attrs), its covered text filled from ``doc`` when missing."""
    text = entity.text if entity.text is not None else doc.covered_text(entity)
    return dataclasses.replace(entity, text=text, attrs=dict(entity.attrs))
