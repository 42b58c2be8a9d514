"""JSON lines: one document per line.

``{"id": "d1", "text": "...", "entities": [{"label": "DISO", "spans": [[0, 7]], "attrs": {...}}],
"metadata": {...}}``. An entity may give ``"start"``/``"end"`` instead of ``"spans"``, and
optionally ``"id"``, ``"text"`` (checked against the document text) and ``"score"``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medkit_exp.errors import DataError
from medkit_exp.ner.documents import (
    ERROR_MODES,
    Corpus,
    Entity,
    Relation,
    TextDocument,
    check_choice,
    covered_text,
    fail,
    read_corpus_file,
)

logger = logging.getLogger(__name__)

# Metadata written by our readers as lists of (start, end): restored as tuples on reading,
# so that a document survives write_jsonl -> read_jsonl unchanged.
_SPAN_LIST_METADATA = ("sentences", "tokens")


def _entity_spans(raw: dict[str, Any]) -> list[tuple[int, int]]:
    if "spans" in raw:
        spans = raw["spans"]
        if not isinstance(spans, list) or not spans or any(not isinstance(s, list) or len(s) != 2 for s in spans):
            raise ValueError(f"'spans' must be a non-empty list of [start, end], got {spans!r}")
    elif "start" in raw and "end" in raw:
        spans = [[raw["start"], raw["end"]]]
    else:
        raise ValueError("an entity needs 'spans' or 'start' and 'end'")
    if any(type(value) is not int for span in spans for value in span):
        raise ValueError(f"offsets must be integers, got {spans!r}")
    return [(start, end) for start, end in spans]


def _parse_entity(raw: Any, text: str) -> Entity:
    if not isinstance(raw, dict) or not isinstance(raw.get("label"), str) or not raw["label"]:
        raise ValueError(f"an entity must be an object with a non-empty 'label', got {raw!r}")
    spans = _entity_spans(raw)
    for start, end in spans:
        if start < 0 or start >= end:
            raise ValueError(f"bad offsets {start} {end} (need 0 <= start < end)")
        if end > len(text):
            raise ValueError(f"offsets {start} {end} beyond the text ({len(text)} characters)")
    actual = covered_text(text, sorted(spans))
    if "text" in raw and raw["text"] != actual:
        raise ValueError(f"entity text {raw['text']!r} does not match the document text {actual!r}")
    attrs = raw.get("attrs", {})
    if not isinstance(attrs, dict):
        raise ValueError(f"'attrs' must be an object, got {attrs!r}")
    return Entity(raw["label"], spans, text=actual, attrs=dict(attrs), id=raw.get("id"), score=raw.get("score"))


def _parse_document(raw: Any, number: int) -> tuple[TextDocument, list[tuple[str, Any]]]:
    """The document and the ``(reason, raw entity)`` of each bad entity in it."""
    if not isinstance(raw, dict) or not isinstance(raw.get("text"), str):
        raise ValueError("a line must be a JSON object with a string 'text'")
    text = raw["text"]
    entities, bad = [], []
    for raw_entity in raw.get("entities", []):
        try:
            entities.append(_parse_entity(raw_entity, text))
        except (ValueError, TypeError) as error:
            bad.append((str(error), raw_entity))
    metadata = dict(raw.get("metadata", {}))
    for key in _SPAN_LIST_METADATA:
        if isinstance(metadata.get(key), list):
            metadata[key] = [tuple(span) for span in metadata[key]]
    relations = [
        Relation(r["id"], r["label"], [tuple(arg) for arg in r["args"]], r.get("kind", "relation"), r.get("attrs", {}))
        for r in raw.get("relations", [])
    ]
    doc_id = raw.get("id")
    return TextDocument(text, entities, None if doc_id is None else str(doc_id), metadata, relations), bad


def read_jsonl(path: str | Path, *, errors: str = "raise", encoding: str = "utf-8") -> Corpus:
    """Read documents from a JSON-lines file (blank lines are allowed and ignored).

    Bad lines (invalid JSON, no ``text``) and bad entities (offsets, text mismatch) raise a
    DataError naming the file and line, or with ``errors="skip"`` are left out and listed in
    ``corpus.report.skipped``.

    >>> docs = read_jsonl("dev.jsonl")  # doctest: +SKIP
    >>> docs[0].entities[0].spans  # doctest: +SKIP
    [(0, 7)]
    """
    check_choice("errors", errors, ERROR_MODES)
    path, content, report = read_corpus_file(path, "JSON-lines", encoding)
    corpus = Corpus(report=report)
    for number, line in enumerate(content.split("\n"), 1):
        if not line.strip():
            continue
        try:
            document, bad = _parse_document(json.loads(line), number)
        except (ValueError, TypeError, KeyError) as error:  # JSONDecodeError is a ValueError
            fail(report, errors, f"bad document line: {error}", path, number)
            continue
        for reason, raw_entity in bad:
            fail(report, errors, f"bad entity {raw_entity!r}: {reason}", path, number)
        if document.doc_id is None:
            document.doc_id = f"{path.stem}-{number}"
        document.metadata.setdefault("path", str(path))
        corpus.append(document)
    report.documents = len(corpus)
    report.entities = sum(len(doc.entities) for doc in corpus)
    report.log()
    return corpus


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
