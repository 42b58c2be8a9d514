"""Word-level tagging: a word tokenizer with offsets, entities <-> tags, tag schemes.

Schemes: ``"iob2"`` (B-/I-), ``"bilou"`` (B-/I-/L-/U-), ``"bioes"`` (B-/I-/E-/S-) can be
written and read; ``"iob1"`` (I- starts an entity, B- only between two adjacent entities of the
same label) can be read and converted.

Decoding is STRICT, exactly as seqeval's ``mode="strict"``: an entity starts only at ``B-``
(or ``U-``/``S-``); it continues over ``I-`` (and ends at ``L-``/``E-``) of the same label; an
``I-X`` after ``O`` or after another label is not an entity start and is ignored; under
BILOU/BIOES a ``B-X I-X`` that never reaches ``L-X``/``E-X`` is not an entity. So metrics on
predicted tags and the entities sent to users agree with each other.
"""

from __future__ import annotations

import bisect
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from medkit_exp.ner.documents import Entity
from medkit_exp.ner.textfiles import clip

logger = logging.getLogger(__name__)

SCHEMES = ("iob1", "iob2", "bioes", "bilou")
OUTPUT_SCHEMES = ("iob2", "bioes", "bilou")
_PREFIXES = {"iob1": "BI", "iob2": "BI", "bioes": "BIES", "bilou": "BILU"}
# (last, single) prefixes of the schemes that close their entities explicitly.
_CLOSING = {"bioes": ("E", "S"), "bilou": ("L", "U")}

# A word is a run of letters/digits (combining accents included, for decomposed French text);
# any other non-space character is a word by itself, so "l'hypertension" gives l / ' / hypertension.
_WORD_RE = re.compile(r"(?:[^\W_]|[\u0300-\u036f])+|\S")


class Word(NamedTuple):
    """A word and its character offsets; ``word[0], word[1]`` are its start and end."""

    start: int
    end: int
    text: str


def tokenize_words(text: str) -> list[Word]:
    """Split ``text`` into words (letter/digit runs) and single punctuation marks, with offsets.

    >>> [w.text for w in tokenize_words("Pas d'hypertension (HTA), 2.5 mg.")]
    ['Pas', 'd', "'", 'hypertension', '(', 'HTA', ')', ',', '2', '.', '5', 'mg', '.']
    """
    return [Word(match.start(), match.end(), match.group()) for match in _WORD_RE.finditer(text)]


def _check_scheme(scheme: str, allowed: tuple[str, ...] = SCHEMES) -> None:
    if scheme not in allowed:
        raise ValueError(f"unknown tagging scheme {scheme!r}, expected one of {', '.join(allowed)}")


def split_tag(tag: str, scheme: str = "iob2") -> tuple[str, str | None]:
    """``"B-Disease"`` -> ``("B", "Disease")``, ``"O"`` -> ``("O", None)``; ValueError if the tag
    is malformed or its prefix is not part of ``scheme``.

    >>> split_tag("U-DISO", "bilou")
    ('U', 'DISO')
    """
    if tag == "O":
        return "O", None
    prefix, sep, label = tag.partition("-")
    # The prefix is exactly one letter of the scheme: "-X", "BI-X" or "b-X" are not tags (a
    # substring test would take "" and "BI" for prefixes of "BI").
    if not sep or len(prefix) != 1 or prefix not in _PREFIXES[scheme]:
        allowed = "/".join(f"{letter}-" for letter in _PREFIXES[scheme])
        raise ValueError(f"unknown tag {clip(tag)} for the {scheme} scheme (expected O or {allowed}LABEL)")
    if not label or any(char.isspace() for char in label):
        raise ValueError(
            f"unknown tag {clip(tag)} for the {scheme} scheme: the label after {prefix}- is empty or holds spaces"
        )
    return prefix, label


def make_tag_labels(labels: Iterable[str], scheme: str = "iob2") -> list[str]:
    """The tag list for ``labels``: ``"O"`` first, then each label (sorted) with every prefix.

    >>> make_tag_labels(["DISO", "ANAT"], "iob2")
    ['O', 'B-ANAT', 'I-ANAT', 'B-DISO', 'I-DISO']
    """
    _check_scheme(scheme, OUTPUT_SCHEMES)
    names = sorted(set(labels))
    for name in names:
        if not name or any(char.isspace() for char in name):
            raise ValueError(f"bad entity label {name!r} (empty or with spaces)")
    return ["O"] + [f"{prefix}-{name}" for name in names for prefix in _PREFIXES[scheme]]


def labels_of_tags(tags: Iterable[str]) -> list[str]:
    """The sorted entity labels named by a list of tags (prefixes removed).

    >>> labels_of_tags(["O", "B-ANAT", "I-ANAT", "U-DISO"])
    ['ANAT', 'DISO']
    """
    return sorted({tag.partition("-")[2] for tag in tags if tag != "O"})


