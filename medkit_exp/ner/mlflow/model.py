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
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

from medkit_exp.training.checkpoint import TRAINER_FILES

logger = logging.getLogger(__name__)

TAGGER_ARTIFACT = "tagger"
MODEL_KIND = "tagger"  # the logged model is named <experiment>-tagger
# The files of a tagger folder the model needs; the rest of a checkpoint (optimizer, scheduler
# and RNG states, trainer config) stays out of the model.
TRAINING_ONLY_FILES = TRAINER_FILES
PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
MODEL_CODE = Path(__file__).with_name("model_code.py")
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
def no_progress_bar() -> Iterator[None]:
    """No download progress bar (MLflow's documented ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR``) while
    MLflow "downloads" the model from its local folder to validate its input example."""
    progress_bar = os.environ.get(PROGRESS_BAR_ENV)
    os.environ[PROGRESS_BAR_ENV] = "false"
    try:
        yield
    finally:
        if progress_bar is None:
            os.environ.pop(PROGRESS_BAR_ENV, None)
        else:
            os.environ[PROGRESS_BAR_ENV] = progress_bar


def tagger_model_files(checkpoint_dir: str | Path, folder: Path) -> Path:
    """The checkpoint's tagger files (hard links where possible) in ``folder``: MLflow copies
    them into the model, the optimizer, scheduler and RNG states stay out."""
    from medkit_exp.tracking.files import link_or_copy

    return link_or_copy(checkpoint_dir, folder / TAGGER_ARTIFACT, exclude=TRAINING_ONLY_FILES)


def log_tagger_model(
    checkpoint_dir: str | Path,
    run: Any,
    example_texts: Sequence[str],
    registered_model_name: str | None = None,
    alias: str | None = None,
    validate: bool = False,
) -> Any:
    """Log a checkpoint's tagger as the run's pyfunc model ``<experiment>-tagger`` (its source the
    training's command, the best evaluation's metrics linked to it: see
    :mod:`medkit_exp.tracking.model_link`); optionally register it
    (``registered_model_name``) and point ``alias`` at the new version. Returns MLflow's ModelInfo.

    ``run`` is a :class:`~medkit_exp.tracking.run_handle.RunHandle`. ``example_texts`` make the signature's
    input schema. ``validate``: they are also the model's input example, which MLflow validates when
    it logs the model (it loads the logged model and predicts them); MLflow's public API validates
    every input example, so without ``validate`` the model has none.
    """
    example = pd.DataFrame({"text": list(example_texts)}) if validate else None
    quiet = no_progress_bar() if validate else contextlib.nullcontext()
    with tempfile.TemporaryDirectory(prefix="medkit-exp-model-") as tmp, run.activate(), quiet:
        tagger_dir = tagger_model_files(checkpoint_dir, Path(tmp))
        info = mlflow.pyfunc.log_model(
            name=run.model_name(MODEL_KIND),
            tags=run.model_tags(),  # the training's command as the source (not the worker's "-c")
            python_model=str(MODEL_CODE),  # models from code: no pickle
            artifacts={TAGGER_ARTIFACT: str(tagger_dir)},
            signature=model_signature(example_texts),
            input_example=example,
            pip_requirements=pip_requirements(),
            registered_model_name=registered_model_name,
            metadata={"source_checkpoint": Path(checkpoint_dir).name},
        )
    linked = run.link_model_metrics(info.model_id)  # the model's page lists its evaluation
    logger.debug("%d evaluation metrics linked to model %s", linked, info.model_id)
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
