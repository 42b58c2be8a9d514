"""``python -m medkit_exp.evaluate`` and ``python -m medkit_exp.predict`` on the checkpoint that
``+experiment=ner debug=fast`` trains (one training shared by the module), and their bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from medkit_exp.cli import config_dir
from medkit_exp.errors import CheckpointError, ConfigError, DataError
from medkit_exp.ner.formats import read_brat, read_documents, read_jsonl, write_jsonl
from medkit_exp.training.history import HISTORY_FILE
from tests.test_cli import EXPERIMENTS, ROOT, run_cli

DEMO_DEV = ROOT / "medkit_exp" / "ner" / "demo" / "dev"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """The run folder of one debug=fast training (tiny random encoder, 4 steps); tests only read it."""
    folder = tmp_path_factory.mktemp("trained")
    result = run_cli(folder, "+experiment=ner", "debug=fast", "tracking=none", "hydra.run.dir=run")
    assert result.returncode == 0, result.stderr[-3000:]
    return folder / "run"


def checkpoint_of(run: Path, which: str = "best") -> Path:
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    return run / "checkpoints" / state[which]


def composed(config_name: str, *overrides: str):
    import medkit_exp.evaluate  # noqa: F401 - registers the schemas of both applications
    import medkit_exp.predict  # noqa: F401

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name, overrides=list(overrides))


# ---------------------------------------------------------------------------------------- evaluate
def test_evaluate_a_run_folder_recomputes_the_training_evaluation(trained_run, tmp_path):
    result = run_cli(
        tmp_path, "+experiment=ner", "debug=fast", f"checkpoint={trained_run}", "hydra.run.dir=eval",
        module="medkit_exp.evaluate",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    folder = tmp_path / "eval"
    report = json.loads((folder / "metrics.json").read_text())
    assert yaml.safe_load((folder / "metrics.yaml").read_text()) == report
    best = checkpoint_of(trained_run)
    assert (report["checkpoint"], report["data"], report["split"], report["documents"]) == (
        str(best.resolve()), "demo", "dev", 12
    )
    # the run trained and evaluated under precision=auto: the evaluation recomputes it in the same one
    import torch

    from medkit_exp.training.precision import resolve_precision

    assert report["precision"] == resolve_precision("auto", torch.device("cpu"))
    # Word level: what the training evaluation logged at the best checkpoint's step, recomputed.
    history = [json.loads(line) for line in (trained_run / HISTORY_FILE).read_text().splitlines()]
    step = int(best.name.split("-")[1])
    logged = next(record["eval"] for record in history if record["type"] == "eval" and record["step"] == step)
    scores = {key: value for key, value in report["words"].items() if not key.endswith("/support")}
    assert scores == pytest.approx(logged, rel=1e-5)
    # Spans: the predictions written, scored against the gold split.
    from medkit_exp.ner.data import NERDataConfig, load_corpus
    from medkit_exp.ner.metrics import evaluate_documents

    gold = load_corpus(NERDataConfig(max_documents=12), only=["dev"])["dev"]
    predicted = read_jsonl(folder / "predictions_dev.jsonl")
    assert [doc.text for doc in predicted] == [doc.text for doc in gold]
    assert report["spans"] == evaluate_documents(gold, predicted)
    assert report["entities"] == sum(len(doc.entities) for doc in gold)
    # Against the documents as annotated (the demo corpus has no nesting: the same entities) and the ceiling
    from medkit_exp.ner.annotated_scores import annotated_scores

    assert report["annotated"] == annotated_scores(gold, predicted) and report["annotated"]["f1"] == report["spans"]["f1"]
    assert report["annotated_entities"] == report["entities"] == report["ceiling"]["annotated"]
    assert 0 < report["ceiling"]["ceiling"] <= 1 and set(report["ceiling"]) == {
        "ceiling", "expressible", "annotated", "labels/problem/ceiling", "labels/test/ceiling", "labels/treatment/ceiling"
    }
    flattened_part, annotated_part = result.stdout.split("Against the documents as annotated")
    assert "Against the gold after the data policies" in flattened_part
    annotated_rows = {line.split()[0]: line.split() for line in annotated_part.splitlines()[3:] if line.strip()}
    assert annotated_rows["micro"][1:] == [f"{report['annotated'][m]:.4f}" for m in ("precision", "recall", "f1")] + [
        str(report["annotated_entities"]), f"{report['ceiling']['ceiling']:.4f}"
    ]
    assert annotated_rows["test"][-1] == f"{report['ceiling']['labels/test/ceiling']:.4f}"
    expressible = int(report["ceiling"]["expressible"])
    assert f"express ({expressible} of {report['annotated_entities']})" in annotated_part
    # The table: one row per summary and per label, both metric sets.
    rows = {line.split()[0]: line for line in flattened_part.splitlines() if line.strip()}
    for label in ("micro", "macro", "problem", "treatment", "test"):
        assert label in rows
    micro = rows["micro"].split()
    assert micro[3] == f"{report['words']['f1']:.4f}" and micro[-2] == f"{report['spans']['f1']:.4f}"
    # every label row is filled on both sides, supports included; the micro support is every entity
    supports = {label: int(report["words"][f"labels/{label}/support"]) for label in ("problem", "treatment", "test")}
    assert sum(supports.values()) == report["entities"] == int(micro[4]) == int(micro[-1])
    for label, support in supports.items():
        cells = rows[label].replace("|", " ").split()[1:]
        assert len(cells) == 8 and int(cells[3]) == support == int(cells[7]), rows[label]
    assert f"Evaluating {best}" in (folder / "evaluate.log").read_text()


def test_evaluate_in_process_last_checkpoint_on_train_without_predictions(trained_run, tmp_path):
    from medkit_exp.evaluate import evaluate

    cfg = composed(
        "evaluate", "+experiment=ner", "debug=fast", f"checkpoint={trained_run / 'checkpoints'}", "which=last",
        "split=train", "batch_size=3", "save_predictions=false", f"paths.output_dir={tmp_path}",
    )
    objective = evaluate(cfg)
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["checkpoint"] == str(checkpoint_of(trained_run, "last").resolve())
    assert report["split"] == "train" and report["documents"] == 12
    assert objective == report["words"]["f1"]
    assert not list(tmp_path.glob("predictions_*"))


def test_evaluate_with_seqeval_metrics_computes_them_with_seqeval(trained_run, tmp_path, monkeypatch):
    pytest.importorskip("seqeval")
    import medkit_exp.ner.seqeval_metrics as seqeval_metrics
    from medkit_exp.evaluate import evaluate

    made, original = [], seqeval_metrics.SeqevalMetricsComputer.compute

    def recorded(self, all_data):
        made.append(type(self).__name__)
        return original(self, all_data)

    monkeypatch.setattr(seqeval_metrics.SeqevalMetricsComputer, "compute", recorded)
    scores = {}
    for name in ("entity", "seqeval"):
        cfg = composed("evaluate", "+experiment=ner", "debug=fast", f"checkpoint={trained_run}", f"metrics={name}",
                       "save_predictions=false", f"paths.output_dir={tmp_path / name}")
        evaluate(cfg)
        scores[name] = json.loads((tmp_path / name / "metrics.json").read_text())["words"]
    assert made == ["SeqevalMetricsComputer"]  # seqeval computed the second report, not our computer
    # strict seqeval equals our entity metrics; the window-level annotated/* metrics, when the
    # seqeval computer gives them, too (they do not come from seqeval)
    flattened = {name: {k: v for k, v in words.items() if not k.startswith("annotated/")} for name, words in scores.items()}
    assert flattened["seqeval"] == pytest.approx(flattened["entity"])
    if any(key.startswith("annotated/") for key in scores["seqeval"]):
        assert scores["seqeval"] == pytest.approx(scores["entity"])


# ----------------------------------------------------------------------------------------- predict
def test_predict_brat_folder_to_brat_matches_the_library(trained_run, tmp_path):
    from medkit_exp.ner.prediction import predict

    best = checkpoint_of(trained_run)
    result = run_cli(
        tmp_path, f"model={best}", f"input={DEMO_DEV}", "output=out", "output_format=brat", "hydra.run.dir=pred",
        module="medkit_exp.predict",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    written, inputs = read_brat(tmp_path / "out"), read_brat(DEMO_DEV)
    assert [(doc.doc_id, doc.text) for doc in written] == [(doc.doc_id, doc.text) for doc in inputs]
    expected = predict(best, [doc.with_entities([]) for doc in inputs], batch_size=32)
    spans = [[(e.label, e.spans) for e in doc.entities] for doc in written]
    assert spans == [[(e.label, e.spans) for e in doc.entities] for doc in expected]
    assert sum(map(len, spans)) > 0
    assert not any(doc.relations for doc in written)  # the gold annotations are not carried over
    assert (tmp_path / "pred" / "predict.log").exists()


def _write_conll(path: Path) -> None:
    lines = ["Fever\tB-problem", "and\tO", "cough\tB-problem", ".\tO", "", "Aspirin\tB-treatment", "given\tO"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("kind", ["conll", "jsonl", "txt"])
def test_predict_reads_conll_jsonl_and_plain_text(trained_run, tmp_path, kind):
    from medkit_exp.predict import predict

    path = tmp_path / {"conll": "in.conll", "jsonl": "in.jsonl", "txt": "note.txt"}[kind]
    if kind == "conll":
        _write_conll(path)
    elif kind == "jsonl":
        write_jsonl(read_brat(DEMO_DEV)[:3], path)
    else:
        path.write_text("Patient with fever and chest pain, treated with aspirin.\n", encoding="utf-8")
    cfg = composed("predict", f"model={trained_run}", f"input={path}", f"paths.output_dir={tmp_path}")
    output = Path(predict(cfg))
    assert output == tmp_path / "predictions.jsonl"
    written = read_jsonl(output)
    assert [doc.text for doc in written] == [doc.text for doc in read_documents(path)]
    entities = [(doc, e) for doc in written for e in doc.entities]
    assert all(0.0 < e.score <= 1.0 and e.text == doc.text[e.start : e.end] for doc, e in entities)


# --------------------------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def broken_model(trained_run, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("broken") / "checkpoint"
    shutil.copytree(checkpoint_of(trained_run), folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    return folder


@pytest.mark.parametrize(
    ("module", "args", "message"),
    [
        ("evaluate", [], "config key 'checkpoint': give the tagger: checkpoint=PATH"),
        ("evaluate", ["checkpoint={tmp}/no/such/run"], "config key 'checkpoint': no such folder"),
        ("predict", ["model={run}", "input={tmp}/empty.jsonl"], "empty.jsonl: empty file"),
        ("predict", ["model={run}", "input={tmp}/notes.csv"], "config key 'input_format': cannot tell the format"),
    ],
)
def test_bad_input_is_one_clear_line(trained_run, tmp_path, module, args, message):
    (tmp_path / "empty.jsonl").write_text("\n")
    _write_conll(tmp_path / "notes.csv")
    args = [a.format(run=trained_run, tmp=tmp_path) for a in args]
    result = run_cli(tmp_path, *args, "hydra.run.dir=out", module=f"medkit_exp.{module}")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        (["split=valid"], ConfigError, "config key 'split': must be one of dev, test, train"),
        (["split=test"], ConfigError, "config key 'data.test': the demo data config has no 'test' split"),
        (["which=worst"], ConfigError, "config key 'which'"),
        (["batch_size=0"], ConfigError, "config key 'batch_size': must be an integer >= 1"),
        (["checkpoint={tmp}/hf"], ConfigError, "is a model folder without tags"),
        (["checkpoint={tmp}/state_only"], CheckpointError, "unreadable checkpoint state file"),
        (["data.path={tmp}/no_corpus"], DataError, "corpus folder of demo not found"),
    ],
)
def test_evaluate_rejects_bad_config_before_any_work(trained_run, tmp_path, overrides, error, message):
    from medkit_exp.evaluate import evaluate

    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    (tmp_path / "state_only" / "checkpoints").mkdir(parents=True)
    (tmp_path / "state_only" / "checkpoints" / "state.json").write_text("{not json")
    overrides = [f"checkpoint={trained_run}", *(o.format(tmp=tmp_path) for o in overrides)]  # the last one wins
    cfg = composed("evaluate", "+experiment=ner", *overrides, f"paths.output_dir={tmp_path}/out")
    with pytest.raises(error, match=message.replace("(", r"\(")):
        evaluate(cfg)
    assert not (tmp_path / "out" / "metrics.json").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["input_format=xml"], "config key 'input_format': must be one of auto, brat, conll, jsonl"),
        (["output_format=csv"], "config key 'output_format'"),
        (["input="], "config key 'input': give the documents"),
        (["input={tmp}/missing.jsonl"], "config key 'input': no such file or folder"),
        (["model="], "config key 'model': give the tagger"),
        (["output_format=brat", f"output={DEMO_DEV}"], "is the input folder"),
        (["output={tmp}"], "config key 'output': JSON-lines output is a file"),
    ],
)
def test_predict_rejects_bad_config_before_any_work(trained_run, broken_model, tmp_path, overrides, message):
    from medkit_exp.predict import predict

    overrides = [o.format(tmp=tmp_path, broken=broken_model) for o in overrides]
    cfg = composed("predict", f"model={trained_run}", f"input={DEMO_DEV}", *overrides, f"paths.output_dir={tmp_path}")
    with pytest.raises(ConfigError, match=message):
        predict(cfg)


# ------------------------------------------------------------------------- model folders, configs
def test_find_model_folder_accepts_checkpoints_run_folders_and_falls_back_to_last(trained_run, tmp_path):
    from medkit_exp.inference import find_model_folder
    from medkit_exp.ner.tagger_files import TAGGER_CONFIG
    best, last = checkpoint_of(trained_run), checkpoint_of(trained_run, "last")
    assert find_model_folder(str(trained_run), "model") == best
    assert find_model_folder(str(trained_run), "model", which="last") == last
    assert find_model_folder(str(trained_run / "checkpoints"), "model") == best
    assert find_model_folder(str(last), "model", which="best") == last  # a checkpoint is itself
    unranked = tmp_path / "checkpoints"
    (unranked / "checkpoint-0000004").mkdir(parents=True)
    (unranked / "checkpoint-0000004" / TAGGER_CONFIG).write_text("{}")
    (unranked / "checkpoint-0000004" / "trainer_state.pt").write_bytes(b"")  # complete, as an older version saved it
    state = {"format_version": 1, "last": "checkpoint-0000004", "best": None, "minimize": False,
             "checkpoints": [{"name": "checkpoint-0000004", "step": 4, "metric": None}]}
    (unranked / "state.json").write_text(json.dumps(state))
    assert find_model_folder(str(tmp_path), "checkpoint") == unranked / "checkpoint-0000004"
    (unranked / "checkpoint-0000004" / TAGGER_CONFIG).unlink()
    with pytest.raises(ConfigError, match="the best checkpoint .* holds no tagger"):
        find_model_folder(str(tmp_path), "checkpoint")
    with pytest.raises(ConfigError, match="config key 'model': expected a checkpoint or training run folder, got a"):
        find_model_folder(str(unranked / "state.json"), "model")


@pytest.mark.parametrize("config_name", ["evaluate", "predict"])
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_evaluate_and_predict_configs_compose_like_training(config_name, experiment):
    common = [f"+experiment={experiment}", "debug=fast", "paths.output_dir=/tmp/x", "paths.data_dir=/d"]
    cfg = composed(config_name, *common)
    assert cfg.experiment_name == experiment and cfg.task_name == config_name
    assert cfg.component.model_name_or_path == "tiny-random" and cfg.device == -1
    train = composed("config", *common)
    assert cfg.data == train.data and cfg.trainer == train.trainer  # the same corpus, splits and batch sizes


def test_primary_configs_share_the_defaults_of_training():
    def groups(name: str) -> list:
        return [d for d in OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / f"{name}.yaml").defaults)[1:]
                if d != {"tracking": "none"} and d != {"tracking": "mlflow"}]

    assert groups("evaluate") == groups("config") == groups("predict")


def test_help_is_fast_and_imports_no_heavy_library(tmp_path):
    code = (
        "import sys; sys.argv = ['x', '--help']\n"
        "import medkit_exp.evaluate, medkit_exp.predict\n"
        "print([m for m in ('torch', 'transformers', 'mlflow', 'optuna') if m in sys.modules])"
    )
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=environment)
    assert result.stdout.strip() == "[]", result.stderr
    result = run_cli(tmp_path, "--help", module="medkit_exp.predict")
    assert result.returncode == 0 and "input_format: auto" in result.stdout


# ------------------------------------------------------------------------- damaged checkpoints
def _set_weights(folder: Path, value: float) -> str:
    """Write ``value`` into the first weight of the classifier head; returns the tensor's name."""
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    name = next(key for key in weights if key.startswith("classifier.") and key.endswith("weight"))
    weights[name].view(-1)[0] = value
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return name