def tags_to_chunks(tags: Sequence[str], scheme: str = "iob2") -> list[tuple[str, int, int]]:
    """Decode tags into ``(label, first word, end word)`` chunks (end exclusive), strictly.

    >>> tags_to_chunks(["O", "I-X", "B-X", "I-X", "B-Y"], "iob2")
    [('X', 2, 4), ('Y', 4, 5)]
    >>> tags_to_chunks(["B-X", "I-X", "O", "U-Y"], "bilou")
    [('Y', 3, 4)]
    """
    _check_scheme(scheme)
    parsed = [split_tag(tag, scheme) for tag in tags]
    chunks = []
    last, single = _CLOSING.get(scheme, ("", ""))
    i = 0
    while i < len(parsed):
        prefix, label = parsed[i]
        if prefix == single:
            chunks.append((label, i, i + 1))
            i += 1
            continue
        starts = prefix == "B" or (scheme == "iob1" and prefix == "I")
        if not starts:
            i += 1
            continue
        j, previous = i + 1, prefix
        # IOB1/IOB2 chunks run over I-X; BILOU/BIOES ones over I-X up to one L-X/E-X.
        while j < len(parsed) and parsed[j][1] == label and previous in "BI" and parsed[j][0] in ("I", last or "I"):
            previous = parsed[j][0]
            j += 1
        if scheme in ("iob1", "iob2") or previous == last:
            chunks.append((label, i, j))
        i = j
    return chunks


def chunks_to_tags(chunks: Iterable[tuple[str, int, int]], length: int, scheme: str = "iob2") -> list[str]:
    """Encode non-overlapping ``(label, first, end)`` chunks as ``length`` tags.

    >>> chunks_to_tags([("X", 0, 3), ("Y", 4, 5)], 5, "bilou")
    ['B-X', 'I-X', 'L-X', 'O', 'U-Y']
    """
    _check_scheme(scheme, OUTPUT_SCHEMES)
    tags = ["O"] * length
    last, single = _CLOSING.get(scheme, ("I", "B"))
    for label, first, end in chunks:
        if not 0 <= first < end <= length or any(tag != "O" for tag in tags[first:end]):
            raise ValueError(f"chunk {(label, first, end)} is out of range or overlaps another")
        if end - first == 1:
            tags[first] = f"{single}-{label}"
            continue
        tags[first:end] = [f"B-{label}"] + [f"I-{label}"] * (end - first - 2) + [f"{last}-{label}"]
    return tags


def convert_tags(tags: Sequence[str], source: str, target: str) -> list[str]:
    """Re-encode tags from one scheme to another (invalid pieces of ``tags`` are dropped, as
    strict decoding does).

    >>> convert_tags(["I-X", "I-X", "B-X", "O"], "iob1", "iob2")
    ['B-X', 'I-X', 'B-X', 'O']
    >>> convert_tags(["B-X", "E-X", "S-Y"], "bioes", "bilou")
    ['B-X', 'L-X', 'U-Y']
    """
    return chunks_to_tags(tags_to_chunks(tags, source), len(tags), target)


def iob1_to_iob2(tags: Sequence[str]) -> list[str]:
    """IOB1 -> IOB2 (every entity starts with ``B-``)."""
    return convert_tags(tags, "iob1", "iob2")


def bioes_to_bilou(tags: Sequence[str]) -> list[str]:
    """BIOES -> BILOU (``E-`` -> ``L-``, ``S-`` -> ``U-``)."""
    return convert_tags(tags, "bioes", "bilou")


def find_tag_errors(tags: Sequence[str], scheme: str) -> list[tuple[int, str]]:
    """``(index, message)`` for each tag that breaks ``scheme`` (malformed tags, ``I-X`` after
    ``O`` in IOB2, unclosed ``B-X`` in BILOU...). IOB1 allows ``I-X`` after ``O``.

    >>> find_tag_errors(["O", "I-X"], "iob2")
    [(1, "'I-X' after 'O' (an IOB2 entity starts with B-)")]
    >>> find_tag_errors(["O", "I-X"], "iob1")
    []
    """
    _check_scheme(scheme)
    problems: list[tuple[int, str]] = []
    parsed: list[tuple[str, str | None]] = []
    for index, tag in enumerate(tags):
        try:
            parsed.append(split_tag(tag, scheme))
        except ValueError as error:
            problems.append((index, str(error)))
            parsed.append(("O", None))
    if scheme == "iob1" or problems:
        return problems
    last = _CLOSING.get(scheme, ("I", ""))[0]
    edge = ("O", None)
    for index, (prefix, label) in enumerate(parsed):
        before = parsed[index - 1] if index else edge
        after = parsed[index + 1] if index + 1 < len(parsed) else edge
        continues_before = before[0] in "BI" and before[1] == label
        if prefix in ("I", last) and not continues_before:
            start = "B-" if scheme == "iob2" else "B- (or U-/S- for one word)"
            problems.append(
                (
                    index,
                    f"{tags[index]!r} after {tags[index - 1] if index else 'the start'!r} "
                    f"(an {scheme.upper()} entity starts with {start})",
                )
            )
        elif scheme != "iob2" and prefix in "BI" and not (after[0] in ("I", last) and after[1] == label):
            problems.append((index, f"{tags[index]!r} is not closed by I-/{last}-{label}"))
    return problems


