"""predict(): entities at exact offsets, both schemes, long documents, batching, edge cases.

Most tests use a *lookup* tagger: the tiny BERT with its weights set by hand so that each
sub-token's tag depends on that sub-token alone (position embeddings, attention and feed-forward
outputs zeroed; each chosen token's embedding points at one tag, which the classifier reads
back). Its predictions are known in advance, whatever the window or the batch a word is in.
"""

from __future__ import annotations

import math
import re

import pytest
import torch

from medkit_exp.ner.documents import TextDocument
from medkit_exp.ner.prediction import predict
from medkit_exp.ner.tagger import HFEntityMatcherTrainable
from medkit_exp.ner.tagging import tokenize_words

LABELS = ["problem", "treatment", "test"]


def lookup_tagger(model_dir, scheme: str, token_tags: dict[str, str], **options) -> HFEntityMatcherTrainable:
    """A tagger whose model tags each sub-token in ``token_tags`` with its tag, all others ``O``."""
    tagger = HFEntityMatcherTrainable(model_dir, LABELS, scheme, **options)
    model, hidden = tagger.model, tagger.model.config.hidden_size
    half = hidden // 2
    assert len(tagger.tag_list) <= half

    def direction(tag_id: int) -> torch.Tensor:
        vector = torch.zeros(hidden)
        vector[tag_id], vector[half + tag_id] = 1.0, -1.0  # mean 0: LayerNorm keeps its direction
        return vector

    with torch.no_grad():
        embeddings = model.bert.embeddings
        embeddings.position_embeddings.weight.zero_()
        embeddings.token_type_embeddings.weight.zero_()
        embeddings.word_embeddings.weight.copy_(direction(tagger.label_to_id["O"]).expand_as(embeddings.word_embeddings.weight))
        vocab = tagger.tokenizer.get_vocab()
        for token, tag in token_tags.items():
            embeddings.word_embeddings.weight[vocab[token]] = direction(tagger.label_to_id[tag])
        for layer in model.bert.encoder.layer:  # each layer becomes LayerNorm(x) = x
            for dense in (layer.attention.output.dense, layer.output.dense):
                dense.weight.zero_()
                dense.bias.zero_()
        for name, module in model.named_modules():
            if name.endswith("LayerNorm"):
                module.weight.fill_(1.0)
                module.bias.zero_()
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        for tag_id in range(len(tagger.tag_list)):
            model.classifier.weight[tag_id] = direction(tag_id)
    return tagger


IOB2_TAGS = {"chest": "B-problem", "pain": "I-problem", "fever": "B-problem", "insulin": "B-treatment",
             "metformin": "B-treatment", "scan": "B-test"}
BILOU_TAGS = {"chest": "B-problem", "pain": "L-problem", "fever": "U-problem", "insulin": "U-treatment",
              "blood": "B-test", "pressure": "L-test"}


def spans(document: TextDocument) -> list[tuple[str, str, int, int]]:
    return [(e.label, e.text, e.start, e.end) for e in document.entities]


def at(text: str, mention: str, occurrence: int = 0) -> tuple[int, int]:
    starts = [m.start() for m in re.finditer(re.escape(mention), text)]
    return starts[occurrence], starts[occurrence] + len(mention)


def check_offsets(document: TextDocument) -> None:
    for entity in document.entities:
        assert len(entity.spans) == 1
        assert entity.text == document.text[entity.start : entity.end]
        assert 0 < entity.score <= 1


# ------------------------------------------------------------------ offsets and schemes
def test_iob2_entities_at_exact_offsets(tiny_bert_dir):
    tagger = lookup_tagger(tiny_bert_dir, "iob2", IOB2_TAGS)
    text = "Chest  pain,\nFEVER; insulin daily.\tpain alone (scan) fièvre et chest"
    (document,) = predict(tagger, [TextDocument(text, doc_id="d1", metadata={"k": 1})])
    assert document.doc_id == "d1" and document.text == text and document.metadata == {"k": 1}
    check_offsets(document)
    assert spans(document) == [
        ("problem", "Chest  pain", 0, 11),
        ("problem", "FEVER", *at(text, "FEVER")),
        ("treatment", "insulin", *at(text, "insulin")),
        ("test", "scan", *at(text, "scan")),
        ("problem", "chest", *at(text, "chest")),
    ]  # the second "pain" follows O: I- without B- is no entity (strict decoding)
    expected_score = math.exp(8) / (math.exp(8) + len(tagger.tag_list) - 1)
    assert all(e.score == pytest.approx(expected_score, rel=1e-3) for e in document.entities)