def _damage(folder: Path, how: str) -> str:
    """Damage a copy of a checkpoint as ``how`` says; returns the name of the file to be named."""
    files = {
        "truncated weights": ("model.safetensors", lambda p: p.write_bytes(p.read_bytes()[:100])),
        "weights cut short": ("model.safetensors", lambda p: p.write_bytes(p.read_bytes()[:-64])),
        "garbage weights": ("model.safetensors", lambda p: p.write_bytes(b"garbage" * 1000)),
        "broken tokenizer.json": ("tokenizer.json", lambda p: p.write_text("{broken")),
        "tokenizer.json of another shape": ("tokenizer.json", lambda p: p.write_text('{"version": "1.0"}')),
        "deleted config.json": ("config.json", lambda p: p.unlink()),
        "config.json without model_type": ("config.json", lambda p: p.write_text("{}")),
        "broken tagger settings": ("medkit_exp_tagger.json", lambda p: p.write_text("[1, 2")),
        "tagger settings without labels": ("medkit_exp_tagger.json", lambda p: p.write_text("{}")),
    }
    name, damage = files[how]
    damage(folder / name)
    return name


DAMAGES = ["truncated weights", "weights cut short", "garbage weights", "broken tokenizer.json",
           "tokenizer.json of another shape", "deleted config.json", "config.json without model_type",
           "broken tagger settings", "tagger settings without labels"]


