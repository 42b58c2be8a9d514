"""Inference: entities at exact character offsets, with a score, from a saved tagger folder.

>>> documents = predict("outputs/run/checkpoints/checkpoint-0000120", [TextDocument("Fièvre et toux.")])  # doctest: +SKIP
>>> [(e.label, e.spans, e.text, round(e.score, 2)) for e in documents[0].entities]                      # doctest: +SKIP
[('problem', [(0, 6)], 'Fièvre', 0.97), ('problem', [(10, 14)], 'toux', 0.95)]
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from medkit_exp.ner.documents import Entity, TextDocument
from medkit_exp.ner.metrics import WindowTags
from medkit_exp.ner.tagger import HFEntityMatcherTrainable, as_document
from medkit_exp.ner.tagging import Word, spans_to_tags, tags_to_chunks, tokenize_words

logger = logging.getLogger(__name__)


def predict(
    model_dir: str | Path | HFEntityMatcherTrainable,
    documents: Iterable[Any],
    batch_size: int = 32,
    device: int = -1,
) -> list[TextDocument]:
    """New documents holding the entities the tagger finds in ``documents``.

    ``model_dir`` is a folder saved by the tagger (any checkpoint of a run), any Hugging Face
    token-classification folder (labels and scheme read from its ``id2label``, with a warning;
    a medkit-trained tagger, a hub NER model saved locally), or a tagger. Each
    document is split into words once; documents longer than the model's limit go through
    overlapping windows whose predictions are merged (each word predicted by the window where it
    is most central). Windows are batched by length; the model runs under ``torch.inference_mode``.
    Each entity's ``score`` is the mean probability of its words' predicted tags.

    A nested tagger (:class:`~medkit_exp.ner.nested_tagger.NestedEntityTagger`) predicts each
    layer; the entities are the union of the layers' (an entity found in two layers is given once,
    with its higher score), so they may overlap; each entity's score is the mean probability of its
    words' tags in its layer. Entities are sorted by start, longest first, then label.
    """
    tagger = model_dir if isinstance(model_dir, HFEntityMatcherTrainable) else HFEntityMatcherTrainable.from_pretrained(model_dir, device)
    docs, words, jobs = _window_jobs(tagger, documents)
    tag_ids, probabilities = _blank_layers(tagger, words)
    tagger.model.eval()
    order = sorted(range(len(jobs)), key=lambda j: len(jobs[j][2]["input_ids"]))
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = [jobs[j] for j in order[start : start + batch_size]]
            _predict_batch(tagger, chunk, tag_ids, probabilities)
    return _documents(docs, words, tag_ids, probabilities, tagger)


def documents_from_window_tags(
    tagger: HFEntityMatcherTrainable, documents: Iterable[Any], rows: Sequence[WindowTags]
) -> list[TextDocument] | None:
    """The documents :func:`predict` returns, from tags the tagger already predicted on their
    windows, e.g. during an evaluation (see :meth:`EntityMetricsComputer.start_recording
    <medkit_exp.ner.metrics.EntityMetricsComputer.start_recording>`): ``rows[i]`` holds the tag
    ids, probabilities and gold tag ids at the scored positions (the first sub-token of each word
    the window owns) of the i-th window, windows in the order the tagger's ``preprocess`` makes
    them, document after document.

    None when the rows are not those of these documents: another number of windows or of words
    in a window, gold tags that differ from the documents' entities, a tagger that scores
    every sub-token (``tag_subtokens``), or a nested tagger (its metrics record no rows: its
    report predicts again).
    """
    if tagger.tag_subtokens or _depth(tagger) != 1:
        return None
    docs, words, jobs = _window_jobs(tagger, documents)
    if len(rows) != len(jobs):
        return None
    gold_ids = [_gold_tag_ids(tagger, doc, doc_words) for doc, doc_words in zip(docs, words)]
    tag_ids, probabilities = _blank_layers(tagger, words)
    for (doc_index, owned, _), row in zip(jobs, rows):
        if len(row.predicted) != len(owned) or row.gold != [gold_ids[doc_index][word] for word in owned]:
            return None
        for word, tag_id, prob in zip(owned, row.predicted, row.probabilities):
            tag_ids[doc_index][word] = [tag_id]
            probabilities[doc_index][word] = [prob]
    return _documents(docs, words, tag_ids, probabilities, tagger)


def _depth(tagger: HFEntityMatcherTrainable) -> int:
    """The tagger's tag layers: its ``nesting_depth``, 1 for a flat tagger."""
    return int(getattr(tagger, "nesting_depth", 1))


def _blank_layers(
    tagger: HFEntityMatcherTrainable, words: list[list[Word]]
) -> tuple[list[list[list[int]]], list[list[list[float]]]]:
    """Per document, per word, one tag id (``O``: row 0) and one probability per layer."""
    depth = _depth(tagger)
    tag_ids = [[[0] * depth for _ in doc_words] for doc_words in words]
    probabilities = [[[1.0] * depth for _ in doc_words] for doc_words in words]
    return tag_ids, probabilities


