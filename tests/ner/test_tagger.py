"""HFEntityMatcherTrainable on a real WordPiece tokenizer and a tiny random BERT (no downloads).

The tiny vocabulary holds a few clinical words and every single character, so a word missing
from it ("zorbitis", "glimepiride") is split into one sub-token per character: the cases where
word tags must be aligned to sub-tokens with care.
"""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
import torch

from medkit_exp.errors import ConfigError, DataError
from medkit_exp.ner.documents import Entity, TextDocument
from medkit_exp.ner.encoding import IGNORE_INDEX, subtoken_tags
from medkit_exp.ner.tagger import HFEntityMatcherTrainable
from medkit_exp.ner.tagging import find_tag_errors, spans_to_tags, tags_to_chunks, tokenize_words
from medkit_exp.training import Trainer, TrainerConfig

LABELS = ["problem", "treatment", "test"]
TEXT = "The patient has acute zorbitis, treated with metformin and glimepiride daily."
#       words: The patient has acute zorbitis , treated with metformin and glimepiride daily .
EXPECTED_WORD_TAGS = {
    "iob2": ["O", "O", "O", "B-problem", "I-problem", "O", "O", "O", "B-treatment", "O", "B-treatment", "O", "O"],
    "bilou": ["O", "O", "O", "B-problem", "L-problem", "O", "O", "O", "U-treatment", "O", "U-treatment", "O", "O"],
}


def entity(text: str, label: str, mention: str, occurrence: int = 0) -> Entity:
    start = -1
    for _ in range(occurrence + 1):
        start = text.index(mention, start + 1)
    return Entity(label, [(start, start + len(mention))])


def example_document() -> TextDocument:
    return TextDocument(
        TEXT,
        [entity(TEXT, "problem", "acute zorbitis"), entity(TEXT, "treatment", "metformin"),
         entity(TEXT, "treatment", "glimepiride")],
        doc_id="example",
    )


@pytest.fixture
def make_tagger(tiny_bert_dir):
    def build(**options) -> HFEntityMatcherTrainable:
        options.setdefault("labels", LABELS)
        return HFEntityMatcherTrainable(tiny_bert_dir, **options)

    return build


def subtokens(tagger: HFEntityMatcherTrainable, input_ids: list[int]) -> list[str]:
    return tagger.tokenizer.convert_ids_to_tokens(input_ids)


def text_positions(tagger: HFEntityMatcherTrainable, input_ids: list[int]) -> list[int]:
    special = set(tagger.tokenizer.all_special_ids)
    return [p for p, i in enumerate(input_ids) if i not in special]


def word_starts(tokens: list[str], positions: list[int]) -> list[int]:
    """Positions of the first sub-token of each word (WordPiece marks continuations with ##)."""
    return [p for p in positions if not tokens[p].startswith("##")]


# ------------------------------------------------------------------ alignment of word tags
@pytest.mark.parametrize("scheme", ["iob2", "bilou"])
def test_word_tags_on_first_subtokens(make_tagger, scheme):
    tagger = make_tagger(tagging_scheme=scheme)
    (window,) = tagger.preprocess(example_document())["windows"]
    ids, labels, mask = window["input_ids"], window["labels"], window["eval_mask"]
    tokens = subtokens(tagger, ids)
    positions = text_positions(tagger, ids)
    starts = word_starts(tokens, positions)
    assert len(starts) == len(EXPECTED_WORD_TAGS[scheme])
    assert "".join(t.removeprefix("##") for t in tokens[starts[4]:starts[5]]) == "zorbitis"
    assert starts[5] - starts[4] == len("zorbitis")  # the test really has multi-sub-token words
    assert [tagger.id_to_label[labels[p]] for p in starts] == EXPECTED_WORD_TAGS[scheme]
    assert all(labels[p] == IGNORE_INDEX for p in range(len(ids)) if p not in starts)  # specials too
    assert [p for p, keep in enumerate(mask) if keep] == starts


