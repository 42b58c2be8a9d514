"""``python -m medkit_exp.predict model=PATH input=PATH [output=PATH] [output_format=jsonl|brat]``

Runs a saved tagger (a checkpoint folder, the best checkpoint of a training run folder, or any
Hugging Face token-classification folder, its labels read from its ``id2label``) over
BRAT, CoNLL or JSON-lines documents and writes the predicted entities as JSON lines (with their
scores) or BRAT. Configured by ``conf/predict.yaml`` (the same ``conf/`` tree as training). The
input's own entities and relations, if any, are not carried over: the output holds predictions.

Memory stays flat whatever the corpus size: the input is read twice, lazily (JSON lines line by
line, BRAT file by file; a CoNLL file is read whole, its tagging scheme being detected from the
whole file). The first pass checks every document and counts them, so that with
``input_errors=raise`` a bad line fails before the model loads and before anything is written,
and the progress bar knows its total; the second predicts ``PREDICT_CHUNK`` documents at a time
and writes each as it comes (JSON lines into ``<output>.partial``, renamed when complete).
``precision=bf16|int8`` and ``max_batch_tokens`` speed up CPU inference (see
:func:`medkit_exp.ner.prediction.predict`). With ``input_errors=skip`` each skipped item is
logged by both passes.
"""

from __future__ import annotations

import os

import dataclasses
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from medkit_exp.conf_location import config_dir
from medkit_exp.errors import ConfigError, DataError
from medkit_exp.schema import PredictConfig

logger = logging.getLogger("medkit_exp.predict")

INPUT_FORMATS = ("auto", "brat", "conll", "jsonl")
OUTPUT_FORMATS = ("jsonl", "brat")
INPUT_ERRORS = ("raise", "skip")

ConfigStore.instance().store(name="medkit_exp_predict_schema", node=PredictConfig)


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="predict")
def main(cfg: DictConfig) -> str:
    """Predict over ``input`` with ``model``; return the output path."""
    from medkit_exp.app_setup import quiet_third_party
    from medkit_exp.cli import report_errors  # here: --help need not register the training schema

    quiet_third_party()  # no third-party progress bars or load report

    return report_errors(lambda: predict(cfg))


def predict(cfg: DictConfig) -> str:
    from medkit_exp.config_check import check_config

    check_config(cfg, PredictConfig)  # unknown keys (with +) and misused options, before any work
    from medkit_exp.inference import check_batch_size, find_model_folder, load_tagger, stream_predictions

    choices = {"input_format": INPUT_FORMATS, "output_format": OUTPUT_FORMATS, "input_errors": INPUT_ERRORS}
    for key, allowed in choices.items():
        if cfg[key] not in allowed:
            raise ConfigError(key, f"must be one of {', '.join(allowed)}, got {cfg[key]!r}")
    batch_size = check_batch_size(cfg.batch_size)
    precision, max_batch_tokens = check_speed_options(cfg)
    folder = find_model_folder(cfg.model, "model", cfg.which)
    source, input_format = input_source(cfg.input, cfg.input_format)
    total = count_documents(source, input_format, cfg.input_errors)  # every input error, before any work
    output = output_path(cfg)
    tagger = load_tagger(folder, "model", cfg.device, verify=False)  # find_model_folder verified it
    counts = {"documents": 0, "entities": 0}
    predicted = stream_predictions(
        tagger, read_input_stream(source, input_format, cfg.input_errors), total, batch_size, precision,
        max_batch_tokens, progress=cfg.progress,
    )
    write_output(_counted(predicted, counts), output, cfg.output_format)
    print(
        f"Predicted {counts['entities']} entities in {counts['documents']} documents with {folder} "
        f"(precision {precision})",
        flush=True,
    )
    print(f"Predictions written to {output} ({cfg.output_format})", flush=True)
    return str(output)


def check_speed_options(cfg: DictConfig) -> tuple[str, int | None]:
    """``precision`` and ``max_batch_tokens``, checked before any work (int8 needs the CPU)."""
    import torch

    from medkit_exp.ner.prediction import check_max_batch_tokens, check_precision

    device = torch.device("cpu") if cfg.device is None or cfg.device < 0 else torch.device("cuda", cfg.device)
    return check_precision(cfg.precision, device), check_max_batch_tokens(cfg.max_batch_tokens)