def test_bilou_entities_decode_strictly(tiny_bert_dir):
    tagger = lookup_tagger(tiny_bert_dir, "bilou", BILOU_TAGS)
    text = "chest pain and fever; blood pressure, insulin. pain alone, chest fever, blood test"
    (document,) = predict(tagger, [TextDocument(text)])
    check_offsets(document)
    assert spans(document) == [
        ("problem", "chest pain", *at(text, "chest pain")),
        ("problem", "fever", *at(text, "fever")),
        ("test", "blood pressure", *at(text, "blood pressure")),
        ("treatment", "insulin", *at(text, "insulin")),
        ("problem", "fever", *at(text, "fever", 1)),
    ]  # "pain" alone (L- after O), "chest" before U- and "blood" before O are unclosed: dropped


@pytest.mark.parametrize("scheme", ["iob2", "bilou"])
def test_tag_subtokens_decodes_words_split_into_subtokens(tiny_bert_dir, scheme):
    # "zorbitis" is z ##o ##r ##b ##i ##t ##i ##s; with tag_subtokens, the model tags every sub-token.
    inside = {f"##{c}": "I-problem" for c in "orbit"}
    if scheme == "bilou":
        token_tags = {"z": "B-problem", **inside, "##s": "L-problem", "fever": "U-problem"}
    else:
        token_tags = {"z": "B-problem", **inside, "##s": "I-problem", "fever": "B-problem"}
    tagger = lookup_tagger(tiny_bert_dir, scheme, token_tags, tag_subtokens=True)
    text = "zorbitis and fever, zorbitis"
    (document,) = predict(tagger, [TextDocument(text)])
    check_offsets(document)
    assert spans(document) == [
        ("problem", "zorbitis", 0, 8), ("problem", "fever", *at(text, "fever")), ("problem", "zorbitis", *at(text, "zorbitis", 1))
    ]


# ------------------------------------------------------------------ long documents
FILLERS = ["the patient reports", "no", "severe", "with daily", "qz", "mild and"]
ITEMS = ["chest pain", "fever", "insulin", "chest pain", "zorbitis", "metformin"]  # all but zorbitis are entities


def sentence_items(index: int) -> tuple[str, str]:
    return ITEMS[index % len(ITEMS)], ITEMS[(index * 7 + 3) % len(ITEMS)]


def long_text(nb_sentences: int = 30) -> str:
    return " ".join(f"{FILLERS[i % len(FILLERS)]} {' '.join(sentence_items(i))} ." for i in range(nb_sentences))