@pytest.mark.parametrize("scheme", ["iob2", "bilou"])
def test_tag_subtokens_gives_a_valid_subtoken_sequence(make_tagger, scheme):
    tagger = make_tagger(tagging_scheme=scheme, tag_subtokens=True)
    document = example_document()
    (window,) = tagger.preprocess(document)["windows"]
    ids, labels, mask = window["input_ids"], window["labels"], window["eval_mask"]
    tokens = subtokens(tagger, ids)
    positions = text_positions(tagger, ids)
    assert all(labels[p] != IGNORE_INDEX for p in positions), "every sub-token gets a tag"
    assert labels[0] == labels[-1] == IGNORE_INDEX  # [CLS] and [SEP]
    sub_tags = [tagger.id_to_label[labels[p]] for p in positions]
    assert find_tag_errors(sub_tags, scheme) == []
    entity_subtokens = [t for p, t in zip(positions, sub_tags) if t != "O"]
    assert len(entity_subtokens) == 1 + len("zorbitis") + 1 + len("glimepiride")  # "acute" is in the vocab
    # Decoding the sub-token tags gives back the gold entities, word for word.
    starts = word_starts(tokens, positions)
    word_of = {p: sum(1 for s in starts if s <= p) - 1 for p in positions}
    decoded = [(label, word_of[positions[first]], word_of[positions[end - 1]] + 1)
               for label, first, end in tags_to_chunks(sub_tags, scheme)]
    assert decoded == tags_to_chunks(EXPECTED_WORD_TAGS[scheme], scheme)
    assert decoded == [("problem", 3, 5), ("treatment", 8, 9), ("treatment", 10, 11)]
    # Metrics decode the sub-token tags (first sub-tokens alone would read "B I" for "acute
    # zorbitis" under BILOU, an unclosed entity): the eval mask covers every text sub-token.
    assert [p for p, keep in enumerate(mask) if keep] == positions


# ------------------------------------------------------------------ long documents
def long_document(nb_sentences: int = 8) -> TextDocument:
    rng = random.Random(7)
    pieces, entities = [], []
    mentions = [("problem", "acute zorbitis"), ("treatment", "glimepiride"), ("test", "blood pressure"),
                ("problem", "fever")]
    offset = 0
    for index in range(nb_sentences):
        label, mention = mentions[index % len(mentions)]
        filler = " ".join(rng.choice(["the", "patient", "reports", "daily", "qz", "with", "severe"]) for _ in range(4))
        sentence = f"{filler} {mention} ."
        start = offset + len(filler) + 1
        entities.append(Entity(label, [(start, start + len(mention))]))
        pieces.append(sentence)
        offset += len(sentence) + 1
    text = " ".join(pieces) + " final fever"
    entities.append(Entity("problem", [(len(text) - 5, len(text))]))  # the very last word
    return TextDocument(text, entities, doc_id="long")


@pytest.mark.parametrize("tag_subtokens", [False, True])
def test_long_document_windows_score_every_word_once(make_tagger, tag_subtokens):
    tagger = make_tagger(tagging_scheme="bilou", tokenizer_max_length=16, tag_subtokens=tag_subtokens)
    document = long_document()
    words = tokenize_words(document.text)
    expected = spans_to_tags(words, document.entities, "bilou")
    features = tagger.preprocess(document)
    windows = features["windows"]
    assert len(windows) >= 4, "the document is several windows long"
    total_subtokens = len(tagger.tokenizer([w.text for w in words], is_split_into_words=True,
                                           add_special_tokens=False)["input_ids"])
    assert total_subtokens > 3 * 14
    cls_id, sep_id = tagger.tokenizer.cls_token_id, tagger.tokenizer.sep_token_id
    for window in windows:
        assert len(window["input_ids"]) <= 16
        assert window["input_ids"][0] == cls_id and window["input_ids"][-1] == sep_id
        assert len(window["labels"]) == len(window["eval_mask"]) == len(window["input_ids"])
    assert features["length"] == max(len(w["input_ids"]) for w in windows)
    # In window order, the scored positions are the document's words (or, with tag_subtokens,
    # sub-tokens) in order: nothing truncated, nothing scored twice, the last entity included.
    scored = [tagger.id_to_label[w["labels"][p]] for w in windows for p, keep in enumerate(w["eval_mask"]) if keep]
    if tag_subtokens:
        sizes = [len(tagger.tokenizer.tokenize(w.text)) for w in words]
        expected = [tag for word_tag, size in zip(expected, sizes) for tag in subtoken_tags(word_tag, size, "bilou")]
        assert sum(sum(w["eval_mask"]) for w in windows) == total_subtokens
    else:
        assert sum(sum(w["eval_mask"]) for w in windows) == len(words)
    assert scored == expected
    assert scored[-1] == "U-problem"
    # Consecutive windows share context (the stride): each window after the first starts with
    # sub-tokens the window before it also holds.
    texts = [w["input_ids"][1:-1] for w in windows]
    assert all(texts[i + 1][0] in texts[i] for i in range(len(texts) - 1))
    assert sum(len(t) for t in texts) > total_subtokens


