"""Nested entities as stacked tag layers (pure Python, no torch).

A flat tag sequence holds one entity per word. Nested and overlapping entities are spread over
``depth`` layers, each an ordinary tag sequence of the tagging scheme:

- entities are snapped to words (as :func:`medkit_exp.ner.tagging.spans_to_tags` does, and
  counted the same way), then each goes into the first layer where it overlaps nothing, taken in
  one of two orders (``order``):
- ``"outer_first"``: by (first word, longest first, label) (greedy interval colouring, taken by
  start: it uses exactly as many layers as the deepest overlap). Layer 0 holds the outermost
  entities (what ``keep_longest`` keeps), layer 1 the entities inside them, and so on;
- ``"inner_first"`` (the nested tagger's default): by length, shortest first. Layer 0 holds the
  entities that hold no other, layer 1 those holding layer-0 ones, and so on: an entity has the
  same layer alone or nested. Nested entities fit in as many layers as the deepest nesting;
  crossing (not nested) overlaps may take one more;
- either way the same words under two labels take two layers;
- an entity that finds no free layer among ``depth`` is dropped and counted (``too_deep_dropped``);
  a second entity with the same label on the same words is one entity (``duplicates_dropped``).

Decoding reads each layer strictly (:func:`~medkit_exp.ner.tagging.tags_to_chunks`) and takes
the union (a label and word range found in two layers is one entity).

>>> from medkit_exp.ner.documents import Entity
>>> from medkit_exp.ner.tagging import tokenize_words
>>> words = tokenize_words("cancers colorectaux")
>>> tags = layered_tags(words, [Entity("DISO", [(0, 19)]), Entity("DISO", [(0, 7)])], 2)
>>> tags
[['B-DISO', 'B-DISO'], ['I-DISO', 'O']]
>>> layers_to_chunks(tags)
[('DISO', 0, 2), ('DISO', 0, 1)]
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from medkit_exp.ner.documents import Entity
from medkit_exp.ner.tagging import TaggingReport, Word, chunks_to_tags, count_snapped, tags_to_chunks, word_span

logger = logging.getLogger(__name__)

Chunk = tuple[str, int, int]  # (label, first word, end word), end exclusive
#: How entities fill the layers: outermost first (layer 0 = the entities no other holds) or
#: innermost first (layer 0 = the entities that hold no other).
LAYER_ORDERS = ("outer_first", "inner_first")

__all__ = [
    "LAYER_ORDERS", "NestingReport", "assign_layers", "assign_layers_inner_first", "layered_tags", "layered_tags_to_spans", "layers_to_chunks",
    "max_overlap", "word_chunks",
]


@dataclass
class NestingReport(TaggingReport):
    """:class:`~medkit_exp.ner.tagging.TaggingReport`'s counts (``overlapping_dropped`` stays 0:
    overlaps are layered) plus what layering had to drop."""

    too_deep_dropped: int = 0
    duplicates_dropped: int = 0

    def log(self, level: int = logging.INFO) -> None:
        logger.log(
            level,
            "nested tagging: %d entities, %d tagged; %d snapped to word boundaries, %d discontinuous filled, "
            "%d dropped as deeper than the layers, %d dropped as duplicates (same label, same words), "
            "%d dropped as covering no word",
            self.entities, self.tagged, self.snapped, self.discontinuous_filled, self.too_deep_dropped,
            self.duplicates_dropped, self.empty_dropped,
        )


def word_chunks(
    words: Sequence[tuple[int, int]] | Sequence[Word], entities: Iterable[Entity], report: NestingReport
) -> list[Chunk]:
    """Each entity as a ``(label, first word, end word)`` chunk, in layering order (first word,
    longest first, label). Edges inside a word move out to its boundaries (``snapped``); a
    discontinuous entity covers its gaps (``discontinuous_filled``: never an exact match of its
    annotated fragments); an entity over no word, or repeating a chunk, is dropped and counted."""
    starts = [word[0] for word in words]
    ends = [word[1] for word in words]
    seen: set[Chunk] = set()
    chunks = []
    for entity in sorted(entities, key=lambda e: (e.start, -e.end, e.label)):
        found = word_span(entity, starts, ends, report)
        if found is None:
            continue
        chunk = (entity.label, *found)
        if chunk in seen:
            report.duplicates_dropped += 1
            logger.debug("entity %s repeats an entity on the same words: dropped", entity.describe())
            continue
        seen.add(chunk)
        count_snapped(entity, found, starts, ends, report)
        chunks.append(chunk)
    return sorted(chunks, key=lambda c: (c[1], -c[2], c[0]))


def assign_layers(chunks: Sequence[Chunk], depth: int) -> list[int | None]:
    """The outermost-first layer of each chunk (``chunks`` sorted by first word, longest first):
    the first of ``depth`` layers whose chunks all end at or before its first word; None when
    none is free.

    >>> assign_layers([("X", 0, 3), ("X", 0, 1), ("Y", 2, 5), ("Z", 3, 4)], 3)
    [0, 1, 1, 0]
    """
    layer_ends = [0] * depth  # where each layer's last chunk ends
    layers: list[int | None] = []
    for _, first, end in chunks:
        layer = next((index for index, last in enumerate(layer_ends) if last <= first), None)
        if layer is not None:
            layer_ends[layer] = end
        layers.append(layer)
    return layers


def assign_layers_inner_first(chunks: Sequence[Chunk], depth: int, nb_words: int) -> list[int | None]:
    """The innermost-first layer of each chunk: chunks taken by length (shortest first, then by
    first word), each into the first of ``depth`` layers where it overlaps nothing; None when
    none is free. An entity that holds no other one is always in layer 0, whatever holds it
    ("cancers" alone or inside "cancers colorectaux"), one that holds entities of layer k at most
    goes to layer k + 1: a layer is the entity's height, the same target wherever it occurs.

    >>> assign_layers_inner_first([("X", 0, 3), ("X", 0, 1), ("Y", 2, 5), ("Z", 3, 4)], 3, 5)
    [1, 0, 2, 0]
    """
    taken = [bytearray(nb_words) for _ in range(depth)]  # 1 where a layer holds a chunk's word
    layers: list[int | None] = [None] * len(chunks)
    for index in sorted(range(len(chunks)), key=lambda i: (chunks[i][2] - chunks[i][1], chunks[i][1])):
        _, first, end = chunks[index]
        layer = next((k for k in range(depth) if taken[k].find(1, first, end) < 0), None)
        if layer is not None:
            taken[layer][first:end] = b"\x01" * (end - first)
        layers[index] = layer
    return layers


def max_overlap(chunks: Iterable[Chunk]) -> int:
    """The most chunks covering one word: the layers needed to hold them all.

    >>> max_overlap([("X", 0, 3), ("X", 0, 1), ("Y", 2, 5)])
    2
    """
    events = sorted(point for _, first, end in chunks for point in ((first, 1), (end, -1)))
    depth = best = 0
    for _, step in events:  # at one position, ends (-1) sort before starts (+1): end is exclusive
        depth += step
        best = max(best, depth)
    return best


def layered_tags(
    words: Sequence[tuple[int, int]] | Sequence[Word],
    entities: Iterable[Entity],
    depth: int,
    scheme: str = "iob2",
    report: NestingReport | None = None,
    order: str = "outer_first",
) -> list[list[str]]:
    """For each word, its tag in each of ``depth`` layers (see the module doc), layers filled
    ``order``: "outer_first" (:func:`assign_layers`) or "inner_first"
    (:func:`assign_layers_inner_first`); pass a ``report`` to get the counts of what was
    snapped, filled or dropped."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    if order not in LAYER_ORDERS:
        raise ValueError(f"order must be one of {', '.join(LAYER_ORDERS)}, got {order!r}")
    report = report if report is not None else NestingReport()
    chunks = word_chunks(words, entities, report)
    per_layer: list[list[Chunk]] = [[] for _ in range(depth)]
    assigned = (assign_layers(chunks, depth) if order == "outer_first"
                else assign_layers_inner_first(chunks, depth, len(words)))
    for chunk, layer in zip(chunks, assigned):
        if layer is None:
            report.too_deep_dropped += 1
            logger.debug("entity %s on words [%d, %d) is deeper than %d layers: dropped", chunk[0], chunk[1],
                         chunk[2], depth)
            continue
        per_layer[layer].append(chunk)
        report.tagged += 1
    columns = [chunks_to_tags(layer_chunks, len(words), scheme) for layer_chunks in per_layer]
    return [list(row) for row in zip(*columns)] if words else []


def layers_to_chunks(word_tags: Sequence[Sequence[str]], scheme: str = "iob2") -> list[Chunk]:
    """The union of the chunks each layer decodes to (strictly), sorted by first word, longest
    first, then label; a chunk found in several layers is given once."""
    depth = len(word_tags[0]) if word_tags else 0
    found: set[Chunk] = set()
    for layer in range(depth):
        found.update(tags_to_chunks([row[layer] for row in word_tags], scheme))
    return sorted(found, key=lambda c: (c[1], -c[2], c[0]))


def layered_tags_to_spans(
    words: Sequence[tuple[int, int]] | Sequence[Word],
    word_tags: Sequence[Sequence[str]],
    scheme: str = "iob2",
    text: str | None = None,
) -> list[Entity]:
    """The entities the layered tags encode, at the words' character offsets (with their covered
    text when ``text`` is given), in the order of :func:`layers_to_chunks`."""
    if len(words) != len(word_tags):
        raise ValueError(f"{len(words)} words but {len(word_tags)} rows of tags")
    entities = []
    for label, first, end in layers_to_chunks(word_tags, scheme):
        start, stop = words[first][0], words[end - 1][1]
        entities.append(Entity(label, [(start, stop)], text=None if text is None else text[start:stop]))
    return entities
