"""The schema of one JSON-lines document, checked strictly (the same rules as the BRAT reader).

A line is a JSON object ``{"id", "text", "entities", "relations", "metadata"}``; an entity is
``{"label", "spans" | "start"+"end", "id", "text", "attrs", "score"}``; a relation is ``{"id",
"label", "args", "kind", "attrs"}``. Anything else is a ValueError whose message names what is
wrong: an unknown key (with the nearest known one: ``entites`` -> ``entities``), a key given
twice in one object, NaN/Infinity, a lone surrogate escape, a label holding spaces, overlapping
or duplicate fragments, a relation to an id the document does not hold. The reader turns these
into DataErrors naming the file and line.
"""

from __future__ import annotations

import difflib
import json
import math
from typing import Any

from medkit_exp.ner.documents import Entity, Relation, covered_text
from medkit_exp.ner.textfiles import clip

DOCUMENT_KEYS = ("id", "text", "entities", "relations", "metadata")
ENTITY_KEYS = ("label", "spans", "start", "end", "id", "text", "attrs", "score")
RELATION_KEYS = ("id", "label", "args", "kind", "attrs")
RELATION_KINDS = ("relation", "event", "equiv")


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for json: a key given twice in one object is an error (json keeps
    the last one silently)."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"key {clip(key)} appears twice in one JSON object")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (write a finite number or null)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: json makes it inf, which no later step expects
        raise ValueError(f"{clip(text)} is too large for a number")
    return value


def parse_json_line(line: str) -> Any:
    """``json.loads(line)``, refusing duplicate keys, NaN/Infinity (1e999 too) and lone surrogates."""
    value = json.loads(line, object_pairs_hook=_unique_pairs, parse_constant=_no_constant, parse_float=_finite_float)
    if "\\u" in line or "\\U" in line:
        # A lone "\ud800" escape decodes to a str that cannot be encoded again (it crashes any
        # later step that writes or tokenizes it); pairs are joined by json into one character.
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(f"lone surrogate escape {error.object[error.start]!r} (not a character)") from None
    return value


def check_keys(raw: dict[str, Any], known: tuple[str, ...], what: str) -> None:
    """A ValueError naming the first key of ``raw`` not in ``known`` and the nearest known key."""
    for key in raw:
        if key in known:
            continue
        nearest = [k for k in known if k.lower() == str(key).lower()] or difflib.get_close_matches(
            str(key), known, n=1, cutoff=0.7
        )
        hint = f"did you mean {nearest[0]!r}?" if nearest else f"known keys: {', '.join(known)}"
        raise ValueError(f"unknown key {clip(key)} in {what}; {hint}")


def check_label(label: Any, what: str) -> str:
    if not isinstance(label, str) or not label or any(char.isspace() for char in label):
        raise ValueError(f"{what} needs a non-empty 'label' string without spaces, got {clip(label)}")
    return label


def _entity_spans(raw: dict[str, Any], text: str) -> list[tuple[int, int]]:
    if "spans" in raw:
        spans = raw["spans"]
        if "start" in raw or "end" in raw:
            raise ValueError("give either 'spans' or 'start'/'end', not both")
        if not isinstance(spans, list) or not spans or any(not isinstance(s, list) or len(s) != 2 for s in spans):
            raise ValueError(f"'spans' must be a non-empty list of [start, end], got {clip(spans)}")
    elif "start" in raw and "end" in raw:
        spans = [[raw["start"], raw["end"]]]
    else:
        raise ValueError("an entity needs 'spans' or 'start' and 'end'")
    if any(type(value) is not int for span in spans for value in span):
        raise ValueError(f"offsets must be integers, got {clip(spans)}")
    for start, end in spans:
        if start < 0 or start >= end:
            raise ValueError(f"bad offsets {start} {end} (need 0 <= start < end)")
        if end > len(text):
            raise ValueError(f"offsets {start} {end} beyond the text ({len(text)} characters)")
    ordered = sorted((start, end) for start, end in spans)
    if any(a_end > b_start for (_, a_end), (b_start, _) in zip(ordered, ordered[1:])):
        raise ValueError(f"overlapping or duplicate fragments {clip(spans)}")
    return ordered


def parse_entity(raw: Any, text: str) -> Entity:
    """One entity of a document whose text is ``text`` (a ValueError says what is wrong)."""
    if not isinstance(raw, dict):
        raise ValueError(f"an entity must be a JSON object, got {clip(raw)}")
    check_keys(raw, ENTITY_KEYS, "an entity")
    label = check_label(raw.get("label"), "an entity")
    spans = _entity_spans(raw, text)
    actual = covered_text(text, spans)
    if "text" in raw and raw["text"] != actual:
        raise ValueError(f"entity text {clip(raw['text'])} does not match the document text {clip(actual)}")
    attrs = raw.get("attrs", {})
    if not isinstance(attrs, dict):
        raise ValueError(f"'attrs' must be an object, got {clip(attrs)}")
    ident = raw.get("id")
    if ident is not None and (not isinstance(ident, str) or not ident):
        raise ValueError(f"an entity id must be a non-empty string, got {clip(ident)}")
    score = raw.get("score")
    if score is not None and (type(score) not in (int, float) or not math.isfinite(score)):
        raise ValueError(f"'score' must be a finite number, got {clip(score)}")
    return Entity(label, spans, text=actual, attrs=dict(attrs), id=ident, score=score)


def parse_relation(raw: Any) -> Relation:
    """One relation, its targets not checked yet (see :func:`check_targets`)."""
    if not isinstance(raw, dict):
        raise ValueError(f"a relation must be a JSON object, got {clip(raw)}")
    check_keys(raw, RELATION_KEYS, "a relation")
    ident, label = raw.get("id"), check_label(raw.get("label"), "a relation")
    if not isinstance(ident, str) or not ident:
        raise ValueError(f"a relation id must be a non-empty string, got {clip(ident)}")
    args = raw.get("args")
    if not isinstance(args, list) or not args or any(
        not isinstance(arg, list) or len(arg) != 2 or not all(isinstance(part, str) and part for part in arg)
        for arg in args
    ):
        raise ValueError(f"relation {clip(ident)}: 'args' must be a non-empty list of [role, id], got {clip(args)}")
    kind = raw.get("kind", "relation")
    if kind not in RELATION_KINDS:
        raise ValueError(f"relation {clip(ident)}: 'kind' must be one of {', '.join(RELATION_KINDS)}, got {clip(kind)}")
    attrs = raw.get("attrs", {})
    if not isinstance(attrs, dict):
        raise ValueError(f"relation {clip(ident)}: 'attrs' must be an object, got {clip(attrs)}")
    return Relation(ident, label, [(role, target) for role, target in args], kind, dict(attrs))


def check_document(raw: Any) -> str:
    """The text of a document line, after checking its keys and their types."""
    if not isinstance(raw, dict):
        raise ValueError(f"a line must be a JSON object with a string 'text', got {type(raw).__name__}")
    check_keys(raw, DOCUMENT_KEYS, "a document")
    if not isinstance(raw.get("text"), str):
        raise ValueError("a document needs a string 'text'")
    if raw.get("id") is not None and (type(raw["id"]) not in (str, int) or raw["id"] == ""):
        raise ValueError(f"a document id must be a non-empty string or an integer, got {clip(raw['id'])}")
    for key, kind in (("entities", list), ("relations", list), ("metadata", dict)):
        if key in raw and not isinstance(raw[key], kind):
            raise ValueError(f"'{key}' must be a JSON {'array' if kind is list else 'object'}, got {clip(raw[key])}")
    return raw["text"]
