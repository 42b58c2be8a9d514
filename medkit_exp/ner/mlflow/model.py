"""The NER tagger as an MLflow model: a pyfunc that turns texts into entities with offsets.

>>> import mlflow, pandas as pd                                                     # doctest: +SKIP
>>> model = mlflow.pyfunc.load_model("models:/ner-demo@candidate")                   # doctest: +SKIP
>>> model.predict(pd.DataFrame({"text": ["Fever and cough since Monday."]}))         # doctest: +SKIP
[[{'start': 0, 'end': 5, 'label': 'problem', 'text': 'Fever', 'score': 0.97},
  {'start': 10, 'end': 15, 'label': 'problem', 'text': 'cough', 'score': 0.95}]]

The model holds the tagger folder a run saved (Hugging Face model, tokenizer and
``medkit_exp_tagger.json``, without the optimizer state) as its ``tagger`` artifact and predicts
through :func:`medkit_exp.ner.prediction.predict`; loading it needs medkit_exp installed. Input: a
DataFrame with a ``text`` column of strings (MLflow checks it against the logged signature; the
serving JSON is ``{"dataframe_records": [{"text": "..."}]}``). Output: one list of entities per
text, each ``{start, end, label, text, score}`` (character offsets into the text, ``end``
exclusive; a discontinuous entity is given by its outer bounds).

This module imports mlflow.pyfunc: import it only when a model is logged or loaded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

from medkit_exp.training.checkpoint import TRAINER_FILES

logger = logging.getLogger(__name__)

TAGGER_ARTIFACT = "tagger"
MODEL_NAME = "model"
# The files of a tagger folder the model needs; the rest of a checkpoint (optimizer, scheduler
# and RNG states, trainer config) stays out of the model.
TRAINING_ONLY_FILES = TRAINER_FILES
PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
MODEL_CODE = Path(__file__).with_name("ner_model_code.py")
REQUIREMENTS = ("mlflow", "torch", "transformers", "tokenizers", "pandas", "medkit_exp")


def entity_records(documents: Sequence[Any]) -> list[list[dict[str, Any]]]:
    """The entities of predicted documents as plain records, one list per document."""
    return [
        [
            {"start": int(e.start), "end": int(e.end), "label": str(e.label), "text": str(e.text),
             "score": float(e.score) if e.score is not None else 1.0}
            for e in doc.entities
        ]
        for doc in documents
    ]


def input_texts(model_input: Any) -> list[str]:
    """The texts of a pyfunc input: a DataFrame (``text`` column, else its only column), a list
    of strings or one string. Anything else (e.g. a list in a cell) is a ValueError, so that no
    text is ever predicted on its ``repr``."""
    if isinstance(model_input, str):
        return [model_input]
    if isinstance(model_input, pd.DataFrame):
        if "text" in model_input.columns:
            column = model_input["text"]
        elif len(model_input.columns) == 1:
            column = model_input.iloc[:, 0]
        else:
            raise ValueError(f"expected a 'text' column, got columns {list(model_input.columns)}")
        return input_texts(column.tolist())
    if isinstance(model_input, (list, tuple)) and all(isinstance(text, str) for text in model_input):
        return list(model_input)
    raise ValueError(
        "expected texts: a DataFrame with a 'text' column of strings, a list of strings or a string; "
        f"got {type(model_input).__name__}"
    )


class EntityTaggerModel(mlflow.pyfunc.PythonModel):
    """A pyfunc model over a saved :class:`~medkit_exp.ner.tagger.HFEntityMatcherTrainable`."""

    def __init__(self, batch_size: int = 32):
        self.batch_size = batch_size
        self.tagger: Any = None

    def load_context(self, context: Any) -> None:
        from medkit_exp.ner.tagger import HFEntityMatcherTrainable

        self.tagger = HFEntityMatcherTrainable.from_pretrained(context.artifacts[TAGGER_ARTIFACT])

    # The DataFrame hint tells MLflow to check inputs against the logged signature.
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> list[list[dict[str, Any]]]:
        from medkit_exp.ner.documents import TextDocument
        from medkit_exp.ner.prediction import predict

        documents = [TextDocument(text) for text in input_texts(model_input)]
        return entity_records(predict(self.tagger, documents, batch_size=self.batch_size))


def model_signature(example_texts: Sequence[str]) -> Any:
    """Input schema inferred from the example texts (a ``text`` string column); output schema
    written out, so that it does not depend on what an untrained model happens to predict."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.schema import Array, ColSpec, Object, Property, Schema

    inputs = infer_signature(pd.DataFrame({"text": list(example_texts)})).inputs
    entity = Object([
        Property("start", "long"), Property("end", "long"), Property("label", "string"),
        Property("text", "string"), Property("score", "double"),
    ])
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec(Array(entity))]))


