"""BRAT standoff (``.txt`` + ``.ann``) reader and writer.

Offsets are on the raw text: files are decoded without newline translation, so a ``\\r\\n``
counts two characters, as in BRAT (and a leading BOM, which BRAT counts too, is read as a space).
Only ``*.txt`` and ``*.ann`` files are read: what else a folder holds is counted (see
:mod:`~medkit_exp.ner.formats.brat_files`), editor backups such as ``*.ann~`` with a WARNING.
Line types: ``T`` (text-bound, with discontinuous fragments ``T14 DISO 285 293;305 315``), ``#`` (notes, kept in
``attrs["note"]``), ``N`` (normalisations, ``attrs["norm"]``), ``A``/``M`` (attributes),
``R``/``E``/``*`` (relations, events, equivalences), each explicitly kept or ignored and counted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medkit_exp.errors import DataError
from medkit_exp.ner.documents import (
    ERROR_MODES,
    Corpus,
    Entity,
    ReadReport,
    Relation,
    TextDocument,
    check_choice,
    covered_text,
    fail,
    read_text_file,
)
from medkit_exp.ner.formats.brat_files import find_brat_documents
from medkit_exp.ner.textfiles import BOM, clip, split_lines

logger = logging.getLogger(__name__)

KEEP_OR_IGNORE = ("keep", "ignore")
# attrs keys that hold BRAT notes and normalisations; every other key is a BRAT attribute.
RESERVED_ATTRS = ("note", "norm", "norm_text")
_RELATION_KINDS = {"R": "relation", "E": "event", "*": "equiv"}
_SPAN_RE = re.compile(r"^(\d+) (\d+)$")


@dataclass
class _AnnState:
    """What one ``.ann`` file has produced so far, and the options to read it with."""

    path: Path
    text: str
    report: ReadReport
    errors: str
    relations: str
    attributes: str
    check_text: bool
    entities: dict[str, Entity] = field(default_factory=dict)
    link_lines: dict[str, int] = field(default_factory=dict)
    links: dict[str, Relation] = field(default_factory=dict)
    bad_ids: set[str] = field(default_factory=set)
    seen_ids: set[str] = field(default_factory=set)

    def fail(self, message: str, line: int, ann_id: str | None = None) -> None:
        if ann_id:
            self.bad_ids.add(ann_id)
        fail(self.report, self.errors, message, self.path, line)


def _same_text(stored: str, actual: str) -> bool:
    # BRAT writes newlines/tabs inside an annotation's text as spaces (the .ann is line-based).
    table = str.maketrans("\r\n\t", "   ")
    return stored.translate(table) == actual.translate(table)


def _parse_spans(field_text: str, state: _AnnState, number: int, ann_id: str) -> list[tuple[int, int]] | None:
    spans = []
    for fragment in field_text.split(";"):
        match = _SPAN_RE.match(fragment.strip())
        if match is None:
            state.fail(f"{clip(ann_id)}: bad offsets {clip(fragment)} (expected 'start end' integers)", number, ann_id)
            return None
        start, end = int(match.group(1)), int(match.group(2))
        if start >= end:
            state.fail(f"{ann_id}: bad offsets {start} {end} (start must be < end)", number, ann_id)
            return None
        if end > len(state.text):
            state.fail(
                f"{ann_id}: offsets {start} {end} beyond the text ({len(state.text)} characters)", number, ann_id
            )
            return None
        spans.append((start, end))
    ordered = sorted(spans)
    if any(a_end > b_start for (_, a_end), (b_start, _) in zip(ordered, ordered[1:])):
        state.fail(f"{ann_id}: overlapping or duplicate fragments {clip(field_text)}", number, ann_id)
        return None
    return spans


def _parse_textbound(fields: list[str], state: _AnnState, number: int) -> None:
    ann_id = fields[0]
    if len(fields) < 3 or " " not in fields[1]:
        state.fail(f"{ann_id}: malformed text-bound line (expected 'T1<TAB>Label start end<TAB>text')", number, ann_id)
        return
    label, offsets = fields[1].split(" ", 1)
    spans = _parse_spans(offsets, state, number, ann_id)
    if spans is None:
        return
    # BRAT stores the fragments' text in the order the fragments are written (not always sorted).
    stored, actual = "\t".join(fields[2:]), covered_text(state.text, spans)
    if state.check_text and not _same_text(stored, actual):
        state.fail(f"{ann_id}: span text {clip(stored)} does not match the .txt {clip(actual)}", number, ann_id)
        return
    spans.sort()
    state.entities[ann_id] = Entity(label, spans, text=covered_text(state.text, spans), id=ann_id)


def _parse_link(fields: list[str], state: _AnnState, number: int) -> None:
    """``R1 Origin Arg1:T3 Arg2:T4`` / ``E1 Type:T2 Arg:T1`` / ``* Equiv T1 T2``."""
    ann_id, kind = fields[0], _RELATION_KINDS[fields[0][0]]
    if state.relations == "ignore":
        state.report.ignored[kind] += 1
        state.bad_ids.add(ann_id)
        return
    parts = fields[1].split() if len(fields) >= 2 else []
    if kind == "event" and parts:
        label, args = parts[0].split(":", 1)[0], [tuple(p.split(":", 1)) for p in parts]
    elif kind == "equiv" and len(parts) >= 3:
        label, args = parts[0], [("Arg", p) for p in parts[1:]]
    else:
        label, args = (parts[0] if parts else ""), [tuple(p.split(":", 1)) for p in parts[1:]]
    if not label or len(args) < (1 if kind == "event" else 2) or any(len(arg) != 2 for arg in args):
        state.fail(f"{ann_id}: malformed {kind} line {clip(fields[1:])}", number, ann_id)
        return
    if kind == "equiv":
        # Equivalences all have the id '*'; number them in file order to keep them apart.
        ann_id = "*" + str(1 + sum(link.kind == "equiv" for link in state.links.values()))
    state.link_lines[ann_id] = number
    state.links[ann_id] = Relation(ann_id, label, [(role, target) for role, target in args], kind=kind)


def _target(state: _AnnState, target: str, ann_id: str, number: int) -> dict[str, Any] | None:
    """The attrs dict of the annotation ``target`` refers to, or None (counted or failed)."""
    if target in state.entities:
        return state.entities[target].attrs
    if target in state.links:
        return state.links[target].attrs
    if target in state.bad_ids:
        if state.relations == "ignore" and target[:1] in _RELATION_KINDS:
            state.report.ignored[f"{ann_id[0]} on ignored {_RELATION_KINDS[target[0]]}"] += 1
        else:
            state.report.skip(f"{ann_id} refers to the skipped annotation {target}", str(state.path), number)
        return None
    state.fail(f"{ann_id} refers to an unknown annotation {clip(target)}", number, ann_id)
    return None


def _parse_reference(fields: list[str], state: _AnnState, number: int) -> None:
    """``#1 AnnotatorNotes T1 note``, ``N1 Reference T1 MeSH:D011125 [text]``, ``A1 Name T1 [value]``."""
    ann_id, kind = fields[0], fields[0][0]
    parts = fields[1].split() if len(fields) >= 2 else []
    expected = {"#": (2, 2), "N": (3, 3), "A": (2, 3), "M": (2, 3)}[kind]
    if not expected[0] <= len(parts) <= expected[1]:
        state.fail(f"{ann_id}: malformed line {clip(fields[1:])}", number, ann_id)
        return
    if kind in "AM" and state.attributes == "ignore":
        state.report.ignored["attribute"] += 1
        return
    attrs = _target(state, parts[1], ann_id, number)
    if attrs is None:
        return
    extra = "\t".join(fields[2:])
    if kind == "#":
        attrs["note"] = f"{attrs['note']}\n{extra}" if "note" in attrs else extra
    elif kind == "N":
        attrs.setdefault("norm", []).append(parts[2])
        if extra:
            attrs.setdefault("norm_text", {})[parts[2]] = extra
    elif parts[0] in RESERVED_ATTRS:
        state.fail(f"{ann_id}: attribute name {clip(parts[0])} is reserved for notes/normalisations", number, ann_id)
    else:
        attrs[parts[0]] = parts[2] if len(parts) == 3 else True


