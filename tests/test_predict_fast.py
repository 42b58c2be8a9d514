"""Fast CPU inference: predict's precision (bf16, int8) and token-bounded batches, the streamed
path (library and application), and the lazy readers it uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from medkit_exp.errors import ConfigError, DataError
from medkit_exp.ner.documents import TextDocument
from medkit_exp.ner.formats import iter_brat, iter_jsonl, read_brat, read_jsonl, write_jsonl
from medkit_exp.ner.prediction import predict, predict_stream, token_batches
from medkit_exp.ner.quantize import int8_model
from tests.ner.test_prediction import IOB2_TAGS, check_offsets, lookup_tagger, spans
from tests.test_cli import ROOT, run_cli

WORDS = "chest pain and fever with insulin then a scan of the chest , metformin given".split()
DEMO_DEV = ROOT / "medkit_exp" / "ner" / "demo" / "dev"


def notes(count: int) -> list[TextDocument]:
    """``count`` notes of varied lengths (so that sorting by length reorders them)."""
    return [
        TextDocument(" ".join(WORDS[(i * 3) % len(WORDS) :] + WORDS[: (i * 7) % len(WORDS)]), doc_id=f"n{i}")
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def tagger(tiny_bert_dir):
    return lookup_tagger(tiny_bert_dir, "iob2", IOB2_TAGS)


# ------------------------------------------------------------------------------- precision
@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_bf16_and_int8_find_the_fp32_entities_at_valid_offsets(tagger, precision):
    documents = notes(12)
    expected = predict(tagger, documents)
    found = predict(tagger, documents, precision=precision)
    for document in found:
        check_offsets(document)
    assert [[(e.label, e.spans) for e in d.entities] for d in found] == [
        [(e.label, e.spans) for e in d.entities] for d in expected
    ]
    assert sum(len(d.entities) for d in found) > 12


def test_int8_leaves_the_taggers_model_untouched_and_is_quantized_once(tiny_bert_dir):
    tagger = lookup_tagger(tiny_bert_dir, "iob2", IOB2_TAGS)
    tagger.model.train()
    before = {name: tensor.clone() for name, tensor in tagger.model.state_dict().items()}
    predict(tagger, notes(3), precision="int8")
    after = tagger.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert tagger.model.training  # its mode given back
    assert type(tagger.model.classifier) is torch.nn.Linear
    quantized = int8_model(tagger)
    assert int8_model(tagger) is quantized  # cached
    assert isinstance(quantized.classifier, torch.ao.nn.quantized.dynamic.Linear)
    with torch.no_grad():  # a training step changes the weights in place: a new copy, not a stale one
        tagger.model.classifier.bias.add_(1.0)
    assert int8_model(tagger) is not quantized


def test_int8_is_refused_on_a_gpu():
    from medkit_exp.ner.prediction import check_precision

    with pytest.raises(ConfigError, match="config key 'precision': int8 .* runs on CPU only"):
        check_precision("int8", torch.device("cuda", 0))
    assert check_precision("bf16", torch.device("cuda", 0)) == "bf16"


def test_bad_precision_and_budget_are_config_errors(tagger):
    with pytest.raises(ConfigError, match="config key 'precision': must be one of fp32, bf16, int8, got 'fp16'"):
        predict(tagger, notes(1), precision="fp16")
    with pytest.raises(ConfigError, match="config key 'max_batch_tokens'"):
        predict(tagger, notes(1), max_batch_tokens=0)


# ------------------------------------------------------------------------- token budget
def test_batches_respect_the_token_budget_and_give_the_same_entities(tagger):
    shapes: list[tuple[int, int]] = []
    hook = tagger.model.register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    try:
        documents = notes(20)
        unbounded = predict(tagger, documents, batch_size=8)
        count_only = list(shapes)
        shapes.clear()
        bounded = predict(tagger, documents, batch_size=8, max_batch_tokens=60)
    finally:
        hook.remove()
    assert all(rows * length <= 60 or rows == 1 for rows, length in shapes)
    assert max(rows * length for rows, length in count_only) > 60  # the budget did cut batches
    assert sum(rows for rows, _ in shapes) == sum(rows for rows, _ in count_only) == 20
    assert [spans(d) for d in bounded] == [spans(d) for d in unbounded]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(1, 64), max_size=40).map(sorted),
    st.integers(1, 10),
    st.one_of(st.none(), st.integers(1, 200)),
    st.sampled_from([1, 8]),
)
def test_token_batches_cover_everything_in_order_within_both_bounds(lengths, batch_size, budget, multiple):
    batches = token_batches(lengths, batch_size, budget, multiple)
    assert [i for batch in batches for i in batch] == list(range(len(lengths)))
    for batch in batches:
        longest = -(-lengths[batch[-1]] // multiple) * multiple
        assert 1 <= len(batch) <= batch_size
        assert budget is None or len(batch) == 1 or len(batch) * longest <= budget
    for batch, following in zip(batches, batches[1:]):  # each cut was needed: one more item would break a bound
        grown = len(batch) + 1
        longest = -(-lengths[following[0]] // multiple) * multiple
        assert grown > batch_size or (budget is not None and grown * longest > budget)


# ---------------------------------------------------------------------------- streaming
def test_stream_yields_the_list_results_in_input_order_reading_lazily(tagger):
    documents = notes(11)
    consumed = []

    def source():
        for document in documents:
            consumed.append(document.doc_id)
            yield document

    stream = predict_stream(tagger, source(), batch_size=4, chunk_size=3)
    assert consumed == []  # nothing read before the first result is asked for
    first = next(stream)
    assert len(consumed) == 3  # one chunk
    streamed = [first, *stream]
    assert [d.doc_id for d in streamed] == [d.doc_id for d in documents]
    assert [spans(d) for d in streamed] == [spans(d) for d in predict(tagger, documents, batch_size=4)]


def test_stream_checks_its_options_before_reading(tagger):
    def source():
        raise AssertionError("read")
        yield

    with pytest.raises(ConfigError, match="config key 'precision'"):
        predict_stream(tagger, source(), precision="int4")


# ------------------------------------------------------------------------- lazy readers
def test_iter_jsonl_reads_what_read_jsonl_reads(tmp_path):
    path = tmp_path / "docs.jsonl"
    write_jsonl(read_brat(DEMO_DEV), path)
    content = path.read_bytes().replace(b"\n", b"\r\n", 3)  # line ends mixed
    path.write_bytes(b"\xef\xbb\xbf" + content + b"\n\n")
    listed = read_jsonl(path)
    assert [(d.doc_id, d.text, spans(d)) for d in iter_jsonl(path)] == [(d.doc_id, d.text, spans(d)) for d in listed]


def test_iter_jsonl_names_the_bad_line_after_yielding_the_good_ones(tmp_path):
    path = tmp_path / "docs.jsonl"
    lines = [json.dumps({"id": f"d{i}", "text": "fever"}) for i in range(4)]
    path.write_text("\n".join(lines[:3] + ['{"id": "x", "text": 3}', lines[3]]) + "\n")
    stream = iter_jsonl(path)
    assert [next(stream).doc_id for _ in range(3)] == ["d0", "d1", "d2"]
    with pytest.raises(DataError, match=r"docs.jsonl:4: bad document line") as error:
        next(stream)
    assert error.value.line == 4
    assert [d.doc_id for d in iter_jsonl(path, errors="skip")] == ["d0", "d1", "d2", "d3"]
    path.write_bytes(b'{"id": "a", "text": "ok"}\n{"id": "b", "text": "\xff"}\n')
    with pytest.raises(DataError, match="not valid utf-8") as error:
        list(iter_jsonl(path))
    assert error.value.line == 2
    path.write_text("\n \n")
    with pytest.raises(DataError, match="empty file"):
        list(iter_jsonl(path))


def test_iter_brat_reads_what_read_brat_reads():
    assert [(d.doc_id, spans(d)) for d in iter_brat(DEMO_DEV)] == [(d.doc_id, spans(d)) for d in read_brat(DEMO_DEV)]


# ---------------------------------------------------------------------------- application
@pytest.fixture(scope="module")
def saved_tagger(tiny_bert_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tagger") / "checkpoint"
    lookup_tagger(tiny_bert_dir, "iob2", IOB2_TAGS).save(folder)
    return folder


def _composed(*overrides: str):
    from tests.test_evaluate_predict import composed

    return composed("predict", *overrides)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_app_streams_jsonl_and_matches_the_library(saved_tagger, tagger, tmp_path, capsys, precision):
    from medkit_exp.predict import predict as predict_app

    documents = notes(260)  # more than one chunk of PREDICT_CHUNK
    write_jsonl(documents, tmp_path / "in.jsonl")
    cfg = _composed(f"model={saved_tagger}", f"input={tmp_path / 'in.jsonl'}", f"output={tmp_path / 'out.jsonl'}",
                    f"precision={precision}", "max_batch_tokens=100", f"paths.output_dir={tmp_path}")
    predict_app(cfg)
    written = read_jsonl(tmp_path / "out.jsonl")
    expected = predict(tagger, documents, precision=precision)
    assert [(d.doc_id, spans(d)) for d in written] == [(d.doc_id, spans(d)) for d in expected]
    entities = sum(len(d.entities) for d in expected)
    assert f"Predicted {entities} entities in 260 documents with {saved_tagger} (precision {precision})" in (
        capsys.readouterr().out
    )
    assert not (tmp_path / "out.jsonl.partial").exists()


@pytest.mark.parametrize("output_format", ["jsonl", "brat"])
def test_app_bad_line_near_the_end_fails_before_anything_is_written(saved_tagger, tmp_path, output_format):
    from medkit_exp.predict import predict as predict_app

    path = tmp_path / "in.jsonl"
    write_jsonl(notes(40), path)
    with path.open("a") as stream:
        stream.write('{"id": "bad", "text": "fever", "entities": [{"label": "problem", "spans": [[0, 99]]}]}\n')
        stream.write(json.dumps({"id": "last", "text": "chest pain"}) + "\n")
    output = tmp_path / ("out.jsonl" if output_format == "jsonl" else "out")
    overrides = [f"model={saved_tagger}", f"input={path}", f"output={output}", f"output_format={output_format}",
                 f"paths.output_dir={tmp_path}"]
    with pytest.raises(DataError, match=r"in.jsonl:41: bad entity"):
        predict_app(_composed(*overrides))
    assert not output.exists() and not list(tmp_path.glob("out*"))
    predict_app(_composed(*overrides, "input_errors=skip"))  # the bad entity left out, every text predicted
    written = read_jsonl(output) if output_format == "jsonl" else read_brat(output)
    assert sorted(d.doc_id for d in written) == sorted([d.doc_id for d in notes(40)] + ["bad", "last"])


def test_app_bad_precision_is_one_line_and_exit_code_2(saved_tagger, tmp_path):
    write_jsonl(notes(2), tmp_path / "in.jsonl")
    result = run_cli(tmp_path, f"model={saved_tagger}", "input=in.jsonl", "precision=fp16", "hydra.run.dir=out",
                     module="medkit_exp.predict")
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "config key 'precision'" in errors[0] and "fp32" in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not (tmp_path / "out" / "predictions.jsonl").exists()
