"""Split long documents into sentences or character windows, and map predictions back.

A :class:`SubDocument` knows its ``offset`` in its parent. No cut is made inside an entity
(nested, overlapping or discontinuous: from its first start to its last end) when it can be
avoided (two sentences an entity runs across stay together, a window ends before the entity); an
entity that must be cut (longer than a window) is left out of the sub-documents and counted in the
:class:`SplitReport`. A document's entities as annotated (``TextDocument.annotated``, when it has
them apart) are split the same way: a sub-document holds those inside it, none is cut.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from medkit_exp.errors import ConfigError, DataError
from medkit_exp.ner.documents import Entity, TextDocument, check_choice

logger = logging.getLogger(__name__)

SPLIT_MODES = ("sentence", "window")

# Sentence-final punctuation (and closing quotes/brackets) followed by whitespace.
_END_RE = re.compile(r"[.!?…]+[\"'»”’)\]]*(?=\s)")
_NEXT_RE = re.compile(r"\s*")
# Words followed by a dot that rarely end a sentence (English and French clinical text).
ABBREVIATIONS = frozenset(
    "dr mr mrs ms pr prof st vs cf e.g i.e fig figs al approx no nos vol ref resp mme mmes mlle "
    "mlles env ex p.ex inj cp sol max min sup inf ca dept".split()
)
_WORD_BEFORE_RE = re.compile(r"([\w.]+)$")


def _is_abbreviation(text: str, dot: int) -> bool:
    match = _WORD_BEFORE_RE.search(text, max(0, dot - 20), dot)
    if match is None:
        return False
    word = match.group(1).lower().strip(".")
    # A single letter before a dot is an initial ("J. Smith") or a list marker.
    return word in ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def split_sentences(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence: cut at newlines, and after ``. ! ? …`` followed by
    whitespace and an upper-case letter, a digit or an opening quote/bracket (not after a known
    abbreviation or an initial). Spans are stripped of surrounding whitespace.

    >>> text = "Pas de fièvre. Dr. Martin note une HTA.\\nTraitement : IEC."
    >>> [text[s:e] for s, e in split_sentences(text)]
    ['Pas de fièvre.', 'Dr. Martin note une HTA.', 'Traitement : IEC.']
    """
    cuts = {i + 1 for i, char in enumerate(text) if char == "\n"}
    for match in _END_RE.finditer(text):
        following = _NEXT_RE.match(text, match.end()).end()
        if following >= len(text):
            continue
        char = text[following]
        if not (char.isupper() or char.isdigit() or char in '«"“(['):
            continue
        if match.group().startswith(".") and _is_abbreviation(text, match.start()):
            continue
        cuts.add(match.end())
    bounds = [0] + sorted(cuts) + [len(text)]
    return [span for start, end in zip(bounds, bounds[1:]) if (span := _strip(text, start, end))]