def pip_requirements() -> list[str]:
    """The installed versions of what loading the model needs (pinned, so no inference runs:
    MLflow would otherwise load the model in a subprocess to find its imports)."""
    from medkit_exp.tracking.context import installed_version

    return [f"{name}=={version}" if (version := installed_version(name)) else name for name in REQUIREMENTS]


@contextlib.contextmanager
def quiet_model_logging() -> Iterator[None]:
    """Model logging without two costs that buy nothing here: MLflow checks each requirement of a
    model against the installed packages when it saves or loads it, after mapping every file of
    every installed package (~2 s, once per process, in the wall time of the run); ours are the
    installed versions (:func:`pip_requirements`), so the check cannot fail and is skipped. And
    no download progress bar."""
    import mlflow.utils.environment as environment

    name = "warn_dependency_requirement_mismatches"
    saved = [(module, getattr(module, name)) for module in (environment, mlflow.pyfunc) if hasattr(module, name)]
    for module, _ in saved:
        setattr(module, name, lambda *args, **kwargs: None)
    # MLflow "downloads" the model from its local folder to validate the input example: no progress bar.
    progress_bar = os.environ.get(PROGRESS_BAR_ENV)
    os.environ[PROGRESS_BAR_ENV] = "false"
    try:
        yield
    finally:
        for module, function in saved:
            setattr(module, name, function)
        if progress_bar is None:
            os.environ.pop(PROGRESS_BAR_ENV, None)
        else:
            os.environ[PROGRESS_BAR_ENV] = progress_bar


def tagger_model_files(checkpoint_dir: str | Path, folder: Path) -> Path:
    """A copy of a checkpoint's tagger files (hard links where possible) in ``folder``."""
    source = Path(checkpoint_dir)
    target = folder / TAGGER_ARTIFACT
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file() and path.name not in TRAINING_ONLY_FILES:
            try:
                (target / path.name).hardlink_to(path)
            except OSError:  # another file system: copy
                shutil.copy2(path, target / path.name)
    return target


class _LinkingShutil:
    """``shutil`` whose ``copy2`` makes a hard link when the source is one of ``files`` (by inode)."""

    def __init__(self, files: set[tuple[int, int]]):
        self._files = files

    def __getattr__(self, name: str) -> Any:
        return getattr(shutil, name)

    def copy2(self, src: Any, dst: Any, *, follow_symlinks: bool = True) -> Any:
        status = os.stat(src)
        if (status.st_dev, status.st_ino) in self._files:
            target = os.path.join(dst, os.path.basename(src)) if os.path.isdir(dst) else dst
            try:
                os.link(src, target)
                return target
            except OSError:  # another file system, or the target exists: copy as MLflow would
                pass
        return shutil.copy2(src, dst, follow_symlinks=follow_symlinks)


