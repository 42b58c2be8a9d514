"""Pretrained token-classification heads keep their label maps (issue 12, part 2).

Real tiny BERTs whose heads are crafted (a head that always says one tag, random rows to compare
bit for bit), saved as plain Hugging Face folders (no medkit_exp_tagger.json), and a tagger
trained by medkit itself. Label maps are never in sorted order: relabelling a head in sorted
order (the bug) swaps their entity types.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from medkit_exp.errors import ConfigError, DataError
from medkit_exp.ner.documents import TextDocument
from medkit_exp.ner.label_map import apply_label_map, plan_label_map
from medkit_exp.ner.prediction import predict
from medkit_exp.ner.tagger import HFEntityMatcherTrainable
from medkit_exp.ner.tagging import make_tag_labels, tokenize_words

# Sorted, these tags would put B-treatment in B-problem's row 2 (the bug: a sorted relabelling).
# "O" is not first: the tagger puts it first, so B-problem's row must move to row 3 with its tag.
IOB2_TAGS = ["B-test", "I-test", "B-problem", "O", "I-problem", "B-treatment", "I-treatment"]
TEXTS = ["patient with fever and chest pain", "treated with insulin daily , blood pressure normal"]


def tagger_folder(base: Path, folder: Path, tags: list[str], favour: str | None = None, seed: int = 1) -> Path:
    """A token-classification model on ``base`` with ``tags`` as its id2label, saved with its
    tokenizer. ``favour``: the head says that tag for every token; else random rows (bias too)."""
    from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer

    id2label = dict(enumerate(tags))
    config = AutoConfig.from_pretrained(base, id2label=id2label, label2id={t: i for i, t in id2label.items()})
    torch.manual_seed(seed)
    model = AutoModelForTokenClassification.from_pretrained(base, config=config)
    with torch.no_grad():
        if favour is not None:
            model.classifier.weight.zero_()
            model.classifier.bias.copy_(-10.0 - 0.1 * torch.arange(len(tags)))  # rows told apart
            model.classifier.bias[tags.index(favour)] = 10.0
        else:  # HF initialises biases to zero: random ones make the row comparison meaningful
            model.classifier.bias.normal_()
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    return folder


def head(model_or_folder) -> tuple[torch.Tensor, torch.Tensor, dict[int, str]]:
    """(weight, bias, id2label) of a saved folder's or a model's classifier."""
    if isinstance(model_or_folder, Path):
        from transformers import AutoModelForTokenClassification

        model_or_folder = AutoModelForTokenClassification.from_pretrained(model_or_folder)
    layer = model_or_folder.classifier
    return layer.weight.detach(), layer.bias.detach(), dict(model_or_folder.config.id2label)


def assert_rows_kept(tagger: HFEntityMatcherTrainable, folder: Path, renamed: dict[str, str] | None = None) -> int:
    """Each kept tag's row of the tagger equals, bit for bit, the row of that tag in ``folder``."""
    weight, bias, id2label = head(folder)
    row_of = {(renamed or {}).get(tag, tag): row for row, tag in id2label.items()}
    kept = 0
    for row, tag in tagger.id_to_label.items():
        if tag in row_of:
            assert torch.equal(tagger.model.classifier.weight[row].detach(), weight[row_of[tag]]), tag
            assert torch.equal(tagger.model.classifier.bias[row].detach(), bias[row_of[tag]]), tag
            kept += 1
    return kept


@pytest.fixture(scope="module")
def problem_model(tiny_bert_dir, tmp_path_factory) -> Path:
    """A head that says B-problem (row 2 of a non-sorted map) for every token."""
    return tagger_folder(tiny_bert_dir, tmp_path_factory.mktemp("problem") / "model", IOB2_TAGS, favour="B-problem")


def entity_labels(documents: list[TextDocument]) -> list[str]:
    return [entity.label for doc in documents for entity in doc.entities]


def nb_words(texts: list[str]) -> int:
    return sum(len(tokenize_words(text)) for text in texts)


# -------------------------------------------------------------------------- the crafted head
def test_component_on_a_pretrained_head_predicts_its_tag(problem_model):
    tagger = HFEntityMatcherTrainable(problem_model, labels=["treatment", "test", "problem"])
    assert tagger.tagging_scheme == "iob2"
    documents = predict(tagger, [TextDocument(text) for text in TEXTS])
    assert entity_labels(documents) == ["problem"] * nb_words(TEXTS)  # one B-problem entity per word
    assert tagger.label_map.new_tags == [] and tagger.label_map.dropped == []
    assert tagger.label_map.source_rows == [3, 0, 1, 2, 4, 5, 6] and assert_rows_kept(tagger, problem_model) == 7


