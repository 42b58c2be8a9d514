"""Inference: entities at exact character offsets, with a score, from a saved tagger folder.

>>> documents = predict("outputs/run/checkpoints/checkpoint-0000120", [TextDocument("Fièvre et toux.")])  # doctest: +SKIP
>>> [(e.label, e.spans, e.text, round(e.score, 2)) for e in documents[0].entities]                      # doctest: +SKIP
[('problem', [(0, 6)], 'Fièvre', 0.97), ('problem', [(10, 14)], 'toux', 0.95)]
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from medkit_exp.errors import ConfigError
from medkit_exp.ner.documents import Entity, TextDocument
from medkit_exp.ner.metrics import WindowTags
from medkit_exp.ner.tagger import HFEntityMatcherTrainable, as_document
from medkit_exp.ner.tagging import Word, spans_to_tags, tags_to_chunks, tokenize_words

logger = logging.getLogger(__name__)


#: ``precision`` of :func:`predict`: float32, bfloat16 autocast, int8 linear layers (CPU only).
PRECISIONS = ("fp32", "bf16", "int8")
#: Documents read, predicted and handed out at a time by :func:`predict_stream`.
STREAM_CHUNK = 256


def predict(
    model_dir: str | Path | HFEntityMatcherTrainable,
    documents: Iterable[Any],
    batch_size: int = 32,
    device: int = -1,
    precision: str = "fp32",
    max_batch_tokens: int | None = None,
) -> list[TextDocument]:
    """New documents holding the entities the tagger finds in ``documents``.

    ``model_dir`` is a folder saved by the tagger (any checkpoint of a run), any Hugging Face
    token-classification folder (labels and scheme read from its ``id2label``, with a warning;
    a medkit-trained tagger, a hub NER model saved locally), or a tagger. Each
    document is split into words once; documents longer than the model's limit go through
    overlapping windows whose predictions are merged (each word predicted by the window where it
    is most central). Windows are sorted by length and batched: a batch holds at most
    ``batch_size`` windows and, with ``max_batch_tokens``, at most that many tokens once padded
    (windows x longest; a window longer than the budget is a batch of its own). The model runs
    under ``torch.inference_mode``. Each entity's ``score`` is the mean probability of its words'
    predicted tags (probabilities computed in float32 whatever the precision).

    ``precision``: ``"fp32"``; ``"bf16"`` (the forward pass under ``torch.autocast`` to bfloat16:
    fast on CPUs with AVX-512 BF16 or AMX and on recent GPUs); ``"int8"`` (CPU only: a copy of
    the model with int8 dynamically quantized linear layers, made once per tagger and cached, see
    :mod:`medkit_exp.ner.quantize`; the tagger's own model is not touched).

    A nested tagger (:class:`~medkit_exp.ner.nested_tagger.NestedEntityTagger`) predicts each
    layer; the entities are the union of the layers' (an entity found in two layers is given once,
    with its higher score), so they may overlap; each entity's score is the mean probability of its
    words' tags in its layer. Entities are sorted by start, longest first, then label.
    :func:`predict_stream` does the same over an iterable of any size, chunk by chunk.
    """
    tagger = _tagger(model_dir, device)
    runner = _Runner(tagger, batch_size, precision, max_batch_tokens)
    return runner.predict(list(documents))


def predict_stream(
    model_dir: str | Path | HFEntityMatcherTrainable,
    documents: Iterable[Any],
    batch_size: int = 32,
    device: int = -1,
    precision: str = "fp32",
    max_batch_tokens: int | None = None,
    chunk_size: int = STREAM_CHUNK,
) -> Iterator[TextDocument]:
    """The documents :func:`predict` returns, yielded in input order while ``documents`` is
    consumed lazily, ``chunk_size`` documents at a time (windows are sorted by length within a
    chunk): memory depends on the chunk, not on the corpus. Options are checked (and the tagger
    loaded) at the call, before any document is read.

    >>> for doc in predict_stream(tagger, iter_jsonl("notes.jsonl"), precision="int8"):  # doctest: +SKIP
    ...     print(doc.doc_id, len(doc.entities))
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError("chunk_size", f"must be an integer >= 1, got {chunk_size!r}")
    runner = _Runner(_tagger(model_dir, device), batch_size, precision, max_batch_tokens)
    return _stream(runner, iter(documents), chunk_size)