def test_long_document_equals_its_pieces(tiny_bert_dir):
    windowed = lookup_tagger(tiny_bert_dir, "iob2", IOB2_TAGS, tokenizer_max_length=16)
    text = long_text()
    windows = windowed.encode_words([w.text for w in tokenize_words(text)])
    assert len(windows) > 8
    # Some "chest pain" is cut by a window edge: its two words belong to different windows.
    words = tokenize_words(text)
    owner = {word: index for index, window in enumerate(windows) for word in window.owned_words}
    chest_pain = [i for i in range(len(words) - 1) if (words[i].text, words[i + 1].text) == ("chest", "pain")]
    assert any(owner[i] != owner[i + 1] for i in chest_pain)

    (whole,) = predict(windowed, [TextDocument(text)])
    check_offsets(whole)
    # The same text cut into sentences, each predicted alone, offsets moved back into the text.
    pieces, offsets = [], []
    for match in re.finditer(r"[^.]+\.", text):
        pieces.append(TextDocument(match.group()))
        offsets.append(match.start())
    expected = [
        (e.label, e.text, e.start + offset, e.end + offset)
        for document, offset in zip(predict(windowed, pieces), offsets)
        for e in document.entities
    ]
    assert spans(whole) == expected
    assert len(expected) == sum(item != "zorbitis" for i in range(30) for item in sentence_items(i))
    second_half = [e for e in whole.entities if e.start > len(text) // 2]
    assert len(second_half) > 10
    assert whole.entities[-1].text == text[whole.entities[-1].start : whole.entities[-1].end]


def test_saved_folder_predicts_like_the_tagger(tiny_bert_dir, tmp_path):
    tagger = lookup_tagger(tiny_bert_dir, "bilou", BILOU_TAGS, tokenizer_max_length=16)
    tagger.save(tmp_path / "model")
    documents = [TextDocument(long_text(12)), TextDocument("chest pain and fever")]
    from_folder = predict(tmp_path / "model", documents)
    from_tagger = predict(tagger, documents)
    assert [spans(d) for d in from_folder] == [spans(d) for d in from_tagger]
    assert len(from_folder[0].entities) > 5


# ------------------------------------------------------------------ batching and edge cases
def mixed_documents() -> list[TextDocument]:
    return [
        TextDocument(long_text(9), doc_id="long"),
        TextDocument("fever", doc_id="one word"),
        TextDocument("", doc_id="empty"),
        TextDocument("chest pain treated with insulin ; scan normal", doc_id="short"),
        TextDocument(long_text(4), doc_id="medium"),
        TextDocument(" \n\t  ", doc_id="blank"),
    ]


def test_batches_sorted_by_length_keep_each_document_its_entities(tiny_bert_dir):
    tagger = lookup_tagger(tiny_bert_dir, "iob2", IOB2_TAGS, tokenizer_max_length=16)
    documents = mixed_documents()
    alone = [spans(predict(tagger, [document])[0]) for document in documents]
    for batch_size in (1, 3, 32):
        together = predict(tagger, documents, batch_size=batch_size)
        assert [d.doc_id for d in together] == [d.doc_id for d in documents]
        assert [spans(d) for d in together] == alone
    assert alone[1] == [("problem", "fever", 0, 5)] and alone[2] == alone[5] == []


def test_batch_size_does_not_change_a_real_model(tiny_bert_dir):
    # The random tiny BERT, its classifier scaled up so that tags vary from word to word: padding
    # and batching must leave its predictions unchanged (attention masks the padding).
    tagger = HFEntityMatcherTrainable(tiny_bert_dir, LABELS, "iob2", tokenizer_max_length=16)
    torch.manual_seed(1)
    with torch.no_grad():
        tagger.model.classifier.weight.normal_(0.0, 1.0)
    documents = mixed_documents()
    one = predict(tagger, documents, batch_size=1)
    many = predict(tagger, documents, batch_size=32)
    assert [spans(d) for d in one] == [spans(d) for d in many]
    assert sum(len(d.entities) for d in one) > 5, "the test needs a model that finds entities"
    for a, b in zip(one, many):
        check_offsets(a)
        assert [e.score for e in a.entities] == pytest.approx([e.score for e in b.entities], abs=1e-5)


def test_empty_and_blank_documents(tiny_bert_dir):
    tagger = lookup_tagger(tiny_bert_dir, "bilou", BILOU_TAGS)
    assert predict(tagger, []) == []
    empty, blank, fever = predict(tagger, [TextDocument(""), TextDocument("   \n "), TextDocument(" fever ")])
    assert (empty.text, empty.entities) == ("", [])
    assert (blank.text, blank.entities) == ("   \n ", [])
    assert spans(fever) == [("problem", "fever", 1, 6)]


def test_medkit_documents_are_accepted(tiny_bert_dir):
    pytest.importorskip("medkit", reason="medkit-lib is not installed")
    from medkit.core.text import TextDocument as MedkitDocument

    tagger = lookup_tagger(tiny_bert_dir, "iob2", IOB2_TAGS)
    (document,) = predict(tagger, [MedkitDocument(text="Fever, chest pain.")])
    assert spans(document) == [("problem", "Fever", 0, 5), ("problem", "chest pain", 7, 17)]


# ------------------------------------------------------------------ predictions an evaluation made
def recorded_evaluation(tagger: HFEntityMatcherTrainable, documents: list[TextDocument], tmp_path) -> list:
    """The rows the tagger's metrics computer records during one Trainer evaluation of ``documents``."""
    from medkit_exp.training import Trainer, TrainerConfig

    computer = tagger.make_metrics_computer()
    config = TrainerConfig(output_dir=str(tmp_path / "run"), eval_batch_size=3, batch_size=2)
    trainer = Trainer(tagger, config, documents, documents, computer, callback=[])
    computer.start_recording()
    trainer.evaluate()
    return computer.take_recording()


def gold_documents() -> list[TextDocument]:
    from medkit_exp.ner.documents import Entity

    text = long_text(9)
    fever = [m.span() for m in re.finditer("fever", text)]
    return [
        TextDocument(text, [Entity("problem", [span]) for span in fever], doc_id="long"),
        TextDocument("chest pain treated with insulin ; scan normal", [Entity("treatment", [(24, 31)])], doc_id="short"),
        TextDocument("", doc_id="empty"),
        TextDocument("fever", doc_id="one word"),
    ]


def random_tagger(model_dir, **options) -> HFEntityMatcherTrainable:
    tagger = HFEntityMatcherTrainable(model_dir, LABELS, "iob2", tokenizer_max_length=16, **options)
    torch.manual_seed(1)
    with torch.no_grad():
        tagger.model.classifier.weight.normal_(0.0, 1.0)
    return tagger


def test_an_evaluations_predictions_give_the_documents_predict_gives(tiny_bert_dir, tmp_path):
    """Documents rebuilt from what an evaluation predicted on their windows (long documents cut
    into several) equal predict()'s: same entities at the same offsets, same scores."""
    from medkit_exp.ner.prediction import documents_from_window_tags

    tagger = random_tagger(tiny_bert_dir)
    documents = gold_documents()
    rows = recorded_evaluation(tagger, documents, tmp_path)
    assert len(rows) > len(documents)  # the long document has several windows
    rebuilt = documents_from_window_tags(tagger, documents, rows)
    predicted = predict(tagger, [doc.with_entities([]) for doc in documents])
    assert rebuilt is not None
    assert [spans(d) for d in rebuilt] == [spans(d) for d in predicted]
    assert sum(len(d.entities) for d in rebuilt) > 5, "the test needs a model that finds entities"
    for a, b in zip(rebuilt, predicted):
        check_offsets(a)
        assert [e.score for e in a.entities] == pytest.approx([e.score for e in b.entities], abs=1e-5)


def test_predictions_of_other_documents_are_refused(tiny_bert_dir, tmp_path):
    """Rows that are not those of the documents give None (the caller then predicts): another
    number of windows, other words, other gold entities, or a tagger that scores sub-tokens."""
    from medkit_exp.ner.prediction import documents_from_window_tags

    tagger = random_tagger(tiny_bert_dir)
    documents = gold_documents()
    rows = recorded_evaluation(tagger, documents, tmp_path)
    assert documents_from_window_tags(tagger, documents, rows) is not None
    assert documents_from_window_tags(tagger, documents[1:], rows) is None
    assert documents_from_window_tags(tagger, documents, rows[:-1]) is None
    other_words = [documents[0], TextDocument("chest pain with insulin ; scan normal"), *documents[2:]]
    assert documents_from_window_tags(tagger, other_words, rows) is None
    other_gold = [documents[0], documents[1].with_entities([]), *documents[2:]]
    assert documents_from_window_tags(tagger, other_gold, rows) is None
    subtokens = random_tagger(tiny_bert_dir, tag_subtokens=True)
    assert documents_from_window_tags(subtokens, documents, recorded_evaluation(subtokens, documents, tmp_path)) is None