def _parse_ann(content: str, state: _AnnState) -> None:
    # \n, \r\n and \r only (str.splitlines also breaks on \x1c, \u2028... which BRAT does not).
    lines = list(enumerate(split_lines(content), 1))
    later = []
    # Text-bound and relation lines first, so that notes/attributes may precede their target.
    for number, line in lines:
        if not line.strip():
            continue
        fields = line.split("\t")
        ann_id = fields[0]
        duplicate = ann_id in state.seen_ids
        state.seen_ids.add(ann_id)
        if not ann_id or ann_id[0] not in "TRE*#NAM":
            state.fail(f"unknown line type {ann_id[:1]!r} in {clip(line, 40)}", number)
        elif ann_id != "*" and (ann_id in state.entities or ann_id in state.links or duplicate):
            # Every id is unique in a BRAT file: a repeated #1 or N1 would double a note silently.
            state.fail(f"duplicate annotation id {clip(ann_id)}", number)
        elif ann_id[0] == "T":
            _parse_textbound(fields, state, number)
        elif ann_id[0] in _RELATION_KINDS:
            _parse_link(fields, state, number)
        else:
            later.append((number, fields))
    for number, fields in later:
        _parse_reference(fields, state, number)
    _check_link_targets(state)


def _check_link_targets(state: _AnnState) -> None:
    for link_id, link in list(state.links.items()):
        missing = [target for _, target in link.args if target not in state.entities and target not in state.links]
        if missing:
            del state.links[link_id]
            if missing[0] in state.bad_ids:
                state.report.skip(
                    f"{link_id} refers to the skipped annotation {missing[0]}",
                    str(state.path),
                    state.link_lines[link_id],
                )
            else:
                state.fail(f"{link_id} refers to an unknown annotation {clip(missing[0])}", state.link_lines[link_id])