def _stream(runner: _Runner, documents: Iterator[Any], chunk_size: int) -> Iterator[TextDocument]:
    while chunk := list(itertools.islice(documents, chunk_size)):
        yield from runner.predict(chunk)


def _tagger(model_dir: str | Path | HFEntityMatcherTrainable, device: int) -> HFEntityMatcherTrainable:
    if isinstance(model_dir, HFEntityMatcherTrainable):
        return model_dir
    return HFEntityMatcherTrainable.from_pretrained(model_dir, device)


def check_precision(precision: Any, device: torch.device, key: str = "precision") -> str:
    """``precision`` if it is one of :data:`PRECISIONS` that ``device`` runs; else a ConfigError
    naming ``key``."""
    if precision not in PRECISIONS:
        raise ConfigError(key, f"must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "int8" and device.type != "cpu":
        raise ConfigError(key, f"int8 (dynamic quantization) runs on CPU only, the tagger is on {device}; use bf16")
    return precision


def check_max_batch_tokens(value: Any, key: str = "max_batch_tokens") -> int | None:
    """None (no token bound) or an integer >= 1; else a ConfigError naming ``key``."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(key, f"must be null or an integer >= 1, got {value!r}")
    return value


def token_batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int | None, multiple: int = 1) -> list[range]:
    """Consecutive ranges of ``lengths`` (sorted ascending) making batches of at most
    ``batch_size`` items and, if ``max_batch_tokens`` is set, of at most that many padded tokens
    (items x the longest, rounded up to ``multiple`` as the collator pads); an item over the
    budget alone is a batch of its own.

    >>> token_batches([2, 3, 3, 5, 9], batch_size=4, max_batch_tokens=10)
    [range(0, 3), range(3, 4), range(4, 5)]
    """
    batches: list[range] = []
    start = 0
    for index, length in enumerate(lengths):
        size = index - start + 1
        padded = size * -(-length // multiple) * multiple
        if index > start and (size > batch_size or (max_batch_tokens is not None and padded > max_batch_tokens)):
            batches.append(range(start, index))
            start = index
    if start < len(lengths):
        batches.append(range(start, len(lengths)))
    return batches


class _Runner:
    """One tagger's forward passes at a precision, batched by count and tokens."""

    def __init__(self, tagger: HFEntityMatcherTrainable, batch_size: int, precision: str, max_batch_tokens: int | None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError("batch_size", f"must be an integer >= 1, got {batch_size!r}")
        self.tagger = tagger
        self.batch_size = batch_size
        self.precision = check_precision(precision, tagger.device)
        self.max_batch_tokens = check_max_batch_tokens(max_batch_tokens)
        if self.precision == "int8":
            from medkit_exp.ner.quantize import int8_model

            self.model = int8_model(tagger)
        else:
            self.model = tagger.model

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.tagger.device.type, dtype=torch.bfloat16)

    def predict(self, documents: list[Any]) -> list[TextDocument]:
        tagger = self.tagger
        docs, words, jobs = _window_jobs(tagger, documents)
        tag_ids, probabilities = _blank_layers(tagger, words)
        order = sorted(range(len(jobs)), key=lambda j: len(jobs[j][2]["input_ids"]))
        lengths = [len(jobs[j][2]["input_ids"]) for j in order]
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode(), self.autocast():
                for batch in token_batches(lengths, self.batch_size, self.max_batch_tokens, tagger.padding_multiple):
                    chunk = [jobs[order[i]] for i in batch]
                    _predict_batch(tagger, self.model, chunk, tag_ids, probabilities)
        finally:
            self.model.train(was_training)
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
    tagger: HFEntityMatcherTrainable, model: torch.nn.Module, chunk: list[tuple], tag_ids: list[list[int]],
    probabilities: list[list[float]],
) -> None:
    batch = tagger.collate_windows([inputs for _, _, inputs in chunk], with_labels=False).to_device(tagger.device)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
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