def test_eval_mask_counts_words_in_a_batch_of_long_documents(make_tagger):
    tagger = make_tagger(tokenizer_max_length=16)
    documents = [long_document(3), long_document(6), example_document()]
    batch = tagger.collate([tagger.preprocess(d) for d in documents])
    assert int(batch["eval_mask"].sum()) == sum(len(tokenize_words(d.text)) for d in documents)
    assert batch["input_ids"].shape[1] == 16
    assert bool((batch["labels"][batch["eval_mask"]] != IGNORE_INDEX).all())


def test_control_character_keeps_subtoken_order(make_tagger):
    # The tokenizer drops "\x00": the word gets [UNK], and "zorbitis" must keep its letters in order.
    tagger = make_tagger()
    (window,) = tagger.encode_words(["zorbitis", "\x00", "fever"])
    tokens = subtokens(tagger, window.input_ids)
    assert tokens == ["z", "##o", "##r", "##b", "##i", "##t", "##i", "##s", "[UNK]", "fever"]
    assert window.word_ids == [0] * 8 + [1, 2]


# ------------------------------------------------------------------ labels
def test_unknown_labels_are_an_error_naming_them(make_tagger):
    tagger = make_tagger(labels=["problem"])
    document = TextDocument(
        "fever treated with insulin and metformin , chest x-ray",
        [Entity("problem", [(0, 5)]), Entity("drug", [(19, 26)]), Entity("drug", [(31, 40)]),
         Entity("exam", [(43, 54)])],
        doc_id="doc-7",
    )
    with pytest.raises(DataError, match=r"drug \(2\), exam \(1\)") as error:
        tagger.preprocess(document)
    assert "doc-7" in str(error.value) and "unknown_labels='drop'" in str(error.value)

    dropping = make_tagger(labels=["problem"], unknown_labels="drop")
    (window,) = dropping.preprocess(document)["windows"]
    assert dropping.dropped_labels == Counter({"drug": 2, "exam": 1})
    tags = [dropping.id_to_label[window["labels"][p]] for p, keep in enumerate(window["eval_mask"]) if keep]
    assert tags == ["B-problem"] + ["O"] * 10


# ------------------------------------------------------------------ batches and optimizer
def test_padding_to_a_multiple(make_tagger):
    """A multiple pads batches up to it; "auto" (the default) pads a CPU batch to its longest only."""
    documents = [TextDocument("fever"), TextDocument("the patient reports severe chest pain daily")]
    assert make_tagger().pad_to_multiple_of == "auto"
    for multiple, width in ((8, 16), (None, 9), ("auto", 9), (1, 9), (4, 12)):
        tagger = make_tagger(pad_to_multiple_of=multiple)
        items = [tagger.preprocess(d) for d in documents]
        assert [item["length"] for item in items] == [3, 9]
        batch = tagger.collate(items)
        assert tuple(batch["input_ids"].shape) == tuple(batch["labels"].shape) == (2, width)
        assert batch["attention_mask"].sum(1).tolist() == [3, 9]
        padding = batch["attention_mask"] == 0
        assert bool((batch["input_ids"][padding] == tagger.tokenizer.pad_token_id).all())
        assert bool((batch["labels"][padding] == IGNORE_INDEX).all())
        assert not bool(batch["eval_mask"][padding].any())