def read_brat(
    path: str | Path,
    *,
    relations: str = "keep",
    attributes: str = "keep",
    errors: str = "raise",
    check_text: bool = True,
    encoding: str = "utf-8",
) -> Corpus:
    """Read BRAT documents from a folder (recursively) or from one ``.txt``/``.ann`` pair.

    ``relations``/``attributes``: ``"keep"`` (relations, events and equivalences on
    ``doc.relations``; attributes in the target's ``attrs``) or ``"ignore"`` (counted in
    ``report.ignored``). ``errors="raise"`` raises a DataError naming the file and line of bad
    input (a repeated id included); ``"skip"`` leaves it out and lists it in
    ``corpus.report.skipped``; ``"strict"`` also raises where the reader would only warn (a
    ``.txt`` without ``.ann``, editor backups, misnamed or other files, dangling links:
    ``report.warnings``). ``check_text``
    compares each entity's stored text with the ``.txt``. ``doc_id`` is the path relative to the
    folder, without suffix.

    >>> corpus = read_brat("corpus/train", relations="ignore")  # doctest: +SKIP
    >>> corpus[0].entities[0].spans, corpus.report.ignored  # doctest: +SKIP
    ([(0, 10)], Counter({'relation': 3}))
    """
    report = ReadReport(source=str(path))
    # iter_brat checks the options, counts the documents and logs the report once it is read through
    documents = iter_brat(path, relations=relations, attributes=attributes, errors=errors, check_text=check_text,
                          encoding=encoding, report=report)
    return Corpus(documents, report=report)


