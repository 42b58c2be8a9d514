"""What the evaluate and predict applications share: find the tagger a user names, load it, and
predict with visible progress.

>>> folder = find_model_folder("outputs/ner/2025-01-01_10-00-00", key="model")  # doctest: +SKIP
>>> folder.name                                                                  # doctest: +SKIP
'checkpoint-0000120'
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from medkit_exp.errors import CheckpointError, ConfigError
from medkit_exp.ner.documents import TextDocument
from medkit_exp.ner.tagger_files import TAGGER_CONFIG  # light: no torch
from medkit_exp.training.checkpoint import STATE_FILE, CheckpointManager
from medkit_exp.training.digests import verify_checkpoint

logger = logging.getLogger(__name__)

CHECKPOINT_CHOICES = ("best", "last")
PREDICT_CHUNK = 256  # documents read and predicted at a time: windows are sorted by length within it
PROGRESS_EVERY_S = 10.0  # seconds between two progress lines in the log


def find_model_folder(path: str | None, key: str, which: str = "best") -> Path:
    """The tagger folder that ``path`` names: a checkpoint folder itself, the ``which`` ("best"
    or "last") checkpoint of a training run folder or of its ``checkpoints/`` folder, or any
    Hugging Face token-classification folder (its labels and scheme read from its ``id2label``).

    Anything else is a :class:`ConfigError` naming ``key`` and saying what was found. A checkpoint's
    files are verified against their digests here, before any data or model loads: a damaged one
    is a :class:`CheckpointError` naming it.
    """
    folder = _find_model_folder(path, key, which)
    verify_checkpoint(folder, warn_unverified=False)
    return folder


def _find_model_folder(path: str | None, key: str, which: str) -> Path:
    if which not in CHECKPOINT_CHOICES:
        raise ConfigError("which", f"must be one of {', '.join(CHECKPOINT_CHOICES)}, got {which!r}")
    if not path:
        raise ConfigError(
            key, f"give the tagger: {key}=PATH (a checkpoint folder, a training run folder or a Hugging Face "
            "token-classification folder)"
        )
    folder = Path(path).expanduser()
    if not folder.exists():
        raise ConfigError(key, f"no such folder: {folder}")
    if not folder.is_dir():
        raise ConfigError(key, f"expected a checkpoint or training run folder, got a file: {folder}")
    if (folder / TAGGER_CONFIG).is_file():
        return folder
    for checkpoints in (folder / "checkpoints", folder):
        # state.json, or checkpoint folders alone (a run killed before its first state.json)
        if (checkpoints / STATE_FILE).is_file() or any(checkpoints.glob("checkpoint-*/" + TAGGER_CONFIG)):
            return _run_checkpoint(checkpoints, key, which)
    if (folder / "config.json").is_file():
        _check_token_classifier(folder, key)
        return folder
    raise ConfigError(
        key, f"{folder} is neither a tagger checkpoint (no {TAGGER_CONFIG}), a training run folder "
        f"(no checkpoints/{STATE_FILE}) nor a Hugging Face model folder (no config.json)"
    )


def _check_token_classifier(folder: Path, key: str) -> None:
    """A model folder without TAGGER_CONFIG must name its tags in config.json's id2label (read as
    plain JSON: no torch import before the input is checked); the loader infers labels and scheme."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(key, f"{folder / 'config.json'} is not readable JSON: {error}") from None
    id2label = config.get("id2label") if isinstance(config, dict) else None
    if not isinstance(id2label, dict) or all(re.fullmatch(r"LABEL_\d+", str(v)) for v in id2label.values()):
        raise ConfigError(
            key, f"{folder} is a model folder without tags (no {TAGGER_CONFIG}, and no named labels in its "
            "config.json's id2label): give a tagger checkpoint, a training run folder or a Hugging Face "
            "token-classification model; to train on this model use component.model_name_or_path"
        )


def _run_checkpoint(checkpoints: Path, key: str, which: str) -> Path:
    manager = CheckpointManager(checkpoints)  # an unreadable state.json is a CheckpointError naming it
    name = manager.best if which == "best" else manager.last
    if name is None and which == "best" and manager.last is not None:
        logger.info("No ranked checkpoint in %s (no eval metric): using the last one", checkpoints)
        name = manager.last
    if name is None:
        raise ConfigError(key, f"the run in {checkpoints.parent} has no checkpoint left in {checkpoints}")
    folder = checkpoints / name
    if not (folder / TAGGER_CONFIG).is_file():
        raise ConfigError(key, f"the {which} checkpoint {folder} holds no tagger (no {TAGGER_CONFIG})")
    logger.info("Using the %s checkpoint of the run: %s", which, folder)
    return folder