@pytest.mark.parametrize("digests", [True, False], ids=["checkpoint", "without-digests"])
@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_checkpoint_file_is_one_checkpoint_error_naming_it(trained_run, tmp_path, how, digests):
    """With digests (a checkpoint of ours), they name the file before anything loads; without
    (an older checkpoint, a model folder of another program), the loader's own checks do."""
    from medkit_exp.inference import find_model_folder, load_tagger
    from medkit_exp.ner.tagger import HFEntityMatcherTrainable

    folder = tmp_path / "checkpoint"
    shutil.copytree(checkpoint_of(trained_run), folder)
    if not digests:
        (folder / "checksums.json").unlink()
    name = _damage(folder, how)
    with pytest.raises(CheckpointError) as error:
        load_tagger(find_model_folder(str(folder), "model"), "model")
    assert error.value.path == str(folder / name), str(error.value)
    if digests:
        assert "damaged" in str(error.value) or "missing: the checkpoint's checksums.json lists it" in str(error.value)
    else:
        with pytest.raises(CheckpointError, match=name):  # the library's own entry points too
            HFEntityMatcherTrainable.from_pretrained(folder)


def test_a_tagger_resumed_from_a_damaged_folder_names_the_file(trained_run, tmp_path):
    from medkit_exp.ner.tagger import HFEntityMatcherTrainable

    tagger = HFEntityMatcherTrainable.from_pretrained(checkpoint_of(trained_run))
    folder = tmp_path / "checkpoint"
    shutil.copytree(checkpoint_of(trained_run), folder)
    (folder / "tokenizer.json").write_text('{"version": "1.0"}')  # valid JSON, not a tokenizer
    with pytest.raises(CheckpointError, match="cannot load the saved model .*KeyError") as error:
        tagger.load(folder)
    assert error.value.path == str(folder / "tokenizer.json")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_weights_that_are_not_finite_are_refused_naming_tensor_and_file(trained_run, tmp_path, value):
    from medkit_exp.inference import load_tagger
    from medkit_exp.training.digests import write_manifest

    folder = tmp_path / "checkpoint"
    shutil.copytree(checkpoint_of(trained_run), folder)
    tensor = _set_weights(folder, value)
    write_manifest(folder)  # as if saved so: the digests match
    with pytest.raises(CheckpointError) as error:
        load_tagger(folder, "model")
    assert f"tensor '{tensor}' holds 1 NaN or infinite values" in str(error.value)
    assert error.value.path == str(folder / "model.safetensors")


