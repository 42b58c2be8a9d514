"""JSON lines: one document per line.

``{"id": "d1", "text": "...", "entities": [{"label": "DISO", "spans": [[0, 7]], "attrs": {...}}],
"metadata": {...}}``. An entity may give ``"start"``/``"end"`` instead of ``"spans"``, and
optionally ``"id"``, ``"text"`` (checked against the document text) and ``"score"``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
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
    fail,
    read_corpus_file,
)
from medkit_exp.ner.formats.jsonl_schema import check_document, parse_entity, parse_json_line, parse_relation
from medkit_exp.ner.textfiles import BOM, check_readable, clip, split_lines

logger = logging.getLogger(__name__)

# Metadata written by our readers as lists of (start, end): restored as tuples on reading,
# so that a document survives write_jsonl -> read_jsonl unchanged.
_SPAN_LIST_METADATA = ("sentences", "tokens")


def _parse_entities(raw: dict[str, Any], text: str, bad: list[str]) -> list[Entity]:
    entities, ids = [], set()
    for raw_entity in raw.get("entities", []):
        try:
            entity = parse_entity(raw_entity, text)
            if entity.id is not None and entity.id in ids:
                raise ValueError(f"duplicate entity id {clip(entity.id)}")
        except (ValueError, TypeError) as error:
            bad.append(f"bad entity {clip(raw_entity)}: {error}")
            continue
        ids.update([entity.id] if entity.id is not None else [])
        entities.append(entity)
    return entities


def _parse_relations(raw: dict[str, Any], entities: list[Entity], bad: list[str]) -> list[Relation]:
    """The relations of a line; one whose id repeats, or that names an id the document does not
    hold (an entity, or another relation for events and attributes), is bad, as in BRAT."""
    relations, ids = [], {entity.id for entity in entities if entity.id is not None}
    for raw_relation in raw.get("relations", []):
        try:
            relation = parse_relation(raw_relation)
            if relation.id in ids:
                raise ValueError(f"duplicate id {clip(relation.id)}")
        except (ValueError, TypeError) as error:
            bad.append(f"bad relation {clip(raw_relation)}: {error}")
            continue
        ids.add(relation.id)
        relations.append(relation)
    kept = []
    for relation in relations:
        missing = [target for _, target in relation.args if target not in ids]
        if missing:
            bad.append(f"relation {clip(relation.id)} refers to an id the document does not hold: {clip(missing[0])}")
        else:
            kept.append(relation)
    return kept


def _parse_document(raw: Any) -> tuple[TextDocument, list[str]]:
    """The document and the reason of each bad entity or relation in it (left out of it)."""
    text = check_document(raw)
    bad: list[str] = []
    entities = _parse_entities(raw, text, bad)
    relations = _parse_relations(raw, entities, bad)
    metadata = dict(raw.get("metadata", {}))
    for key in _SPAN_LIST_METADATA:
        if isinstance(metadata.get(key), list):
            metadata[key] = [tuple(span) if isinstance(span, list) else span for span in metadata[key]]
    doc_id = raw.get("id")
    return TextDocument(text, entities, None if doc_id is None else str(doc_id), metadata, relations), bad


def read_jsonl(path: str | Path, *, errors: str = "raise", encoding: str = "utf-8") -> Corpus:
    """Read documents from a JSON-lines file (blank lines are allowed and ignored).

    Each line is checked against the schema of :mod:`~medkit_exp.ner.formats.jsonl_schema`
    (unknown or repeated keys, types, offsets, labels, fragments, relation targets); a document
    id given twice is an error too (without ``id``, a document is ``<file stem>-<line>``). Bad lines
    and bad entities or relations raise a DataError naming the file and line, or with
    ``errors="skip"`` are left out and listed in ``corpus.report.skipped``.
    :func:`iter_jsonl` reads the same documents one line at a time.

    >>> docs = read_jsonl("dev.jsonl")  # doctest: +SKIP
    >>> docs[0].entities[0].spans  # doctest: +SKIP
    [(0, 7)]
    """
    check_choice("errors", errors, ERROR_MODES)
    path, content, report = read_corpus_file(path, "JSON-lines", encoding)
    corpus = Corpus(report=report)
    # \n, \r\n and \r end a line (inside a JSON string they are escaped, so they never occur raw).
    corpus.extend(_line_documents(enumerate(split_lines(content), 1), path, report, errors))
    report.documents = len(corpus)
    report.entities = sum(len(doc.entities) for doc in corpus)
    report.log()
    return corpus


def iter_jsonl(
    path: str | Path, *, errors: str = "raise", encoding: str = "utf-8", report: ReadReport | None = None
) -> Iterator[TextDocument]:
    """The documents of :func:`read_jsonl`, read and checked one line at a time: memory holds one
    line (and the ids seen, to refuse a repeated one), not the file.

    The same checks and messages as :func:`read_jsonl` (DataErrors name the file and line), raised
    when the reader reaches the line: documents before a bad line have been yielded by then.
    ``report`` (optional) receives the skipped lines and the counts, as ``corpus.report`` does;
    it is logged when the file is done. A file without any document is a DataError ("empty
    file"), raised at its end.

    >>> for doc in iter_jsonl("notes.jsonl"):  # doctest: +SKIP
    ...     print(doc.doc_id)
    """
    check_choice("errors", errors, ERROR_MODES)
    path = Path(path)
    check_readable(path, "JSON-lines file")
    report = report if report is not None else ReadReport(source=str(path))
    report.source, report.files = str(path), 1
    return _iter_jsonl(path, encoding, report, errors)


def _iter_jsonl(path: Path, encoding: str, report: ReadReport, errors: str) -> Iterator[TextDocument]:
    for document in _line_documents(_stream_lines(path, encoding), path, report, errors):
        report.documents += 1
        report.entities += len(document.entities)
        yield document
    if not report.documents and not report.skipped:  # read_jsonl says so before reading a line
        raise DataError("empty file", path=path)
    report.log()


def _stream_lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    """``(number, line)`` of a text file, read lazily, cut as :func:`split_lines` cuts (``\n``,
    ``\r\n``, ``\r``); a leading BOM dropped; blank lines skipped; an undecodable line is a
    DataError naming the file, line and byte offset, as :func:`read_text_file` says it."""
    number, offset = 0, 0
    try:
        stream = path.open("rb")
    except OSError as error:
        raise DataError(f"cannot read the file: {error.strerror or error}", path=path) from None
    with stream:
        for raw in stream:
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as error:
                line = number + len(split_lines(raw[: error.start].decode(encoding, errors="replace") + "x"))
                raise DataError(
                    f"not valid {encoding} (byte {raw[error.start]:#04x} at offset {offset + error.start}); "
                    "convert the file or pass the right encoding",
                    path=path,
                    line=line,
                ) from None
            if not offset and text.startswith(BOM):
                text = text[1:]
            offset += len(raw)
            for line in split_lines(text):  # a \r inside the chunk ends a line too
                number += 1
                if line.strip():
                    yield number, line


def _line_documents(
    lines: Iterable[tuple[int, str]], path: Path, report: ReadReport, errors: str
) -> Iterator[TextDocument]:
    """The documents of numbered JSON lines (blank ones ignored), checked; bad ones raise or are
    recorded as skipped in ``report``."""
    first_line: dict[str, int] = {}  # id -> its line: an id names one document, as a BRAT file name does
    for number, line in lines:
        if not line.strip():
            continue
        try:
            document, bad = _parse_document(parse_json_line(line))
        except (ValueError, TypeError, RecursionError) as error:  # JSONDecodeError is a ValueError
            fail(report, errors, f"bad document line: {error}", path, number)
            continue
        for reason in bad:
            fail(report, errors, reason, path, number)
        if document.doc_id is None:
            document.doc_id = f"{path.stem}-{number}"
        if document.doc_id in first_line:
            message = f"document id {clip(document.doc_id)} already names the document of line "
            message += str(first_line[document.doc_id])
            fail(report, errors, message, path, number)
            continue
        first_line[document.doc_id] = number
        document.metadata.setdefault("path", str(path))
        yield document


def _entity_json(entity: Entity) -> dict[str, Any]:
    data: dict[str, Any] = {"label": entity.label, "spans": [list(span) for span in entity.spans]}
    if entity.id is not None:
        data["id"] = entity.id
    data["text"] = entity.text
    if entity.attrs:
        data["attrs"] = entity.attrs
    if entity.score is not None:
        data["score"] = entity.score
    return data


def write_jsonl(documents: Iterable[TextDocument], path: str | Path, *, encoding: str = "utf-8") -> Path:
    """Write documents as JSON lines (non-ASCII text kept as is); read back by :func:`read_jsonl`.

    >>> write_jsonl([TextDocument("Fièvre.", [Entity("DISO", [(0, 6)])], doc_id="a")], "out.jsonl")  # doctest: +SKIP
    PosixPath('out.jsonl')
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding=encoding, newline="\n") as stream:
        for document in documents:
            data: dict[str, Any] = {"id": document.doc_id, "text": document.text}
            data["entities"] = [_entity_json(entity) for entity in document.entities]
            if document.relations:
                data["relations"] = [
                    {"id": r.id, "label": r.label, "args": [list(a) for a in r.args], "kind": r.kind, "attrs": r.attrs}
                    for r in document.relations
                ]
            metadata = {key: value for key, value in document.metadata.items() if key != "path"}
            if metadata:
                data["metadata"] = metadata
            try:
                stream.write(json.dumps(data, ensure_ascii=False) + "\n")
            except TypeError as error:
                raise DataError(f"document {document.doc_id!r} cannot be written as JSON: {error}", path=path) from None
            count += 1
    logger.info("wrote %d documents to %s", count, path)
    return path