def iter_brat(
    path: str | Path,
    *,
    relations: str = "keep",
    attributes: str = "keep",
    errors: str = "raise",
    check_text: bool = True,
    encoding: str = "utf-8",
    report: ReadReport | None = None,
) -> Iterator[TextDocument]:
    """The documents of :func:`read_brat`, read one ``.txt``/``.ann`` pair at a time (the file
    names are listed first: memory holds the names and one document, not the corpus).

    The same options, checks and messages; an error is raised when the reader reaches its file.
    ``report`` (optional) receives what ``corpus.report`` would; it is logged when the folder is done.
    """
    check_choice("relations", relations, KEEP_OR_IGNORE)
    check_choice("attributes", attributes, KEEP_OR_IGNORE)
    check_choice("errors", errors, ERROR_MODES)
    path = Path(path)
    report = report if report is not None else ReadReport(source=str(path))
    report.source = str(path)

    def documents() -> Iterator[TextDocument]:
        for document in _brat_documents(path, report, errors, relations, attributes, check_text, encoding):
            report.documents += 1
            yield document
        report.log()

    return documents()


def _brat_documents(
    path: Path, report: ReadReport, errors: str, relations: str, attributes: str, check_text: bool, encoding: str
) -> Iterator[TextDocument]:
    for doc_id, txt, ann in find_brat_documents(path, report, errors):
        try:
            # A BOM counts as a character in BRAT's offsets: read as a space, offsets still match.
            text = read_text_file(txt, encoding, bom="space")
            if not text:
                raise DataError("empty text file", path=txt)
            content = None if ann is None else read_text_file(ann, encoding)
        except DataError as error:
            if errors != "skip":
                raise
            report.skip(f"document left out: {error.message}", error.path, error.line)
            continue
        report.files += 1 if ann is None else 2
        state = _AnnState(ann or txt, text, report, errors, relations, attributes, check_text)
        if content is not None:
            _parse_ann(content, state)
        entities = list(state.entities.values())
        metadata = {"path": str(ann or txt)}
        report.entities += len(entities)
        yield TextDocument(text, entities, doc_id, metadata, list(state.links.values()))


def _one_line(text: str) -> str:
    return text.translate(str.maketrans("\r\n\t", "   "))


def _new_ids(items: list[Any], prefix: str) -> list[str]:
    """Keep ids that fit BRAT (``T12``) and are unique; number the others after the largest."""
    used: set[str] = set()
    kept: list[str | None] = []
    for item in items:
        fits = item.id is not None and re.fullmatch(prefix + r"\d+", item.id) and item.id not in used
        kept.append(item.id if fits else None)
        used.update([item.id] if fits else [])
    last = max((int(ident[1:]) for ident in used), default=0)
    ids = []
    for ident in kept:
        last += ident is None
        ids.append(ident or f"{prefix}{last}")
    return ids


def _reference_lines(target: str, attrs: dict[str, Any], counters: dict[str, int], lost: set[str]) -> list[str]:
    lines = []
    for note in attrs["note"].split("\n") if "note" in attrs else []:
        counters["#"] += 1
        lines.append(f"#{counters['#']}\tAnnotatorNotes {target}\t{note}")
    for ref in attrs.get("norm", []):
        counters["N"] += 1
        text = attrs.get("norm_text", {}).get(ref)
        lines.append(f"N{counters['N']}\tReference {target} {ref}" + (f"\t{text}" if text is not None else ""))
    for key, value in attrs.items():
        if key in RESERVED_ATTRS or value is False or value is None:
            continue  # a false/absent binary attribute is simply not written
        if value is not True and (not isinstance(value, (str, int, float)) or not str(value) or " " in str(value)):
            lost.add(key)
            continue
        counters["A"] += 1
        lines.append(f"A{counters['A']}\t{key} {target}" + ("" if value is True else f" {value}"))
    return lines