@pytest.mark.parametrize(
    ("module", "how", "argument"),
    [("evaluate", "truncated weights", "checkpoint"), ("predict", "not finite", "model")],
)
def test_damaged_checkpoints_end_evaluate_and_predict_with_one_line_and_exit_code_2(
    trained_run, tmp_path, module, how, argument
):
    folder = tmp_path / "checkpoint"
    shutil.copytree(checkpoint_of(trained_run), folder)
    if how == "not finite":
        (folder / "checksums.json").unlink()  # a model folder of another program: no digests
        _set_weights(folder, float("nan"))
        name = "model.safetensors"
    else:
        name = _damage(folder, how)
    result = run_cli(tmp_path, "+experiment=ner", "debug=fast", f"{argument}={folder}", f"input={DEMO_DEV}",
                     "hydra.run.dir=out", module=f"medkit_exp.{module}") if module == "predict" else run_cli(
        tmp_path, "+experiment=ner", "debug=fast", f"{argument}={folder}", "hydra.run.dir=out",
        module=f"medkit_exp.{module}")
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and f"{folder / name}: " in errors[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr


NESTED_TEXT = "patient with chest pain and fever. treated with insulin mg daily."


def _nested_corpus(root: Path) -> Path:
    """A BRAT dev split with same-label and cross-label nesting and a discontinuous entity."""
    def at(piece: str) -> str:
        start = NESTED_TEXT.index(piece)
        return f"{start} {start + len(piece)}"

    ann = "\n".join([
        f"T1\tproblem {at('chest pain')}\tchest pain",
        f"T2\tproblem {at('pain')}\tpain",  # same label, nested
        f"T3\ttest {at('chest')}\tchest",  # another label, nested
        f"T4\tproblem {at('fever')}\tfever",
        f"T5\ttreatment {at('insulin')};{at('daily')}\tinsulin daily",  # discontinuous
    ]) + "\n"
    (root / "dev").mkdir(parents=True)
    (root / "dev" / "n1.txt").write_text(NESTED_TEXT, encoding="utf-8")
    (root / "dev" / "n1.ann").write_text(ann, encoding="utf-8")
    return root


def test_evaluate_scores_against_the_documents_as_annotated_with_the_ceiling(trained_run, tmp_path, capsys):
    from medkit_exp.evaluate import evaluate, flat_metrics
    from medkit_exp.ner.annotated_scores import annotated_scores
    from medkit_exp.ner.metrics import evaluate_documents

    corpus = _nested_corpus(tmp_path / "corpus")
    cfg = composed(
        "evaluate", "+experiment=ner", "debug=fast", f"checkpoint={trained_run}", f"data.path={corpus}",
        "data.max_documents=null", f"paths.output_dir={tmp_path / 'out'}",
    )
    evaluate(cfg)
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    # flat keep_longest + fill: chest pain, fever and the filled "insulin mg daily" are learned;
    # of the 5 entities as annotated, only chest pain and fever can be expressed exactly
    assert (report["entities"], report["annotated_entities"]) == (3, 5)
    assert report["ceiling"] == {
        "ceiling": 0.4, "expressible": 2.0, "annotated": 5.0,
        "labels/problem/ceiling": 2 / 3, "labels/test/ceiling": 0.0, "labels/treatment/ceiling": 0.0,
    }
    gold = _load_dev(corpus)
    predicted = read_jsonl(tmp_path / "out" / "predictions_dev.jsonl")
    assert report["annotated"] == annotated_scores(gold, predicted)
    assert report["spans"] == evaluate_documents(gold, predicted)
    assert report["annotated"]["labels/problem/support"] == 3.0 and report["spans"]["labels/problem/support"] == 2.0
    assert "5 as annotated" in out and "express (2 of 5)" in out
    flat = flat_metrics(report)
    assert flat["dev/spans_annotated/ceiling"] == 0.4 and flat["dev/spans_annotated/f1"] == report["annotated"]["f1"]
    assert flat["dev/spans_annotated/labels/problem/ceiling"] == 2 / 3
    assert flat["dev/spans_f1"] == report["spans"]["f1"]


def _load_dev(corpus: Path):
    from medkit_exp.ner.data import NERDataConfig, load_corpus

    return load_corpus(NERDataConfig(path=str(corpus)), only=["dev"])["dev"]