@pytest.mark.parametrize("bad", [0, -8, 2.5, "eight", True])
def test_a_bad_padding_multiple_names_the_key(make_tagger, bad):
    with pytest.raises(ConfigError, match="pad_to_multiple_of"):
        make_tagger(pad_to_multiple_of=bad)


def test_optimizer_groups_and_fused_adamw(make_tagger):
    tagger = make_tagger()
    optimizer = tagger.configure_optimizer(1e-3, weight_decay=0.01)
    names = {id(p): n for n, p in tagger.model.named_parameters()}
    decay, no_decay = optimizer.param_groups
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.01, 0.0)
    decay_names = [names[id(p)] for p in decay["params"]]
    no_decay_names = [names[id(p)] for p in no_decay["params"]]
    assert sorted(decay_names + no_decay_names) == sorted(names.values())
    assert all(n.endswith("bias") or "LayerNorm" in n for n in no_decay_names)
    assert not any(n.endswith("bias") or "LayerNorm" in n for n in decay_names)
    assert "classifier.weight" in decay_names and "bert.embeddings.LayerNorm.weight" in no_decay_names
    assert optimizer.defaults["fused"] is True
    assert optimizer.param_groups[0]["lr"] == 1e-3


# ------------------------------------------------------------------ tokenisation happens once
class CountingTokenizer:
    """Wraps a tokenizer and counts the calls that tokenise text."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.inner(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize("cache", [True, False])
def test_documents_are_tokenised_once_over_three_epochs(make_tagger, tmp_path, cache):
    tagger = make_tagger()
    tagger.tokenizer = counter = CountingTokenizer(tagger.tokenizer)
    train = [example_document(), long_document(2), TextDocument("fever and cough"), TextDocument("no pain")]
    dev = [example_document(), TextDocument("chest x-ray normal")]
    config = TrainerConfig(output_dir=str(tmp_path / "run"), learning_rate=1e-3, nb_training_epochs=3,
                           batch_size=2, seed=0, cache_preprocessed=cache, keep_best_k=0)
    trainer = Trainer(tagger, config, train, dev, tagger.make_metrics_computer(), callback=[])
    trainer.train()
    assert trainer.state.global_step == 6
    if cache:
        assert counter.calls == len(train) + len(dev)
    else:  # the feature's counterpart: without the cache, medkit's per-epoch re-tokenisation
        assert counter.calls >= 3 * (len(train) + len(dev))


# ------------------------------------------------------------------ saving and interop
def force_tag(tagger: HFEntityMatcherTrainable, tag: str) -> None:
    """Make every position predict ``tag`` (zero classifier weights, a winning bias)."""
    with torch.no_grad():
        tagger.model.classifier.weight.zero_()
        tagger.model.classifier.bias.fill_(-5.0)
        tagger.model.classifier.bias[tagger.label_to_id[tag]] = 5.0


def test_save_writes_a_standard_hugging_face_folder(make_tagger, tmp_path):
    transformers = pytest.importorskip("transformers")
    tagger = make_tagger(tagging_scheme="iob2", tokenizer_max_length=64)
    force_tag(tagger, "B-test")  # the pipeline reads B-/I- tags (BILOU's L-/U- it does not know)
    folder = tmp_path / "model"
    tagger.save(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["id2label"] == {str(i): tag for i, tag in tagger.id_to_label.items()}
    assert config["label2id"] == tagger.label_to_id
    assert len(config["id2label"]) == 1 + 2 * len(LABELS)
    assert (folder / "tokenizer_config.json").is_file()
    assert (folder / "tokenizer.json").is_file() or (folder / "vocab.txt").is_file()
    assert any(folder.glob("*.safetensors"))

    ner = transformers.pipeline("token-classification", model=str(folder), aggregation_strategy="simple", device=-1)
    found = ner("fever and cough")
    assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in found] == [
        ("test", "fever", 0, 5), ("test", "and", 6, 9), ("test", "cough", 10, 15)
    ]

    reloaded = HFEntityMatcherTrainable.from_pretrained(folder)
    assert (reloaded.labels, reloaded.tagging_scheme, reloaded.max_length, reloaded.stride) == (
        tagger.labels, "iob2", 64, tagger.stride
    )
    batch = tagger.collate([tagger.preprocess(example_document())])
    with torch.no_grad():
        before, _ = tagger.forward(batch, return_loss=False, eval_mode=True)
        after, _ = reloaded.forward(batch, return_loss=False, eval_mode=True)
    torch.testing.assert_close(before["logits"], after["logits"])


def test_medkit_document_is_accepted(make_tagger):
    pytest.importorskip("medkit", reason="medkit-lib is not installed")
    from medkit.core.text import Entity as MedkitEntity
    from medkit.core.text import Span
    from medkit.core.text import TextDocument as MedkitDocument

    ours = example_document()
    theirs = MedkitDocument(text=ours.text)
    for e in ours.entities:
        theirs.anns.add(MedkitEntity(label=e.label, spans=[Span(e.start, e.end)], text=e.text))
    tagger = make_tagger(tagging_scheme="bilou")
    assert tagger.preprocess(theirs) == tagger.preprocess(ours)


def test_medkit_hf_entity_matcher_runs_our_saved_model(make_tagger, tmp_path):
    pytest.importorskip("medkit", reason="medkit-lib is not installed")
    from medkit.core.text import TextDocument as MedkitDocument
    from medkit.text.ner.hf_entity_matcher import HFEntityMatcher

    tagger = make_tagger(tagging_scheme="iob2")
    force_tag(tagger, "B-problem")
    tagger.save(tmp_path / "model")
    matcher = HFEntityMatcher(model=str(tmp_path / "model"), aggregation_strategy="first")
    document = MedkitDocument(text="fever and zorbitis")
    entities = matcher.run([document.raw_segment])
    assert [(e.label, e.text) for e in entities] == [("problem", "fever"), ("problem", "and"), ("problem", "zorbitis")]
    assert all(0 < e.attrs.get(label="score")[0].value <= 1 for e in entities)


# ------------------------------------------------------------------ a short training run
PROBLEMS = ["fever", "chest pain", "cough", "diabetes", "hypertension", "acute pain"]
TREATMENTS = ["insulin", "metformin"]
TESTS = ["blood pressure", "scan", "chest x-ray"]
TEMPLATES = [
    "the patient reports {p} treated with {t} .",
    "{x} shows {p} .",
    "no {p} ; {t} daily .",
    "patient denies {p} , {x} is normal .",
]


def make_sentences(count: int, seed: int) -> list[TextDocument]:
    rng = random.Random(seed)
    documents = []
    for index in range(count):
        template = TEMPLATES[index % len(TEMPLATES)]
        values = {"p": rng.choice(PROBLEMS), "t": rng.choice(TREATMENTS), "x": rng.choice(TESTS)}
        text, entities = "", []
        for piece in template.split(" "):
            key = piece[1:-1] if piece.startswith("{") else None
            words = values[key] if key else piece
            start = len(text) + (1 if text else 0)
            text = f"{text} {words}" if text else words
            if key:
                entities.append(Entity({"p": "problem", "t": "treatment", "x": "test"}[key], [(start, len(text))]))
        documents.append(TextDocument(text, entities, doc_id=f"s{seed}-{index}"))
    return documents


def test_short_training_run_learns(make_tagger, tmp_path):
    from medkit_exp.ner.metrics import evaluate_documents
    from medkit_exp.ner.prediction import predict

    torch.manual_seed(0)
    tagger = make_tagger(tagging_scheme="bilou")
    train = make_sentences(20, seed=1) * 3
    dev = make_sentences(12, seed=2)
    config = TrainerConfig(output_dir=str(tmp_path / "run"), learning_rate=5e-3, nb_training_epochs=4,
                           batch_size=8, seed=0, group_by_length=True, checkpoint_metric="f1",
                           minimize_checkpoint_metric=False)
    trainer = Trainer(tagger, config, train, dev, tagger.make_metrics_computer(), callback=[])
    history = trainer.train()
    f1 = [entry["eval"]["f1"] for entry in history]
    assert f1[-1] > 0.5 and f1[-1] > f1[0], f1
    # The best checkpoint is a tagger folder that predict loads; document-level F1 agrees.
    predicted = predict(trainer.best_checkpoint, dev)
    assert evaluate_documents(dev, predicted)["f1"] == pytest.approx(max(f1), abs=1e-9)


# ------------------------------------------------------------------ scores against the documents as annotated
NESTED_LABELS = ["DISO", "ANAT", "CHEM"]
NESTED_TEXT = ("cancers colorectaux et fracture du fémur . hypertension sous metformine . "
               "sécrétion de oestrone et de oestradiol .")


def nested_document() -> TextDocument:
    """Seven entities as annotated: three a flat tagger can express, and a same-label nested
    one, a cross-label nested one, a discontinuous one and one ending inside a word."""
    t = NESTED_TEXT
    sec, oes = entity(t, "CHEM", "sécrétion").spans[0], entity(t, "CHEM", "oestradiol").spans[0]
    annotated = [
        entity(t, "DISO", "cancers colorectaux"),  # expressible
        entity(t, "DISO", "cancers"),  # same-label, inside the one above
        entity(t, "DISO", "fracture du fémur"),  # expressible
        entity(t, "ANAT", "fémur"),  # cross-label, inside the one above
        entity(t, "CHEM", "metformine"),  # expressible
        Entity("CHEM", [sec, oes]),  # discontinuous: "sécrétion ... oestradiol"
        entity(t, "DISO", "hypertens"),  # ends inside "hypertension"
    ]
    return TextDocument(t, annotated, doc_id="nested")


def flattened_nested_document() -> TextDocument:
    from medkit_exp.ner.policies import apply_policies

    (flat,), _ = apply_policies([nested_document()], overlaps="keep_longest", discontinuous="fill",
                                keep_annotated=True, log=False)
    assert len(flat.annotated) == 7 and len(flat.entities) == 5  # the two inner ones dropped
    return flat


@pytest.mark.parametrize("options", [{}, {"tag_subtokens": True}, {"tagging_scheme": "bilou", "tag_subtokens": True}])
def test_flat_tagger_scores_against_nested_gold_a_flattened_prediction_is_a_miss(make_tagger, options):
    from medkit_exp.ner.metrics import evaluate_documents
    from medkit_exp.ner.representation import expressible_entities

    tagger = make_tagger(labels=NESTED_LABELS, **options)
    document = flattened_nested_document()
    batch = tagger.collate([tagger.preprocess(document)])
    assert sum(len(row) for row in batch["annotated"]) == 7
    computer = tagger.make_metrics_computer()
    logits = torch.zeros((*batch["labels"].shape, len(tagger.id_to_label)))
    logits.scatter_(-1, batch["labels"].clamp(min=0).unsqueeze(-1), 1.0)  # the gold tags, predicted
    scores = computer.compute(computer.prepare_batch({"logits": logits}, batch))
    assert scores["f1"] == 1.0  # against the flattened gold: perfect
    # Against the gold as annotated: 3 of the 7 entities found, 3 of the 5 predicted right.
    assert scores["annotated/recall"] == pytest.approx(3 / 7)
    assert scores["annotated/precision"] == pytest.approx(3 / 5)
    assert scores["annotated/f1"] == pytest.approx(2 * (3 / 5) * (3 / 7) / (3 / 5 + 3 / 7))
    assert scores["annotated/ceiling"] == pytest.approx(3 / 7)
    # The ceiling is the document-level one: the recall of what the representation can express.
    expressible = document.with_entities(expressible_entities(tagger, document))
    assert evaluate_documents([TextDocument(document.text, document.annotated)], [expressible])["recall"] == scores[
        "annotated/ceiling"]
    assert sorted(computer.metric_names) == sorted(scores)


@pytest.mark.parametrize("tag_subtokens", [False, True])
def test_annotated_entities_of_a_long_document_are_in_exactly_one_window(make_tagger, tag_subtokens):
    tagger = make_tagger(tagging_scheme="bilou", tokenizer_max_length=16, tag_subtokens=tag_subtokens)
    document = long_document()
    windows = tagger.preprocess(document)["windows"]
    assert len(windows) >= 4
    assert sum(len(w["annotated"]) for w in windows) == len(document.entities)
    batch = tagger.collate([{"windows": windows}])
    assert batch["annotated"] == [w["annotated"] for w in windows]
    assert batch[1:3]["annotated"] == batch["annotated"][1:3]  # BatchData slicing keeps the list entry
    assert batch.to_device("cpu")["annotated"] == batch["annotated"]
    computer = tagger.make_metrics_computer()
    logits = torch.zeros((*batch["labels"].shape, len(tagger.id_to_label)))
    logits.scatter_(-1, batch["labels"].clamp(min=0).unsqueeze(-1), 1.0)
    scores = computer.compute(computer.prepare_batch({"logits": logits}, batch))
    # Perfect tags: every entity that no window boundary cuts is found, against either gold.
    cut = sum(1 for w in windows for e in w["annotated"] if e[2] > sum(w["eval_mask"]))
    assert scores["annotated/precision"] == 1.0
    assert scores["annotated/recall"] == scores["annotated/ceiling"] == pytest.approx(1 - cut / len(document.entities))


def test_unknown_labels_of_the_annotated_entities_follow_unknown_labels(make_tagger):
    document = TextDocument("fever and aspirin", [Entity("problem", [(0, 5)])], doc_id="d",
                            annotated=[Entity("problem", [(0, 5)]), Entity("drug", [(10, 17)])])
    with pytest.raises(DataError, match="drug"):
        make_tagger(labels=["problem"]).preprocess(document)
    dropping = make_tagger(labels=["problem"], unknown_labels="drop")
    (window,) = dropping.preprocess(document)["windows"]
    assert window["annotated"] == [("problem", 0, 1)]
    assert dropping.dropped_annotated_labels == Counter({"drug": 1}) and not dropping.dropped_labels


def test_training_evaluation_logs_annotated_scores_and_ceiling(make_tagger, tmp_path):
    torch.manual_seed(0)
    tagger = make_tagger(labels=NESTED_LABELS)
    documents = [flattened_nested_document()] * 4
    config = TrainerConfig(output_dir=str(tmp_path / "run"), learning_rate=1e-3, nb_training_epochs=1,
                           batch_size=2, seed=0, checkpoint_metric="annotated/f1", minimize_checkpoint_metric=False,
                           keep_best_k=0)  # the metric is still checked against the computer's names
    trainer = Trainer(tagger, config, documents, documents[:2], tagger.make_metrics_computer(), callback=[])
    history = trainer.train()
    evaluation = history[-1]["eval"]
    assert evaluation["annotated/ceiling"] == pytest.approx(3 / 7)
    assert 0.0 <= evaluation["annotated/f1"] <= 1.0 and "f1" in evaluation
    # A computer that does not score them does not claim them: the same config stops at once.
    from medkit_exp.errors import ConfigError
    from medkit_exp.ner.metrics import EntityMetricsComputer

    tags_only = EntityMetricsComputer(tagger.id_to_label, tagger.tagging_scheme)
    with pytest.raises(ConfigError, match="annotated/f1"):
        Trainer(tagger, config, documents, documents[:2], tags_only, callback=[])
    # The run's metrics history (what the learning curves read): eval/annotated/... series.
    from medkit_exp.tracking.plots import history_series, read_history

    series = history_series(read_history(tmp_path / "run" / "history.jsonl"))
    assert [value for _, value in series["eval/annotated/ceiling"]] == [pytest.approx(3 / 7)] * len(history)
    assert len(series["eval/annotated/f1"]) == len(history)
