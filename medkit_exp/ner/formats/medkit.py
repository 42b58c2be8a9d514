"""Converters between our documents and medkit's (``medkit.core.text``), and medkit-json I/O.

medkit is imported lazily, only when one of these functions runs, so the rest of
``medkit_exp.ner`` works without it. Conventions, the same as medkit's BRAT reader: a
discontinuous entity has spans ``Span, ModifiedSpan(length=1, []), Span`` (its text joins the
fragments with a space); ``attrs["norm"]`` entries ``"MeSH:D003920"`` become
``EntityNormAttribute(kb_name="MeSH", kb_id="D003920")``; ``score`` is an attribute ``"score"``
(as medkit's HF matcher writes it); other attrs are plain ``Attribute(label, value)``. Our ids
live in medkit's ``metadata["id"]``, medkit uids being global.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medkit_exp.errors import DataError
from medkit_exp.ner.documents import Corpus, Entity, Relation, TextDocument, read_corpus_file
from medkit_exp.ner.textfiles import clip_message, split_lines

logger = logging.getLogger(__name__)

MEDKIT_MISSING = (
    "medkit-lib is needed for medkit interop but is not installed; "
    "install it with: pip install 'medkit-lib>=0.17' (or: pip install 'medkit_exp[medkit]')"
)


def _medkit() -> Any:
    """The ``medkit.core.text`` module, or an ImportError that says how to install medkit."""
    try:
        import medkit.core.text as medkit_text
    except ImportError as error:
        raise ImportError(MEDKIT_MISSING) from error
    return medkit_text


def _medkit_spans(entity: Entity) -> list[Any]:
    mt = _medkit()
    spans: list[Any] = []
    for start, end in entity.spans:
        if spans:  # the space that joins two fragments in the entity text
            spans.append(mt.ModifiedSpan(length=1, replaced_spans=[]))
        spans.append(mt.Span(start, end))
    return spans


def _medkit_attrs(entity: Entity) -> list[Any]:
    from medkit.core import Attribute

    mt = _medkit()
    attrs: list[Any] = []
    terms = entity.attrs.get("norm_text", {})
    for ref in entity.attrs.get("norm", []):
        kb_name, sep, kb_id = ref.partition(":")
        kb_name, kb_id = (kb_name, kb_id) if sep else (None, ref)
        attrs.append(mt.EntityNormAttribute(kb_name=kb_name, kb_id=kb_id, term=terms.get(ref)))
    attrs += [Attribute(label=k, value=v) for k, v in entity.attrs.items() if k not in ("norm", "norm_text")]
    if entity.score is not None:
        attrs.append(Attribute(label="score", value=entity.score))
    return attrs


def to_medkit(document: TextDocument) -> Any:
    """A ``medkit.core.text.TextDocument`` holding our document's entities and binary relations.

    ``doc_id`` becomes the medkit uid; events and equivalences (no medkit counterpart) are
    left out with a WARNING.

    >>> medkit_doc = to_medkit(TextDocument("Fièvre.", [Entity("DISO", [(0, 6)])], doc_id="d1"))  # doctest: +SKIP
    >>> medkit_doc.anns.get_entities()[0].text  # doctest: +SKIP
    'Fièvre'
    """
    mt = _medkit()
    uids: dict[str, str] = {}
    anns: list[Any] = []
    for entity in document.entities:
        metadata = {} if entity.id is None else {"id": entity.id}
        text = document.covered_text(entity)
        medkit_entity = mt.Entity(entity.label, text, _medkit_spans(entity), _medkit_attrs(entity), metadata)
        if entity.id is not None:
            uids[entity.id] = medkit_entity.uid
        anns.append(medkit_entity)
    left_out = Counter()
    for relation in document.relations:
        targets = [uids.get(target) for _, target in relation.args]
        if relation.kind != "relation" or len(targets) != 2 or None in targets:
            left_out[relation.kind] += 1
            continue
        metadata = {"id": relation.id, "roles": [role for role, _ in relation.args]}
        anns.append(mt.Relation(relation.label, targets[0], targets[1], metadata=metadata))
    if left_out:
        logger.warning("document %s: not convertible to medkit, left out: %s", document.doc_id, dict(left_out))
    metadata = dict(document.metadata)
    return mt.TextDocument(document.text, anns=anns, metadata=metadata, uid=document.doc_id)


def _entity_from_medkit(entity: Any, doc_id: str) -> Entity | None:
    mt = _medkit()
    spans = [(span.start, span.end) for span in mt.span_utils.normalize_spans(entity.spans)]
    if not spans:
        logger.warning("document %s: medkit entity %s has no span in the raw text: left out", doc_id, entity.uid)
        return None
    attrs: dict[str, Any] = {}
    score = None
    for attr in entity.attrs:
        if isinstance(attr, mt.EntityNormAttribute):
            ref = f"{attr.kb_name}:{attr.kb_id}" if attr.kb_name else str(attr.kb_id if attr.kb_id else attr.term)
            attrs.setdefault("norm", []).append(ref)
            if attr.term is not None and attr.kb_id:
                attrs.setdefault("norm_text", {})[ref] = attr.term
        elif attr.label == "score" and isinstance(attr.value, (int, float)) and score is None:
            score = float(attr.value)
        elif attr.label in attrs:
            logger.warning("document %s: entity %s has a second %r attribute: left out", doc_id, entity.uid, attr.label)
        else:
            attrs[attr.label] = attr.value
    ident = entity.metadata.get("id", entity.metadata.get("brat_id", entity.uid))
    return Entity(entity.label, spans, attrs=attrs, id=ident, score=score)


def from_medkit(document: Any) -> TextDocument:
    """Our :class:`TextDocument` from a ``medkit.core.text.TextDocument`` (entities, relations).

    Entity text is re-read from the raw text (fragments joined by a space), ids come from
    ``metadata["id"]`` (or ``"brat_id"``, else the medkit uid).

    >>> from_medkit(to_medkit(doc)) == doc  # doctest: +SKIP
    True
    """
    doc_id = document.uid
    entities, ids = [], {}
    for medkit_entity in document.anns.get_entities():
        entity = _entity_from_medkit(medkit_entity, doc_id)
        if entity is not None:
            entities.append(entity)
            ids[medkit_entity.uid] = entity.id
    relations = []
    for relation in document.anns.get_relations():
        roles = relation.metadata.get("roles", ["Arg1", "Arg2"])
        targets = [ids.get(relation.source_id), ids.get(relation.target_id)]
        if None in targets:
            logger.warning("document %s: relation %s links a non-entity: left out", doc_id, relation.uid)
            continue
        relations.append(Relation(relation.metadata.get("id", relation.uid), relation.label, list(zip(roles, targets))))
    return TextDocument(document.text, entities, doc_id, dict(document.metadata), relations)


# What medkit raises on input it cannot read (it does not check its input types itself).
_MEDKIT_INPUT_ERRORS = (ValueError, KeyError, TypeError, AttributeError, IndexError, RuntimeError, RecursionError)


def _medkit_documents(path: Path, content: str) -> list[Any]:
    """medkit documents of a medkit-json text document list, each line checked (header first)."""
    from medkit.io.medkit_json._common import ContentType, check_header

    from medkit_exp.ner.formats.jsonl_schema import parse_json_line

    mt = _medkit()
    documents, header = [], False
    for number, line in enumerate(split_lines(content), 1):
        if not line.strip():
            continue
        try:
            data = parse_json_line(line)
            if not isinstance(data, dict):
                raise ValueError(f"expected a JSON object, got {type(data).__name__}")
            if not header:
                check_header(data, ContentType.TEXT_DOCUMENT_LIST)
                header = True
            else:
                documents.append(mt.TextDocument.from_dict(data))
        except _MEDKIT_INPUT_ERRORS as error:
            what = "header" if not header else "text document"
            message = f"not a medkit-json {what} (line {number}): {type(error).__name__}: {error}"
            failure = DataError(clip_message(message), path=path)
            failure.line = number  # in the message after its start, which stays "PATH: not a medkit-json"
            raise failure from None
    return documents


def read_medkit_json(path: str | Path, *, encoding: str = "utf-8") -> Corpus:
    """Read a medkit-json text document list (``medkit.io.medkit_json.save_text_documents``).

    Any line medkit cannot read is a DataError naming the file and line (a BOM and any line end
    are accepted, as in the other readers).

    >>> corpus = read_medkit_json("docs.jsonl")  # doctest: +SKIP
    """
    _medkit()
    if not os.path.lexists(path):
        raise DataError("no such medkit-json file", path=path)
    path, content, report = read_corpus_file(path, "medkit-json", encoding)
    documents = _medkit_documents(path, content)
    try:
        corpus = Corpus([from_medkit(doc) for doc in documents], report)
    except _MEDKIT_INPUT_ERRORS as error:  # a document medkit read but that is not one of ours
        message = f"not a medkit-json text document list: {type(error).__name__}: {error}"
        raise DataError(clip_message(message), path=path) from None
    report.documents = len(corpus)
    report.entities = sum(len(doc.entities) for doc in corpus)
    report.log()
    return corpus


def write_medkit_json(documents: Iterable[TextDocument], path: str | Path, *, encoding: str = "utf-8") -> Path:
    """Write documents as a medkit-json text document list, readable by medkit and
    :func:`read_medkit_json`.

    >>> write_medkit_json(corpus, "docs.jsonl")  # doctest: +SKIP
    PosixPath('docs.jsonl')
    """
    _medkit()
    from medkit.io.medkit_json import save_text_documents

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_text_documents([to_medkit(doc) for doc in documents], path, encoding=encoding)
    return path