def test_library_predict_reads_a_folder_without_tagger_settings(problem_model, caplog):
    with caplog.at_level(logging.WARNING):
        documents = predict(problem_model, [TextDocument(text) for text in TEXTS])
    assert entity_labels(documents) == ["problem"] * nb_words(TEXTS)
    (warning,) = [r.getMessage() for r in caplog.records if "inferred from the model's id2label" in r.getMessage()]
    assert str(problem_model) in warning and "['problem', 'test', 'treatment']" in warning and "iob2" in warning


def test_predict_application_accepts_a_hugging_face_folder(problem_model, tmp_path):
    from medkit_exp.ner.formats import read_jsonl
    from tests.test_cli import run_cli

    (tmp_path / "notes.txt").write_text(TEXTS[0] + "\n", encoding="utf-8")
    result = run_cli(
        tmp_path, f"model={problem_model}", f"input={tmp_path / 'notes.txt'}", "output=out.jsonl",
        "hydra.run.dir=pred", module="medkit_exp.predict",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (document,) = read_jsonl(tmp_path / "out.jsonl")
    assert [e.label for e in document.entities] == ["problem"] * nb_words(TEXTS[:1])
    log = (tmp_path / "pred" / "predict.log").read_text() + result.stderr
    assert "no medkit_exp_tagger.json in" in log.lower() and "inferred from the model's id2label" in log


def test_evaluate_and_predict_find_a_hugging_face_folder(problem_model, tiny_bert_dir, tmp_path):
    from medkit_exp.inference import find_model_folder, load_tagger

    assert find_model_folder(str(problem_model), "model") == problem_model
    assert load_tagger(problem_model, "checkpoint").labels == ["problem", "test", "treatment"]
    with pytest.raises(ConfigError, match="config key 'model': .* is a model folder without tags"):
        find_model_folder(str(tiny_bert_dir), "model")  # an encoder: LABEL_0, LABEL_1


# ------------------------------------------------------------------------- rows and label maps
def test_kept_rows_are_bit_identical_new_ones_fresh_dropped_ones_warned(tiny_bert_dir, tmp_path, caplog):
    tags = ["B-drug", "O", "I-drug", "B-test", "I-test", "B-problem", "I-problem"]
    folder = tagger_folder(tiny_bert_dir, tmp_path / "model", tags)
    with caplog.at_level(logging.INFO):
        tagger = HFEntityMatcherTrainable(folder, labels=["treatment", "problem", "test"], tagging_scheme="iob2")
    assert tagger.id_to_label == dict(enumerate(["O", "B-test", "I-test", "B-problem", "I-problem",
                                                 "B-treatment", "I-treatment"]))
    assert assert_rows_kept(tagger, folder) == 5
    new_rows = tagger.model.classifier.weight[5:].detach()
    assert torch.equal(tagger.model.classifier.bias[5:].detach(), torch.zeros(2))  # as HF initialises a head
    assert 0.0 < new_rows.std().item() < 0.1 and tagger.model.config.num_labels == 7
    (dropped,) = [r for r in caplog.records if r.levelno == logging.WARNING and "dropped" in r.getMessage()]
    assert "['B-drug', 'I-drug']" in dropped.getMessage()
    (final,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Label map (pretrained head")]
    assert "new: ['B-treatment', 'I-treatment']" in final and "6: 'I-treatment'" in final
    from medkit_exp.ner.mlflow.hooks import component_tags

    assert component_tags(tagger)["tagger.label_map"] == "O B-test I-test B-problem I-problem B-treatment I-treatment"
    assert "dropped: ['B-drug', 'I-drug']" in component_tags(tagger)["tagger.label_map_origin"]


def test_a_fine_tuned_tagger_saves_and_reloads_its_map(tiny_bert_dir, tmp_path):
    folder = tagger_folder(tiny_bert_dir, tmp_path / "model", ["I-problem", "B-test", "O", "B-problem", "I-test"])
    tagger = HFEntityMatcherTrainable(folder, labels=["test", "problem"])
    tagger.save(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())["id2label"]
    assert {int(k): v for k, v in saved.items()} == tagger.id_to_label
    reloaded = HFEntityMatcherTrainable.from_pretrained(tmp_path / "saved")
    assert reloaded.id_to_label == tagger.id_to_label and reloaded.label_map.is_identity(5)
    assert torch.equal(reloaded.model.classifier.weight, tagger.model.classifier.weight)
    tagger.load(tmp_path / "saved")  # what the Trainer does with its best checkpoint
    assert assert_rows_kept(tagger, tmp_path / "saved") == 5
    assert tagger.label_map.source == str(folder)  # still says where the rows came from
    with pytest.raises(DataError, match=r"the checkpoint's tags differ from the tagger's: missing \['B-drug', 'I-d"):
        HFEntityMatcherTrainable(folder, labels=["test", "problem", "drug"]).load(tmp_path / "saved")


@pytest.mark.parametrize(
    ("model_tags", "given", "scheme", "renamed"),
    [
        (["O", "U-test", "B-test", "I-test", "L-test", "U-problem", "B-problem", "I-problem", "L-problem"],
         None, "bilou", {}),
        (["O", "S-test", "B-test", "I-test", "E-test", "S-problem", "B-problem", "I-problem", "E-problem"],
         None, "bilou", {"S-test": "U-test", "E-test": "L-test", "S-problem": "U-problem", "E-problem": "L-problem"}),
        (["O", "I-test", "B-test", "I-problem", "B-problem"], None, "iob2", {}),
        (["O", "I-test", "B-test", "I-problem", "B-problem"], "iob2", "iob2", {}),
    ],
    ids=["bilou", "bioes-read-as-bilou", "iob2", "iob2-given"],
)
def test_scheme_is_inferred_from_the_tags(tiny_bert_dir, tmp_path, model_tags, given, scheme, renamed):
    folder = tagger_folder(tiny_bert_dir, tmp_path / "model", model_tags)
    tagger = HFEntityMatcherTrainable(folder, labels=["test", "problem"], tagging_scheme=given)
    assert tagger.tagging_scheme == scheme
    assert sorted(tagger.tag_list) == sorted(make_tag_labels(["test", "problem"], scheme))
    assert assert_rows_kept(tagger, folder, renamed) == len(model_tags)


@pytest.mark.parametrize(
    ("model_tags", "given", "inferred"),
    [(["O", "B-test", "I-test", "L-test", "U-test"], "iob2", "bilou"), (["O", "B-test", "I-test"], "bilou", "iob2")],
)
def test_a_scheme_that_contradicts_the_tags_is_a_config_error(tiny_bert_dir, tmp_path, model_tags, given, inferred):
    folder = tagger_folder(tiny_bert_dir, tmp_path / "model", model_tags)
    with pytest.raises(ConfigError, match=f"{given}, but the model in .* tags with {inferred}") as error:
        HFEntityMatcherTrainable(folder, labels=["test"], tagging_scheme=given)
    assert error.value.key == "component.tagging_scheme"


def test_a_fresh_head_defaults_to_iob2(tiny_bert_dir):
    tagger = HFEntityMatcherTrainable(tiny_bert_dir, labels=["test", "problem"], tagging_scheme=None)
    assert tagger.tagging_scheme == "iob2" and tagger.tag_list == make_tag_labels(["test", "problem"])
    assert tagger.label_map.describe() == "new head of 5 tags"


def test_tags_of_no_known_scheme_are_an_error_naming_the_folder(tiny_bert_dir, tmp_path):
    from medkit_exp.inference import find_model_folder, load_tagger

    folder = tagger_folder(tiny_bert_dir, tmp_path / "plain", ["O", "DISEASE", "DRUG"])
    with pytest.raises(DataError, match=rf"{folder}: the model's tags \['DISEASE', 'DRUG'\] are of no known"):
        predict(folder, [TextDocument("fever")])
    with pytest.raises(DataError, match=f"{folder}: the model's tags"):
        HFEntityMatcherTrainable(folder, labels=["DISEASE"])
    with pytest.raises(ConfigError, match=f"config key 'model': cannot load the tagger in {folder}: the model's tags"):
        load_tagger(find_model_folder(str(folder), "model"), "model")


def test_an_incomplete_head_cannot_predict(tiny_bert_dir, tmp_path):
    folder = tagger_folder(tiny_bert_dir, tmp_path / "model", ["O", "B-test"])  # no I-test row
    with pytest.raises(DataError, match=r"no trained row for the tags \['I-test'\]"):
        HFEntityMatcherTrainable.from_pretrained(folder)


def test_labels_of_a_sequence_classifier_are_not_tags():
    from transformers import BertConfig

    from medkit_exp.ner.label_map import head_tags

    config = BertConfig(id2label={0: "NEG", 1: "POS"}, architectures=["BertForSequenceClassification"])
    assert head_tags(config) is None
    assert head_tags(BertConfig(num_labels=3)) is None  # LABEL_0, LABEL_1, LABEL_2
    assert head_tags(BertConfig(id2label={0: "O", 1: "B-X"}, architectures=["BertForTokenClassification"])) == [
        "O", "B-X"]


# --------------------------------------------------------------------------------- properties
LABEL_NAMES = st.lists(st.sampled_from(["problem", "test", "treatment", "drug", "anat", "DISO"]), unique=True)


@st.composite
def label_maps(draw) -> tuple[list[str], list[str], str]:
    """(pretrained tags in a random row order, requested tags, scheme)."""
    scheme = draw(st.sampled_from(["iob2", "bilou"]))
    pretrained_labels = draw(LABEL_NAMES.filter(bool))
    requested_labels = draw(LABEL_NAMES.filter(bool))
    pretrained = draw(st.permutations(make_tag_labels(pretrained_labels, scheme)))
    return list(pretrained), make_tag_labels(requested_labels, scheme), scheme


@given(label_maps())
def test_plan_covers_exactly_the_requested_tags(maps):
    pretrained, requested, _ = maps
    plan = plan_label_map(pretrained, requested)
    assert plan.tags[0] == "O" and sorted(plan.tags) == sorted(requested)
    assert all(row is None or pretrained[row] == tag for tag, row in zip(plan.tags, plan.source_rows))
    assert set(plan.new_tags) == set(requested) - set(pretrained)
    assert plan.dropped == [tag for tag in pretrained if tag not in requested]


@settings(max_examples=30, deadline=None)
@given(label_maps(), st.integers(0, 2**16))
def test_applied_map_keeps_every_shared_row_exactly(maps, seed):
    from transformers import BertConfig, BertForTokenClassification

    pretrained, requested, _ = maps
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=16, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                        intermediate_size=8, id2label=dict(enumerate(pretrained)))
    model = BertForTokenClassification(config)
    with torch.no_grad():
        model.classifier.bias.normal_()
    old_weight, old_bias = model.classifier.weight.clone(), model.classifier.bias.clone()
    plan = plan_label_map(pretrained, requested)
    apply_label_map(model, plan)
    assert model.classifier.out_features == len(requested) and model.config.id2label == plan.id2label
    for row, source in enumerate(plan.source_rows):
        if source is not None:
            assert torch.equal(model.classifier.weight[row], old_weight[source])
            assert torch.equal(model.classifier.bias[row], old_bias[source])
        else:
            assert model.classifier.bias[row].item() == 0.0
    logits = model(input_ids=torch.tensor([[1, 2, 3]])).logits
    assert logits.shape == (1, 3, len(requested))


# ------------------------------------------------------------------------ a tagger trained by medkit
MEDKIT_SENTENCES = [
    ("patient with fever treated with insulin , blood pressure test normal",
     [("problem", "fever"), ("treatment", "insulin"), ("test", "blood pressure test")]),
    ("chest pain and cough , scan shows normal , metformin daily",
     [("problem", "chest pain"), ("problem", "cough"), ("test", "scan"), ("treatment", "metformin")]),
    ("history of diabetes and hypertension treated with metformin",
     [("problem", "diabetes"), ("problem", "hypertension"), ("treatment", "metformin")]),
    ("x-ray shows acute pain , insulin 10 mg",
     [("test", "x-ray"), ("problem", "acute pain"), ("treatment", "insulin")]),
]
HELD_OUT = ["fever and cough , insulin daily , scan normal", "blood pressure test shows hypertension"]


@pytest.fixture(scope="module")
def medkit_tagger(tiny_bert_dir, tmp_path_factory) -> Path:
    """A checkpoint of medkit's own Trainer: labels in non-sorted order, 15 quick epochs."""
    pytest.importorskip("medkit", reason="medkit-lib is not installed (pip install 'medkit_exp[medkit]')")
    from medkit.core.text import Entity as MedkitEntity
    from medkit.core.text import Span
    from medkit.core.text import TextDocument as MedkitDocument
    from medkit.text.ner.hf_entity_matcher import HFEntityMatcher
    from medkit.training import Trainer, TrainerConfig

    documents = []
    for text, entities in MEDKIT_SENTENCES:
        document = MedkitDocument(text=text)
        for label, mention in entities:
            start = text.index(mention)
            document.anns.add(MedkitEntity(label=label, spans=[Span(start, start + len(mention))], text=mention))
        documents.append(document)
    trainable = HFEntityMatcher.make_trainable(str(tiny_bert_dir), labels=["treatment", "test", "problem"],
                                               tagging_scheme="iob2")
    output = tmp_path_factory.mktemp("medkit_run")
    config = TrainerConfig(output_dir=str(output), learning_rate=5e-3, nb_training_epochs=15, batch_size=4, seed=0,
                           checkpoint_period=0)
    Trainer(trainable, config, documents * 4, documents).train()
    (checkpoint,) = output.glob("checkpoint_*")
    return checkpoint


def medkit_entities(folder: Path, texts: list[str]) -> list[list[tuple[str, int, int]]]:
    from medkit.core.text import TextDocument as MedkitDocument
    from medkit.text.ner.hf_entity_matcher import HFEntityMatcher

    matcher = HFEntityMatcher(model=str(folder))
    found = []
    for text in texts:
        entities = matcher.run([MedkitDocument(text=text).raw_segment])
        found.append(sorted((e.label, e.spans[0].start, e.spans[0].end) for e in entities))
    return found


def our_entities(documents: list[TextDocument]) -> list[list[tuple[str, int, int]]]:
    return [sorted((e.label, e.start, e.end) for e in doc.entities) for doc in documents]


def test_a_medkit_trained_tagger_predicts_as_medkit_does(medkit_tagger):
    id2label = json.loads((medkit_tagger / "config.json").read_text())["id2label"]
    assert list(id2label.values()) != sorted(id2label.values())  # medkit's order, not sorted
    texts = [text for text, _ in MEDKIT_SENTENCES] + HELD_OUT
    expected = medkit_entities(medkit_tagger, texts)
    assert sum(map(len, expected)) >= 15  # the model learnt: a comparison of empty lists proves nothing
    assert our_entities(predict(medkit_tagger, [TextDocument(text) for text in texts])) == expected
    # Fine-tuning from it keeps its tags: before any step, the component predicts the same entities.
    tagger = HFEntityMatcherTrainable(medkit_tagger, labels=["problem", "test", "treatment"])
    assert our_entities(predict(tagger, [TextDocument(text) for text in texts])) == expected
    assert assert_rows_kept(tagger, medkit_tagger) == 7


def test_training_from_a_medkit_tagger_keeps_its_map(medkit_tagger, tmp_path):
    """``python -m medkit_exp component.model_name_or_path=<medkit folder>``: the demo's labels are
    the model's (in another order), so every row is kept and the model's map is the run's."""
    from tests.test_cli import run_cli

    result = run_cli(
        tmp_path, "+experiment=ner", "debug=fast", "tracking=none", "hydra.run.dir=run",
        f"component.model_name_or_path={medkit_tagger}", "component.tagging_scheme=null",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = next((tmp_path / "run").glob("*.log")).read_text()
    expected = f"Label map (pretrained head of {medkit_tagger}: 7 tags kept with their rows, new: none, dropped: none)"
    assert expected in log
    checkpoint = sorted(path.parent for path in (tmp_path / "run" / "checkpoints").glob("*/config.json"))[-1]
    saved = json.loads((checkpoint / "config.json").read_text())["id2label"]
    assert list(saved.values()) == list(json.loads((medkit_tagger / "config.json").read_text())["id2label"].values())
    assert json.loads((checkpoint / "medkit_exp_tagger.json").read_text())["tagging_scheme"] == "iob2"


def test_evaluate_scores_a_hugging_face_folder(problem_model, tmp_path):
    from medkit_exp.evaluate import evaluate
    from tests.test_evaluate_predict import composed

    cfg = composed("evaluate", "+experiment=ner", f"checkpoint={problem_model}", f"paths.output_dir={tmp_path}")
    evaluate(cfg)
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["checkpoint"] == str(problem_model.resolve()) and report["documents"] > 0
    # Every word is predicted as a one-word problem: no test or treatment entity, some problems right.
    spans, words = report["spans"], report["words"]
    assert spans["labels/test/precision"] == spans["labels/treatment/precision"] == 0.0
    assert 0.0 < spans["labels/problem/recall"] < 1.0 and 0.0 < words["labels/problem/recall"] < 1.0