def _window_jobs(
    tagger: HFEntityMatcherTrainable, documents: Iterable[Any]
) -> tuple[list[TextDocument], list[list[Word]], list[tuple[int, list[int], dict[str, Any]]]]:
    """The documents, their words, and their windows as the tagger cuts them: ``(document
    index, owned words in order, model inputs)``, in document and window order."""
    docs = [as_document(item) for item in documents]
    words = [tokenize_words(doc.text) for doc in docs]
    jobs = []
    for index, doc_words in enumerate(words):
        for window in tagger.encode_words([w.text for w in doc_words]):
            inputs = tagger.window_inputs(window)
            owned = sorted({w for w in window.word_ids if w in window.owned_words})
            jobs.append((index, owned, inputs))
    return docs, words, jobs


def _gold_tag_ids(tagger: HFEntityMatcherTrainable, doc: TextDocument, words: Sequence[Word]) -> list[int]:
    """The tag id of each word for the document's entities of the tagger's labels."""
    entities = [entity for entity in doc.entities if entity.label in tagger.labels]
    return [tagger.label_to_id[tag] for tag in spans_to_tags(words, entities, tagger.tagging_scheme)]


def _documents(
    docs: list[TextDocument], words: list[list[Word]], tag_ids: list[list[list[int]]],
    probabilities: list[list[list[float]]],
    tagger: HFEntityMatcherTrainable,
) -> list[TextDocument]:
    return [
        doc.with_entities(_decode(doc, doc_words, ids, probs, tagger))
        for doc, doc_words, ids, probs in zip(docs, words, tag_ids, probabilities)
    ]


def _predict_batch(
    tagger: HFEntityMatcherTrainable, chunk: list[tuple], tag_ids: list[list[int]], probabilities: list[list[float]]
) -> None:
    batch = tagger.collate_windows([inputs for _, _, inputs in chunk], with_labels=False).to_device(tagger.device)
    logits = tagger.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    # [B, T, depth, C]: one softmax per layer (a flat tagger has one layer)
    layered = logits.float().unflatten(-1, (_depth(tagger), len(tagger.tag_list)))
    best_prob, best_id = layered.softmax(-1).max(-1)
    best_prob, best_id = best_prob.cpu(), best_id.cpu()
    word_tag = _bilou_word_tag(tagger) if tagger.tag_subtokens and tagger.tagging_scheme == "bilou" else None
    for row, (doc_index, owned, inputs) in enumerate(chunk):
        positions = inputs["first_positions"]
        row_ids = best_id[row, positions].tolist()
        row_probs = best_prob[row, positions].tolist()
        if word_tag is not None:  # the word's tag is told by its first and last sub-tokens (flat only)
            last = inputs["last_positions"]
            row_ids = [[word_tag(i, j)] for (i,), (j,) in zip(row_ids, best_id[row, last].tolist())]
            row_probs = [[(p + q) / 2] for (p,), (q,) in zip(row_probs, best_prob[row, last].tolist())]
        for word, layer_ids, layer_probs in zip(owned, row_ids, row_probs):
            tag_ids[doc_index][word] = layer_ids
            probabilities[doc_index][word] = layer_probs


def _bilou_word_tag(tagger: HFEntityMatcherTrainable) -> Any:
    """Word tag id from the tag ids of its first and last sub-tokens (``B..L`` -> ``U``, ``I..L``
    -> ``L``, ``B..I`` -> ``B``): the inverse of :func:`~medkit_exp.ner.encoding.subtoken_tags`."""
    names, ids = tagger.id_to_label, tagger.label_to_id

    def word_tag(first_id: int, last_id: int) -> int:
        first = names[first_id]
        if first == "O":
            return first_id
        prefix, label = first.split("-", 1)
        starts, ends = prefix in "BU", names[last_id][0] in "LU"
        return ids[f"{'BUIL'[2 * (not starts) + ends]}-{label}"]

    return word_tag


def _decode(
    doc: TextDocument, words: Sequence[Word], ids: list[list[int]], probs: list[list[float]],
    tagger: HFEntityMatcherTrainable,
) -> list[Entity]:
    """The entities of each layer's tags (strict decoding), their union sorted by start, longest
    first, then label; a chunk found in two layers is one entity, with the higher score."""
    scores: dict[tuple[str, int, int], float] = {}
    for layer in range(_depth(tagger)):
        tags = [tagger.id_to_label[word_ids[layer]] for word_ids in ids]
        for label, first, end in tags_to_chunks(tags, tagger.tagging_scheme):
            score = sum(p[layer] for p in probs[first:end]) / (end - first)
            scores[(label, first, end)] = max(score, scores.get((label, first, end), 0.0))
    entities = []
    for (label, first, end), score in sorted(scores.items(), key=lambda item: (item[0][1], -item[0][2], item[0][0])):
        start, stop = words[first].start, words[end - 1].end
        entities.append(Entity(label, [(start, stop)], text=doc.text[start:stop], score=score))
    return entities
