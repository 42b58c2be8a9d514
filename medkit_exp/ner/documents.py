"""The document model of ``medkit_exp.ner``: texts, entities, relations and read reports.

Small, dependency-free dataclasses. Offsets are character offsets into ``TextDocument.text``
(end exclusive), as in BRAT and medkit. medkit's own classes are reached through
:mod:`medkit_exp.ner.formats.medkit`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# read_text_file is re-exported: it lived here before the text-file helpers had their own module.
from medkit_exp.ner.textfiles import check_readable, clip, clip_message, read_text_file, shorten  # noqa: F401


logger = logging.getLogger(__name__)

CharSpan = tuple[int, int]


def covered_text(text: str, spans: list[CharSpan]) -> str:
    """The text under ``spans``, fragments joined by one space (BRAT's convention).

    >>> covered_text("Sécrétion d' oestrone, d' oestradiol", [(0, 9), (23, 36)])
    "Sécrétion d' oestradiol"
    """
    return " ".join(text[start:end] for start, end in spans)


@dataclass
class Entity:
    """A labelled mention: one span, or several fragments for a discontinuous entity.

    ``spans`` is normalised to a sorted list of ``(start, end)`` int tuples. ``text`` is the
    covered text (fragments joined by a space); a :class:`TextDocument` fills it from its own
    text when left to ``None``. ``attrs`` holds normalisations and attributes, e.g.
    ``{"note": "C0011849", "norm": ["MeSH:D003920"]}``; ``score`` is for predictions.

    >>> e = Entity("DISO", [(305, 315), (285, 293)])
    >>> e.spans, e.start, e.end, e.is_discontinuous
    ([(285, 293), (305, 315)], 285, 315, True)
    """

    label: str
    spans: list[CharSpan]
    text: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    score: float | None = None

    def __post_init__(self) -> None:
        if len(self.spans) == 1:  # the usual case, kept cheap: corpora make millions of entities
            ((start, end),) = self.spans
            spans = [(int(start), int(end))]
        else:
            spans = sorted((int(start), int(end)) for start, end in self.spans)
        if not spans:
            raise ValueError(f"entity {self.id or self.label!r} has no span")
        for start, end in spans:
            if start < 0 or start >= end:
                raise ValueError(f"entity {self.id or self.label!r}: bad span ({start}, {end})")
        self.spans = spans

    @property
    def start(self) -> int:
        """Start of the first fragment."""
        return self.spans[0][0]

    @property
    def end(self) -> int:
        """End of the last fragment."""
        return self.spans[-1][1]

    @property
    def is_discontinuous(self) -> bool:
        return len(self.spans) > 1

    def describe(self) -> str:
        """A short human description for error messages: ``T3 ANAT [26, 36) 'hépatiques'``."""
        spans = ";".join(f"{start}-{end}" for start, end in self.spans)
        if len(self.spans) > 6:  # a description stays one short line, whatever the entity holds
            spans = ";".join(f"{start}-{end}" for start, end in self.spans[:3]) + f";… ({len(self.spans)} fragments)"
        ident = f"{shorten(self.id, 40)} " if self.id else ""
        return f"{ident}{shorten(self.label, 60)} [{spans}] {clip(self.text)}"


@dataclass
class Relation:
    """A relation, event or equivalence between annotations, kept as read (mostly from BRAT).

    ``kind`` is ``"relation"`` (BRAT ``R``), ``"event"`` (``E``, whose first argument is the
    trigger) or ``"equiv"`` (``*``). ``args`` are ``(role, annotation id)`` pairs in file order.

    >>> Relation("R1", "Origin", [("Arg1", "T3"), ("Arg2", "T4")]).args[0]
    ('Arg1', 'T3')
    """

    id: str
    label: str
    args: list[tuple[str, str]]
    kind: str = "relation"
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class TextDocument:
    """A text with its entities (and, optionally, relations).

    >>> doc = TextDocument("Diabète de type 2.", [Entity("DISO", [(0, 17)])], doc_id="d1")
    >>> doc.entities[0].text
    'Diabète de type 2'
    """

    text: str
    entities: list[Entity] = field(default_factory=list)
    doc_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    relations: list[Relation] = field(default_factory=list)
    #: The entities as annotated, before policies made them fit a tagger (nesting, overlaps and
    #: discontinuity intact): what honest scores count. None: the same as ``entities``.
    annotated: list[Entity] | None = None

    def __post_init__(self) -> None:
        # Fill the covered text of entities created without it; copies, so that an entity
        # shared with another document is never changed behind the caller's back.
        self.entities = [
            entity if entity.text is not None else dataclasses.replace(entity, text=self.covered_text(entity))
            for entity in self.entities
        ]

    def covered_text(self, entity: Entity) -> str:
        """The document text under ``entity`` (fragments joined by a space)."""
        return covered_text(self.text, entity.spans)

    @property
    def annotated_entities(self) -> list[Entity]:
        """The entities as annotated (:attr:`annotated`, else :attr:`entities`)."""
        return self.entities if self.annotated is None else self.annotated

    def with_entities(self, entities: list[Entity]) -> TextDocument:
        """A copy of this document, of the same class (a sub-document keeps its offset), with
        metadata copied shallowly, holding ``entities`` instead, and no :attr:`annotated`
        entities (e.g. a prediction)."""
        return dataclasses.replace(
            self, entities=list(entities), metadata=dict(self.metadata), relations=list(self.relations), annotated=None
        )


@dataclass
class SkippedItem:
    """One piece of input left out under ``errors="skip"``, with where and why."""

    path: str | None
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = "" if self.path is None else (self.path if self.line is None else f"{self.path}:{self.line}")
        return f"{where}: {self.reason}" if where else self.reason


@dataclass
class ReadReport:
    """What a reader did: files and documents read, what it skipped, ignored or noticed.

    ``skipped`` lists bad input left out under ``errors="skip"``; ``ignored`` counts what an
    explicit option told the reader to leave out (e.g. ``{"relation": 12}``); ``warnings`` counts
    what the input holds that the reader did not read, by kind (e.g. ``{"editor backups not
    read": 52}``, logged at WARNING with a first example; ``errors="strict"`` makes each an
    error); ``notes`` are facts worth knowing (e.g. the tagging scheme detected).

    >>> report = ReadReport(source="corpus/")
    >>> report.ignored["relation"] += 2
    >>> report.summary()
    'corpus/: 0 documents, 0 entities from 0 files; ignored relation=2'
    """

    source: str = ""
    files: int = 0
    documents: int = 0
    entities: int = 0
    skipped: list[SkippedItem] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    warnings: Counter[str] = field(default_factory=Counter)
    warning_examples: dict[str, str] = field(default_factory=dict)

    def warn(self, kind: str, path: object, errors: str = "raise") -> None:
        """Count one ``kind`` of input not read (the first path kept as an example); under
        ``errors="strict"`` raise a DataError naming the path instead."""
        if errors == "strict":
            from medkit_exp.errors import DataError

            raise DataError(f"not allowed with errors='strict': {kind}", path=str(path))
        self.warnings[kind] += 1
        self.warning_examples.setdefault(kind, str(path))

    def skip(self, reason: str, path: str | None = None, line: int | None = None) -> None:
        """Record one skipped item (and log it at WARNING, so nothing is left out silently)."""
        item = SkippedItem(None if path is None else str(path), line, reason)
        self.skipped.append(item)
        logger.warning("skipped %s", item)

    def summary(self) -> str:
        text = f"{self.source}: {self.documents} documents, {self.entities} entities from {self.files} files"
        if self.skipped:
            text += f"; skipped {len(self.skipped)} bad items"
        if self.ignored:
            text += "; ignored " + ", ".join(f"{key}={value}" for key, value in sorted(self.ignored.items()))
        if self.warnings:
            text += "; warnings: " + ", ".join(f"{key}={value}" for key, value in sorted(self.warnings.items()))
        if self.notes:
            text += f"; {len(self.notes)} notes"
        return text

    def log(self, level: int = logging.INFO) -> None:
        """Log the summary at ``level``, and one WARNING per kind of input not read, with its count."""
        logger.log(level, "read %s", self.summary())
        for kind, count in sorted(self.warnings.items()):
            logger.warning(
                "%s: %d %s, e.g. %s (errors='strict' makes this an error)",
                self.source, count, kind, self.warning_examples[kind],
            )


class Corpus(list):
    """A list of :class:`TextDocument` that also carries the :class:`ReadReport` of its reading.

    >>> corpus = Corpus([TextDocument("a")], ReadReport(source="x"))
    >>> len(corpus), corpus.report.source
    (1, 'x')
    """

    def __init__(self, documents: list[TextDocument] | None = None, report: ReadReport | None = None):
        super().__init__(documents or [])
        self.report = report if report is not None else ReadReport()


# Helpers shared by the readers of ``medkit_exp.ner.formats`` (kept here to avoid a module
# the formats would import in a cycle through the package ``__init__``).

# "raise": bad input stops the reading (a DataError naming file and line); "skip": it is left out
# and listed; "strict": like "raise", and what a reader would only warn about (a .txt without
# .ann, an editor backup or stray file, a dangling link) is an error too.
ERROR_MODES = ("raise", "skip", "strict")


def check_choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    """Raise a ConfigError unless ``value`` is one of ``allowed``.

    >>> check_choice("errors", "skip", ERROR_MODES)
    """
    if value not in allowed:
        from medkit_exp.errors import ConfigError

        raise ConfigError(key, f"must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def fail(report: ReadReport, errors: str, message: str, path: Any = None, line: int | None = None) -> None:
    """Raise a DataError (``errors="raise"``/``"strict"``) or record the item as skipped (``"skip"``);
    the message is cut to one line of bounded length."""
    message = clip_message(message)
    if errors != "skip":
        from medkit_exp.errors import DataError

        raise DataError(message, path=path, line=line)
    report.skip(message, None if path is None else str(path), line)


def read_corpus_file(path: Any, kind: str, encoding: str = "utf-8") -> tuple[Any, str, ReadReport]:
    """``(path, content, report)`` of a one-file corpus (CoNLL, JSON lines): a folder or an
    empty file is a DataError naming the path."""
    from pathlib import Path

    from medkit_exp.errors import DataError

    path = Path(path)
    check_readable(path, f"{kind} file")
    content = read_text_file(path, encoding)
    if not content.strip():
        raise DataError("empty file", path=path)
    return path, content, ReadReport(source=str(path), files=1)