def _counted(documents: Iterable[Any], counts: dict[str, int]) -> Iterator[Any]:
    for document in documents:
        counts["documents"] += 1
        counts["entities"] += len(document.entities)
        yield document


def input_source(path: str | None, input_format: str) -> tuple[Path, str]:
    """The input path and its format (``auto`` resolved from the name), or a ConfigError."""
    from medkit_exp.ner.formats import _guess_format

    if not path:
        raise ConfigError(
            "input", "give the documents: input=PATH (a BRAT folder or .txt file, a CoNLL or JSON-lines file)"
        )
    source = Path(path).expanduser()
    if not source.exists():
        if os.path.lexists(source):
            from medkit_exp.ner.textfiles import check_readable

            check_readable(source, "file or folder")  # a symlink loop or dangling link, named as such
        raise ConfigError("input", f"no such file or folder: {source}")
    if input_format == "auto":
        try:
            input_format = _guess_format(source)
        except DataError:
            raise ConfigError(
                "input_format", f"cannot tell the format of {source} from its name; set input_format=brat|conll|jsonl"
            ) from None
    return source, input_format


def count_documents(source: Path, input_format: str, errors: str) -> int:
    """The documents ``source`` holds, read once through without keeping them: with
    ``input_errors=raise`` any bad line or file fails here, before the model loads and before a
    byte is written (the prediction pass reads the input a second time, lazily); the count is
    the progress bar's total. JSON lines and BRAT are read one line / one file at a time."""
    from medkit_exp.ner.formats import iter_documents

    total = sum(1 for _ in iter_documents(source, input_format, errors=errors))  # DataErrors name file and line
    if not total:
        raise DataError("no document to predict on", path=source)
    logger.info("Read %d documents (%s) from %s", total, input_format, source)
    return total


def read_input_stream(source: Path, input_format: str, errors: str) -> Iterator[Any]:
    """The input documents, read lazily, without their own entities and relations."""
    from medkit_exp.ner.documents import TextDocument
    from medkit_exp.ner.formats import iter_documents

    for doc in iter_documents(source, input_format, errors=errors):
        yield TextDocument(doc.text, doc_id=doc.doc_id, metadata=dict(doc.metadata))


def read_input(path: str | None, input_format: str, errors: str) -> list[Any]:
    """The input documents, without their own entities and relations (all in a list)."""
    source, input_format = input_source(path, input_format)
    count_documents(source, input_format, errors)
    return list(read_input_stream(source, input_format, errors))


def output_path(cfg: DictConfig) -> Path:
    """``output``, or ``predictions.jsonl`` / ``predictions/`` in the run folder; checked before any work."""
    if cfg.output:
        output = Path(cfg.output).expanduser()
    else:
        output = Path(cfg.paths.output_dir) / ("predictions" if cfg.output_format == "brat" else "predictions.jsonl")
    if cfg.output_format == "brat":
        if output.exists() and not output.is_dir():
            raise ConfigError("output", f"BRAT output is a folder, but {output} is a file")
        if output.resolve() == Path(cfg.input).expanduser().resolve():
            raise ConfigError("output", f"{output} is the input folder: its .ann files would be overwritten")
    elif output.is_dir():
        raise ConfigError("output", f"JSON-lines output is a file, but {output} is a folder")
    return output


def write_output(documents: Iterable[Any], output: Path, output_format: str) -> None:
    """Write each document as it comes. JSON lines go to ``<output>.partial``, renamed to
    ``output`` once complete: a run that fails or is stopped half-way leaves no truncated file
    that looks whole. BRAT writes one ``.txt``/``.ann`` pair per document into the folder."""
    from medkit_exp.ner.formats import write_brat, write_jsonl

    if output_format == "jsonl":
        partial = output.with_name(output.name + ".partial")
        try:
            write_jsonl(documents, partial)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, output)
        return
    # BRAT has no place for a score: leave them out rather than warn about each run.
    logger.info("BRAT output holds no entity scores (output_format=jsonl keeps them)")
    unscored = (doc.with_entities([dataclasses.replace(e, score=None) for e in doc.entities]) for doc in documents)
    output.mkdir(parents=True, exist_ok=True)
    write_brat(unscored, output)


if __name__ == "__main__":
    from medkit_exp.config_compose import check_command_line_or_exit

    check_command_line_or_exit(PredictConfig)  # one line and exit code 2 for an unknown key, before Hydra
    main()