def load_tagger(folder: Path, key: str, device: int = -1, verify: bool = True) -> Any:
    """The tagger saved in ``folder`` (or any token-classification folder: labels and scheme
    inferred, with a warning).

    A checkpoint's files are verified against their digests first (``verify=False``: the caller
    has, through :func:`find_model_folder`: no second read of every file); a damaged or missing
    file and weights holding NaN or infinity are a CheckpointError naming the file (and the
    tensor); any other failure is a ConfigError naming ``key`` and the folder.
    """
    if verify:
        verify_checkpoint(folder, warn_unverified=False)  # before torch: a damaged file fails at once
    from medkit_exp.ner.tagger import HFEntityMatcherTrainable
    from medkit_exp.training.weights import check_finite_weights

    started = time.perf_counter()
    try:
        tagger = HFEntityMatcherTrainable.from_pretrained(folder, device)
    except CheckpointError:
        raise
    except Exception as error:  # noqa: BLE001 - tags of no known scheme, a missing GPU...: one clear line
        reason = getattr(error, "message", None) or f"{type(error).__name__}: {error}"
        raise ConfigError(key, f"cannot load the tagger in {folder}: {str(reason).splitlines()[0]}") from error
    check_finite_weights(tagger.model, folder)
    logger.info(
        "Loaded the tagger in %s (labels %s, %s) in %.1fs",
        folder, ", ".join(tagger.labels), tagger.tagging_scheme, time.perf_counter() - started,
    )
    return tagger


def check_batch_size(value: Any, key: str = "batch_size") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(key, f"must be an integer >= 1, got {value!r}")
    return value


def predict_documents(
    tagger: Any, documents: Sequence[TextDocument], batch_size: int, precision: str = "fp32",
    max_batch_tokens: int | None = None,
) -> list[TextDocument]:
    """``medkit_exp.ner.prediction.predict`` over ``documents`` in chunks, with a progress bar on a
    terminal and a progress line in the log (see :func:`stream_predictions`)."""
    started = time.perf_counter()
    results = list(stream_predictions(tagger, documents, len(documents), batch_size, precision, max_batch_tokens))
    logger.info(
        "Predicted %d entities in %d documents in %.1fs",
        sum(len(doc.entities) for doc in results), len(results), time.perf_counter() - started,
    )
    return results


def stream_predictions(
    tagger: Any, documents: Iterable[TextDocument], total: int | None, batch_size: int, precision: str = "fp32",
    max_batch_tokens: int | None = None, progress: bool = True,
) -> Iterator[TextDocument]:
    """``medkit_exp.ner.prediction.predict_stream`` over ``documents`` (read lazily,
    :data:`PREDICT_CHUNK` at a time), yielding each predicted document in input order.

    With ``progress``: a tqdm bar on stderr (documents/s and ETA against ``total``) when stderr is
    a terminal (in a log file its redraws are noise), and a log line with the same figures at most
    every :data:`PROGRESS_EVERY_S` seconds, so a batch job's log shows progress too.
    """
    from medkit_exp.ner.prediction import predict_stream

    predictions = predict_stream(
        tagger, documents, batch_size, precision=precision, max_batch_tokens=max_batch_tokens, chunk_size=PREDICT_CHUNK
    )  # options checked here, before the first document is read
    return _with_progress(predictions, total, progress)


def _with_progress(predictions: Iterator[TextDocument], total: int | None, progress: bool) -> Iterator[TextDocument]:
    from tqdm.auto import tqdm

    started = last_log = time.perf_counter()
    done = 0
    bar = tqdm(total=total, unit="doc", desc="predict", leave=False, file=sys.stderr,
               disable=not progress or not sys.stderr.isatty())
    with bar:
        for document in predictions:
            done += 1
            bar.update(1)
            yield document
            now = time.perf_counter()
            if progress and now - last_log >= PROGRESS_EVERY_S:
                last_log = now
                logger.info("Predicted %s", progress_line(done, total, now - started))


def progress_line(done: int, total: int | None, elapsed: float) -> str:
    """``"1200/5000 documents (85.3 documents/s, ETA 0:00:45)"``; no ETA without a total.

    >>> progress_line(1200, 5000, 10.0)
    '1200/5000 documents (120.0 documents/s, ETA 0:00:32)'
    """
    speed = done / elapsed if elapsed > 0 else 0.0
    if total is None:
        return f"{done} documents ({speed:.1f} documents/s)"
    eta = f", ETA {datetime.timedelta(seconds=round((total - done) / speed))}" if speed > 0 else ""
    return f"{done}/{total} documents ({speed:.1f} documents/s{eta})"
