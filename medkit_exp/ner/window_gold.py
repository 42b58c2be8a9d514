"""The gold entities as annotated, in the coordinates of a window's scored positions.

The training evaluation scores each window on its scored positions (position ``i`` is the
i-th word the window owns; with ``tag_subtokens``, the i-th sub-token of those words) and
decodes chunks ``(label, first, end)`` there. To score the same predictions against the
documents *as annotated* (nesting, overlaps and discontinuity intact), each annotated entity
is written once, in the window that owns its first word, as a tuple in those coordinates:

- ``(label, first, end)`` for a one-fragment entity whose edges fall on word boundaries;
- ``(label, first1, end1, first2, end2, ...)`` for a discontinuous one (never equal to a
  decoded chunk: a flat or layered tagger cannot express it, so it counts as a miss);
- ``(label, UNALIGNED, start, end, ...)`` (character offsets) for an entity with an edge inside
  a word or covering no word: no decoded chunk can equal it either.

An entity that runs past the window's owned words gets coordinates past its last scored
position, so it is a miss there too (the window's decoded chunks stop at its last position).

Pure functions on word offsets, no model and no torch.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from medkit_exp.ner.documents import Entity

#: The marker in place of word coordinates of an entity whose edges are not word boundaries:
#: a string where a decoded chunk has an int, so the tuple can never equal one.
UNALIGNED = "unaligned"

#: One annotated entity of a window: ``(label, first, end[, first2, end2 ...])`` or
#: ``(label, UNALIGNED, start, end[, ...])``.
WindowEntity = tuple


class LocatedEntity(NamedTuple):
    """An annotated entity placed on a document's words.

    ``anchor`` is the word that decides which window holds it (its first word, i.e. the first
    word ending after its start, clamped to the last word); ``fragments`` the ``[first, end)``
    word range of each fragment, None when an edge is not a word boundary."""

    label: str
    anchor: int
    fragments: tuple[tuple[int, int], ...] | None
    spans: tuple[tuple[int, int], ...]


def locate_entities(words: Sequence[tuple[int, int]], entities: Iterable[Entity]) -> list[LocatedEntity]:
    """Each entity of ``entities`` on ``words`` (sorted, non-overlapping ``(start, end)`` offsets).

    >>> words = [(0, 7), (8, 19)]  # "cancers colorectaux"
    >>> [e.fragments for e in locate_entities(words, [Entity("DISO", [(0, 19)]), Entity("DISO", [(0, 5)])])]
    [((0, 2),), None]
    """
    starts = {word[0]: index for index, word in enumerate(words)}
    ends = {word[1]: index + 1 for index, word in enumerate(words)}
    word_ends = [word[1] for word in words]
    located = []
    for entity in entities:
        anchor = min(bisect.bisect_right(word_ends, entity.start), max(len(words) - 1, 0))
        fragments = tuple((starts.get(start), ends.get(end)) for start, end in entity.spans)
        aligned = all(first is not None and end is not None and first < end for first, end in fragments)
        located.append(LocatedEntity(entity.label, anchor, fragments if aligned else None, tuple(entity.spans)))
    return located


def window_of_word(owned: Sequence[range], word: int) -> int:
    """The index of the window whose owned words hold ``word`` (the last window when none does:
    a document without words has one window owning nothing).

    >>> window_of_word([range(0, 3), range(3, 5)], 3), window_of_word([range(0, 0)], 0)
    (1, 0)
    """
    for index, words in enumerate(owned):
        if word in words:
            return index
    return len(owned) - 1


def scored_offsets(word_ids: Sequence[int], owned: range, per_subtoken: bool) -> list[int]:
    """Where each owned word's first scored position is, plus the number of scored positions
    (``len(owned) + 1`` values): ``0, 1, 2...`` when one position per word is scored, the
    cumulative sub-token counts when every sub-token of the owned words is.

    >>> scored_offsets([4, 4, 5, 6, 6, 6, 7], range(5, 7), per_subtoken=True)
    [0, 1, 4]
    >>> scored_offsets([4, 4, 5, 6, 6, 6, 7], range(5, 7), per_subtoken=False)
    [0, 1, 2]
    """
    if not per_subtoken:
        return list(range(len(owned) + 1))
    sizes = [0] * len(owned)
    for word in word_ids:
        if word in owned:
            sizes[word - owned.start] += 1
    offsets = [0]
    for size in sizes:
        offsets.append(offsets[-1] + size)
    return offsets


def _position(offsets: Sequence[int], owned: range, word: int) -> int:
    """The scored position of ``word``'s start (a word index past the owned words maps past the
    last scored position, one per word, so it never equals a decoded chunk's edge)."""
    index = word - owned.start
    if index < len(offsets):
        return offsets[index]
    return offsets[-1] + index - (len(offsets) - 1)


def window_tuple(entity: LocatedEntity, owned: range, offsets: Sequence[int]) -> WindowEntity:
    """``entity`` (held by the window owning ``owned``) in that window's scored coordinates."""
    if entity.fragments is None:
        return (entity.label, UNALIGNED, *(edge for span in entity.spans for edge in span))
    coordinates = (_position(offsets, owned, edge) for fragment in entity.fragments for edge in fragment)
    return (entity.label, *coordinates)


def windows_annotated(
    located: Sequence[LocatedEntity], owned: Sequence[range], offsets: Sequence[Sequence[int]]
) -> list[list[WindowEntity]]:
    """The annotated tuples of each window (``owned[i]`` its owned words, ``offsets[i]`` from
    :func:`scored_offsets`): every entity in exactly one window, the one owning its anchor word.

    >>> located = locate_entities([(0, 7), (8, 19)], [Entity("DISO", [(0, 19)]), Entity("DISO", [(8, 19)])])
    >>> windows_annotated(located, [range(0, 1), range(1, 2)], [[0, 1], [0, 1]])
    [[('DISO', 0, 2)], [('DISO', 0, 1)]]
    """
    result: list[list[WindowEntity]] = [[] for _ in owned]
    if not owned:
        return result
    for entity in located:
        index = window_of_word(owned, entity.anchor)
        result[index].append(window_tuple(entity, owned[index], offsets[index]))
    return result