def _strip(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


@dataclass
class SubDocument(TextDocument):
    """A piece of a parent document: ``parent.text[offset:offset + len(text)] == text``."""

    offset: int = 0
    parent_id: str | None = None
    parent_index: int | None = None


@dataclass
class SplitReport:
    """Counts of a split: cuts given up to keep an entity whole, entities cut anyway (dropped)."""

    documents: int = 0
    sub_documents: int = 0
    merged_for_entities: int = 0
    cuts_moved: int = 0
    entities_dropped: int = 0
    annotated_dropped: int = 0  # of the entities as annotated, when the documents carry them apart

    def log(self, level: int = logging.INFO) -> None:
        logger.log(
            level,
            "split %d documents into %d; %d sentence boundaries kept inside entities, %d window "
            "cuts moved out of entities, %d entities dropped (cut by a window)%s",
            self.documents,
            self.sub_documents,
            self.merged_for_entities,
            self.cuts_moved,
            self.entities_dropped,
            f", {self.annotated_dropped} entities as annotated dropped" if self.annotated_dropped else "",
        )


class _Extents:
    """Entity extents (first start, last end), to ask quickly whether a cut falls inside one."""

    def __init__(self, entities: Sequence[Entity]):
        extents = sorted((e.start, e.end) for e in entities)
        self.starts = [start for start, _ in extents]
        # furthest[k]: the largest end among the k first entities (by start).
        self.furthest = [0]
        for _, end in extents:
            self.furthest.append(max(self.furthest[-1], end))

    def inside(self, left: int, right: int | None = None) -> bool:
        """Whether an entity starts before ``right`` and ends after ``left`` (a cut at a point
        when ``right`` is None), i.e. crosses the region between two pieces."""
        right = left if right is None else right
        return self.furthest[bisect.bisect_left(self.starts, right)] > left


def _merge_sentences(pieces: list[tuple[int, int]], extents: _Extents, report: SplitReport) -> list[tuple[int, int]]:
    merged = pieces[:1]
    for start, end in pieces[1:]:
        if extents.inside(merged[-1][1], start):
            merged[-1] = (merged[-1][0], end)
            report.merged_for_entities += 1
        else:
            merged.append((start, end))
    return merged


def _window_cut(text: str, start: int, limit: int, extents: _Extents) -> tuple[int, bool]:
    """Where to end a window ``[start, limit]``: the last space outside entities, else the last
    point outside entities, else ``limit``; and whether the cut had to move for an entity."""
    fallback = None
    for point in range(limit, start, -1):
        if extents.inside(point):
            continue
        if text[point - 1].isspace() or (point < len(text) and text[point].isspace()):
            return point, extents.inside(limit)
        fallback = fallback or point
    return (fallback, True) if fallback else (limit, False)


def _windows(
    text: str, piece: tuple[int, int], max_chars: int, extents: _Extents, report: SplitReport
) -> list[tuple[int, int]]:
    start, end = piece
    out = []
    while end - start > max_chars:
        cut, moved = _window_cut(text, start, start + max_chars, extents)
        report.cuts_moved += moved
        if (span := _strip(text, start, cut)) is not None:
            out.append(span)
        start = cut
    if (span := _strip(text, start, end)) is not None:
        out.append(span)
    return out


def _entities_by_piece(entities: Sequence[Entity], pieces: list[tuple[int, int]]) -> list[list[int]]:
    """For each piece (sorted, disjoint), the indices of the entities lying wholly inside it, in
    document order: one sweep over the entities sorted by start (not pieces x entities)."""
    order = sorted(range(len(entities)), key=lambda i: (entities[i].start, i))
    found: list[list[int]] = []
    position = 0
    for start, end in pieces:
        while position < len(order) and entities[order[position]].start < start:
            position += 1  # starts before this piece (in a gap, or cut): in no piece
        inside = []
        while position < len(order) and entities[order[position]].start < end:
            if entities[order[position]].end <= end:
                inside.append(order[position])
            position += 1
        found.append(sorted(inside))
    return found


def split_document(
    doc: TextDocument,
    *,
    mode: str = "sentence",
    max_chars: int | None = None,
    parent_index: int | None = None,
    report: SplitReport | None = None,
) -> list[SubDocument]:
    """Cut ``doc`` into sub-documents by sentence (``mode="sentence"``), then into windows of at
    most ``max_chars`` characters if given (required for ``mode="window"``).

    >>> doc = TextDocument("Fièvre. Toux sèche.", [Entity("DISO", [(8, 18)])], doc_id="d")
    >>> [(s.text, s.offset, s.entities[0].spans if s.entities else []) for s in split_document(doc)]
    [('Fièvre.', 0, []), ('Toux sèche.', 8, [(0, 10)])]
    """
    check_choice("mode", mode, SPLIT_MODES)
    if max_chars is not None and max_chars < 1 or (mode == "window" and max_chars is None):
        raise ConfigError("max_chars", f"must be a positive number of characters for mode={mode!r}, got {max_chars}")
    report = report if report is not None else SplitReport()
    # No cut inside an entity as annotated either (a document whose policies flattened its entities)
    extents = _Extents([*doc.entities, *(doc.annotated or [])])
    pieces = split_sentences(doc.text) if mode == "sentence" else [p for p in [_strip(doc.text, 0, len(doc.text))] if p]
    pieces = _merge_sentences(pieces, extents, report)
    if max_chars is not None:
        pieces = [window for piece in pieces for window in _windows(doc.text, piece, max_chars, extents, report)]
    annotated = doc.annotated
    by_piece = _entities_by_piece(doc.entities, pieces)
    annotated_by_piece = _entities_by_piece(annotated, pieces) if annotated is not None else [None] * len(pieces)
    subs, placed, placed_annotated = [], set(), set()
    for number, ((start, end), inside, inside_annotated) in enumerate(zip(pieces, by_piece, annotated_by_piece)):
        placed.update(inside)
        entities = [shift_entity(doc.entities[i], -start) for i in inside]
        base = doc.doc_id if doc.doc_id is not None else str(parent_index)
        metadata = {key: doc.metadata[key] for key in ("path",) if key in doc.metadata}
        sub = SubDocument(
            doc.text[start:end], entities, f"{base}#{number}", metadata, [],
            offset=start, parent_id=doc.doc_id, parent_index=parent_index,
        )
        if inside_annotated is not None:
            placed_annotated.update(inside_annotated)
            sub.annotated = [shift_entity(annotated[i], -start) for i in inside_annotated]
        subs.append(sub)
    dropped = [e for i, e in enumerate(doc.entities) if i not in placed]
    for entity in dropped:
        logger.warning("document %s: entity %s is cut by a split: left out", doc.doc_id, entity.describe())
    report.entities_dropped += len(dropped)
    if annotated is not None:
        dropped_annotated = [e for i, e in enumerate(annotated) if i not in placed_annotated]
        for entity in dropped_annotated:
            logger.warning("document %s: entity as annotated %s is cut by a split: left out",
                           doc.doc_id, entity.describe())
        report.annotated_dropped += len(dropped_annotated)
    report.documents += 1
    report.sub_documents += len(subs)
    return subs


def split_documents(
    documents: Sequence[TextDocument], *, mode: str = "sentence", max_chars: int | None = None
) -> tuple[list[SubDocument], SplitReport]:
    """Split every document (see :func:`split_document`); the report is logged at INFO.

    >>> subs, report = split_documents(corpus, max_chars=1000)  # doctest: +SKIP
    """
    report = SplitReport()
    subs = [
        sub
        for index, doc in enumerate(documents)
        for sub in split_document(doc, mode=mode, max_chars=max_chars, parent_index=index, report=report)
    ]
    report.log()
    return subs, report


def shift_entity(entity: Entity, delta: int) -> Entity:
    """A copy of ``entity`` with every offset moved by ``delta`` (text and attrs kept).

    >>> shift_entity(Entity("X", [(2, 5)], text="abc"), 10).spans
    [(12, 15)]
    """
    spans = [(start + delta, end + delta) for start, end in entity.spans]
    # Built directly rather than by dataclasses.replace: a split makes one per entity (5x cheaper).
    return Entity(entity.label, spans, entity.text, dict(entity.attrs), entity.id, entity.score)


def merge_predictions(sub_documents: Sequence[SubDocument], parents: Sequence[TextDocument]) -> list[TextDocument]:
    """The ``parents`` holding the entities of their sub-documents (e.g. predictions) in
    parent offsets; the parents' own entities are replaced. Sub-documents find their parent by
    ``parent_index``, else by ``parent_id``.

    >>> subs, _ = split_documents(gold)  # doctest: +SKIP
    >>> predicted = merge_predictions(tagger.predict(subs), gold)  # doctest: +SKIP
    """
    by_id = {doc.doc_id: index for index, doc in enumerate(parents) if doc.doc_id is not None}
    found: list[list[Entity]] = [[] for _ in parents]
    for sub in sub_documents:
        index = sub.parent_index if sub.parent_index is not None else by_id.get(sub.parent_id)
        if index is None or not 0 <= index < len(parents):
            raise DataError(f"sub-document {sub.doc_id!r} has no parent among the {len(parents)} given")
        parent = parents[index]
        if parent.text[sub.offset : sub.offset + len(sub.text)] != sub.text:
            raise DataError(f"sub-document {sub.doc_id!r} does not match its parent's text at offset {sub.offset}")
        found[index] += [dataclasses.replace(shift_entity(e, sub.offset), text=None) for e in sub.entities]
    return [
        parent.with_entities(sorted(entities, key=lambda e: (e.start, e.end)))
        for parent, entities in zip(parents, found)
    ]
