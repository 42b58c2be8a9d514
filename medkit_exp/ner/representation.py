"""What a tagger can express: the gold entities after a round trip through its tags.

The *ceiling* of a representation on a split is the share of the entities as annotated that
survive encoding into the tagger's tags and decoding back, with exact spans: the recall a
perfect model of that representation would reach. A flat tagger loses the inner (or outer) one
of nested entities, the filled discontinuous ones and entities whose edges fall inside a word.

>>> from medkit_exp.ner.documents import Entity, TextDocument
>>> doc = TextDocument("cancers colorectaux", [Entity("DISO", [(0, 19)]), Entity("DISO", [(0, 7)])])
>>> class Flat: labels, tagging_scheme = ["DISO"], "iob2"
>>> [e.spans for e in expressible_entities(Flat(), doc)]
[[(0, 19)]]
"""

from __future__ import annotations

from typing import Any

from medkit_exp.ner.documents import Entity, TextDocument
from medkit_exp.ner.tagging import spans_to_tags, tags_to_spans, tokenize_words


def expressible_entities(tagger: Any, document: TextDocument) -> list[Entity]:
    """The entities of ``document`` (its :attr:`~TextDocument.entities`, i.e. after the data
    policies) as ``tagger``'s tags express them: encoded into word tags as training encodes
    them, then decoded as prediction decodes them. A tagger with its own representation (nested
    layers) gives it by an ``expressible_entities(document)`` method."""
    own = getattr(tagger, "expressible_entities", None)
    if callable(own):
        return own(document)
    words = tokenize_words(document.text)
    entities = [entity for entity in document.entities if entity.label in tagger.labels]
    tags = spans_to_tags(words, entities, tagger.tagging_scheme)
    return tags_to_spans(words, tags, tagger.tagging_scheme, text=document.text)