def _ann_lines(doc: TextDocument, lost: set[str]) -> list[str]:
    entity_ids = _new_ids(doc.entities, "T")
    renamed = {entity.id: new for entity, new in zip(doc.entities, entity_ids) if entity.id is not None}
    lines, references = [], []
    counters = {"#": 0, "N": 0, "A": 0}
    for entity, ident in zip(doc.entities, entity_ids):
        if not entity.label or any(char.isspace() for char in entity.label):
            raise DataError(f"entity {entity.describe()}: a BRAT label cannot be empty or hold spaces")
        offsets = ";".join(f"{start} {end}" for start, end in entity.spans)
        lines.append(f"{ident}\t{entity.label} {offsets}\t{_one_line(doc.covered_text(entity))}")
        references += _reference_lines(ident, entity.attrs, counters, lost)
        if entity.score is not None:
            lost.add("score")
    link_ids: dict[int, str] = {}
    for kind, prefix in (("relation", "R"), ("event", "E")):
        group = [link for link in doc.relations if link.kind == kind]
        link_ids.update({id(link): new for link, new in zip(group, _new_ids(group, prefix))})
    renamed.update({link.id: link_ids[id(link)] for link in doc.relations if id(link) in link_ids})
    for link in doc.relations:
        args = [(role, renamed.get(target, target)) for role, target in link.args]
        if link.kind == "equiv":
            lines.append(f"*\t{link.label} " + " ".join(target for _, target in args))
            continue
        ident, head = link_ids[id(link)], "" if link.kind == "event" else f"{link.label} "  # events: Type:T1 first
        lines.append(f"{ident}\t{head}" + " ".join(f"{role}:{target}" for role, target in args))
        references += _reference_lines(ident, link.attrs, counters, lost)
    return lines + references


def write_brat(documents: Iterable[TextDocument], path: str | Path, *, encoding: str = "utf-8") -> list[Path]:
    """Write each document as ``<doc_id>.txt`` + ``<doc_id>.ann`` under the folder ``path``.

    Reading the folder back with :func:`read_brat` gives the same documents (``metadata``
    aside): entity ids of the form ``T<n>`` are kept, others are numbered; notes, norms and
    string/boolean attributes are written. What BRAT cannot hold (scores, list/dict attributes)
    is reported in one WARNING. Documents without ``doc_id`` are named ``doc-00000``...

    >>> write_brat([TextDocument("Fièvre.", [Entity("DISO", [(0, 6)])], doc_id="a")], tmp)  # doctest: +SKIP
    [PosixPath('.../a.ann')]
    """
    root = Path(path)
    written: list[Path] = []
    names: set[str] = set()
    lost: set[str] = set()
    bom_texts = 0
    for index, doc in enumerate(documents):
        name = doc.doc_id if doc.doc_id is not None else f"doc-{index:05d}"
        if name in names or not name or name.startswith("/") or ".." in Path(name).parts:
            raise DataError(f"cannot write document {index} as {name!r} (duplicate or unsafe doc_id)", path=root)
        names.add(name)
        txt, ann = root / f"{name}.txt", root / f"{name}.ann"
        txt.parent.mkdir(parents=True, exist_ok=True)
        bom_texts += doc.text.startswith(BOM)
        txt.write_text(doc.text, encoding=encoding, newline="")
        ann.write_text("".join(line + "\n" for line in _ann_lines(doc, lost)), encoding=encoding, newline="")
        written.append(ann)
    if lost:
        logger.warning("BRAT cannot hold these entity fields/attrs, not written: %s", ", ".join(sorted(lost)))
    if bom_texts:
        logger.warning(
            "%d texts start with U+FEFF, which BRAT readers (ours included) take for a byte order mark: "
            "read back, it is a space", bom_texts,
        )
    logger.info("wrote %d BRAT documents to %s", len(written), root)
    return written