@dataclass
class TaggingReport:
    """Counts of what :func:`spans_to_tags` had to change to fit entities on words."""

    entities: int = 0
    tagged: int = 0
    snapped: int = 0
    discontinuous_filled: int = 0
    overlapping_dropped: int = 0
    empty_dropped: int = 0

    def log(self, level: int = logging.INFO) -> None:
        logger.log(
            level,
            "tagging: %d entities, %d tagged; %d snapped to word boundaries, %d discontinuous filled, "
            "%d dropped as overlapping, %d dropped as covering no word",
            self.entities,
            self.tagged,
            self.snapped,
            self.discontinuous_filled,
            self.overlapping_dropped,
            self.empty_dropped,
        )


def word_span(
    entity: Entity, starts: Sequence[int], ends: Sequence[int], report: TaggingReport
) -> tuple[int, int] | None:
    """The words ``[first, end)`` that ``entity`` covers (``starts``/``ends``: the words' offsets),
    from the first word ending after its start to the last starting before its end (a
    discontinuous entity covers its gaps). Counts the entity in ``report`` (and as
    ``discontinuous_filled``); None, counted as ``empty_dropped``, when it covers no word."""
    report.entities += 1
    report.discontinuous_filled += entity.is_discontinuous
    first = bisect.bisect_right(ends, entity.start)  # first word ending after the start
    end = bisect.bisect_left(starts, entity.end)  # words up to here start before the end
    if first >= end:
        report.empty_dropped += 1
        logger.debug("entity %s covers no word: dropped", entity.describe())
        return None
    return first, end


def count_snapped(
    entity: Entity, span: tuple[int, int], starts: Sequence[int], ends: Sequence[int], report: TaggingReport
) -> None:
    """Count ``entity`` as ``snapped`` when its edges are not those of the words ``span`` it is tagged on."""
    first, end = span
    if starts[first] != entity.start or ends[end - 1] != entity.end:
        report.snapped += 1
        logger.debug("entity %s snapped to word boundaries", entity.describe())


def spans_to_tags(
    words: Sequence[tuple[int, int]] | Sequence[Word],
    entities: Iterable[Entity],
    scheme: str = "iob2",
    report: TaggingReport | None = None,
) -> list[str]:
    """One tag per word for ``entities`` (sorted, non-overlapping ``words`` with offsets).

    An entity boundary inside a word is moved out to the word's boundary (counted as
    ``snapped``); a discontinuous entity is tagged from its first start to its last end
    (``discontinuous_filled``); an entity overlapping one tagged before it (entities taken by
    start, longest first) is dropped (``overlapping_dropped``). Pass a ``report`` to get counts.

    >>> words = tokenize_words("Pas d'hypertension artérielle.")
    >>> spans_to_tags(words, [Entity("DISO", [(6, 29)])], "bilou")
    ['O', 'O', 'O', 'B-DISO', 'L-DISO', 'O']
    """
    _check_scheme(scheme, OUTPUT_SCHEMES)
    report = report if report is not None else TaggingReport()
    starts = [word[0] for word in words]
    ends = [word[1] for word in words]
    taken = bytearray(len(words))  # 1 where a word is tagged: a memchr-fast clash test, linear overall
    chunks = []
    for entity in sorted(entities, key=lambda e: (e.start, -e.end)):
        found = word_span(entity, starts, ends, report)
        if found is None:
            continue
        first, end = found
        if taken.find(1, first, end) >= 0:
            report.overlapping_dropped += 1
            logger.debug("entity %s overlaps an entity already tagged: dropped", entity.describe())
            continue
        count_snapped(entity, found, starts, ends, report)
        taken[first:end] = b"\x01" * (end - first)
        chunks.append((entity.label, first, end))
        report.tagged += 1
    return chunks_to_tags(chunks, len(words), scheme)


def tags_to_spans(
    words: Sequence[tuple[int, int]] | Sequence[Word],
    tags: Sequence[str],
    scheme: str = "iob2",
    text: str | None = None,
) -> list[Entity]:
    """The entities encoded by ``tags`` (one per word), decoded strictly (see the module doc).

    With ``text``, each entity gets its covered text.

    >>> words = tokenize_words("Pas d'hypertension artérielle.")
    >>> [(e.label, e.spans) for e in tags_to_spans(words, ["O", "O", "O", "B-DISO", "I-DISO", "O"])]
    [('DISO', [(6, 29)])]
    """
    if len(words) != len(tags):
        raise ValueError(f"{len(words)} words but {len(tags)} tags")
    entities = []
    for label, first, end in tags_to_chunks(tags, scheme):
        start, stop = words[first][0], words[end - 1][1]
        entities.append(Entity(label, [(start, stop)], text=None if text is None else text[start:stop]))
    return entities