@contextlib.contextmanager
def checkpoint_files_linked(checkpoint_dir: str | Path) -> Iterator[None]:
    """While this is open, MLflow's local copies of the checkpoint's files (the weights: ~90 MB
    for MiniLM, copied twice when a model is logged into a local store: into the model folder,
    then into the store) are hard links. A checkpoint's files are written once and never changed
    (a new checkpoint is a new folder), so a link is as good as a copy; any other file MLflow
    copies meanwhile (from any thread) is still copied."""
    import mlflow.store.artifact.local_artifact_repo as local_repository
    import mlflow.utils.file_utils as file_utils

    files = {(status.st_dev, status.st_ino) for path in Path(checkpoint_dir).iterdir() if path.is_file()
             for status in (path.stat(),)}
    modules = [module for module in (local_repository, file_utils) if getattr(module, "shutil", None) is shutil]
    for module in modules:
        module.shutil = _LinkingShutil(files)
    try:
        yield
    finally:
        for module in modules:
            module.shutil = shutil


@contextlib.contextmanager
def serving_input_check(enabled: bool) -> Iterator[None]:
    """MLflow's check of a logged model's input example, which loads the model (torch, the
    weights) and predicts the example, on (``enabled``) or off. Off, the example is still checked
    against the signature."""
    import mlflow.models.utils as model_utils

    name = "_validate_serving_input"
    original = getattr(model_utils, name, None)
    if enabled or original is None:
        yield
        return
    setattr(model_utils, name, lambda *args, **kwargs: None)
    try:
        yield
    finally:
        setattr(model_utils, name, original)


def log_tagger_model(
    checkpoint_dir: str | Path,
    run: Any,
    example_texts: Sequence[str],
    registered_model_name: str | None = None,
    alias: str | None = None,
    validate: bool = False,
) -> Any:
    """Log a checkpoint's tagger as the run's pyfunc model ``model``; optionally register it
    (``registered_model_name``) and point ``alias`` at the new version. Returns MLflow's ModelInfo.

    ``run`` is a :class:`~medkit_exp.tracking.runs.RunHandle`. ``validate``: MLflow loads the
    logged model and predicts the input example (see :func:`serving_input_check`).
    """
    example = pd.DataFrame({"text": list(example_texts)})
    with (tempfile.TemporaryDirectory(prefix="medkit-exp-model-") as tmp, run.activate(), quiet_model_logging(),
          serving_input_check(validate), checkpoint_files_linked(checkpoint_dir)):
        tagger_dir = tagger_model_files(checkpoint_dir, Path(tmp))
        info = mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(MODEL_CODE),  # models from code: no pickle
            artifacts={TAGGER_ARTIFACT: str(tagger_dir)},
            signature=model_signature(example_texts),
            input_example=example,
            pip_requirements=pip_requirements(),
            registered_model_name=registered_model_name,
            metadata={"source_checkpoint": Path(checkpoint_dir).name},
        )
    client = run.client
    tags = {"model.uri": info.model_uri}
    version = getattr(info, "registered_model_version", None)
    if registered_model_name and version is not None:
        tags["model.registered"] = f"{registered_model_name}/{version}"
        if alias:
            client.set_registered_model_alias(registered_model_name, alias, str(version))
            tags["model.alias"] = alias
            logger.info("Model %s version %s registered with alias %r", registered_model_name, version, alias)
    for key, value in tags.items():
        client.set_tag(run.run_id, key, value)
    return info


def log_model_task(
    run: Any, checkpoint_dir: str, example_texts: list[str], registered_model_name: str | None = None,
    alias: str | None = None, validate: bool = False,
) -> None:
    """An MLflow task (see :meth:`~medkit_exp.tracking.runs.RunHandle.run_task`):
    :func:`log_tagger_model`, its failure logged (the run's other data is safe)."""
    try:
        info = log_tagger_model(checkpoint_dir, run, example_texts, registered_model_name, alias, validate)
    except Exception:  # noqa: BLE001
        logger.exception("Could not log the model of %s", checkpoint_dir)
        return
    logger.info("Logged the model of %s as %s", Path(checkpoint_dir).name, info.model_uri)
