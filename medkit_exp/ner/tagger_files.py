"""The files of a saved tagger, checked before transformers reads them.

transformers reports a damaged folder with whatever its parser raises (SafetensorError,
JSONDecodeError, a KeyError of the tokenizer, "Unrecognized model" for a deleted config.json),
without naming the file. These checks turn each into one :class:`CheckpointError` naming it.

>>> check_saved_model(Path("outputs/ner/run/checkpoints/checkpoint-0000120"))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medkit_exp.errors import CheckpointError, MedkitExpError

TAGGER_CONFIG = "medkit_exp_tagger.json"  # the tagger's own settings, beside the Hugging Face files
MODEL_CONFIG = "config.json"
WEIGHTS_FILES = (
    "model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json"
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
TAGGER_SETTINGS = ("labels", "tagging_scheme", "tag_subtokens", "tokenizer_max_length", "stride")
#: Taggers built on the flat one, by the settings key their folders hold: the flat tagger's
#: ``from_pretrained`` hands such a folder to the class named here (named, not imported, so that
#: the flat tagger does not depend on the taggers built on it).
TAGGER_KINDS = {"nesting_depth": "medkit_exp.ner.nested_tagger.NestedEntityTagger"}


def read_json_file(path: Path) -> Any:
    """The JSON content of ``path``; a missing or unparsable file is a CheckpointError naming it."""
    if not path.is_file():
        raise CheckpointError("missing: the saved model needs it", path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise CheckpointError(f"not a valid JSON file ({type(error).__name__}: {error})", path) from None


def read_tagger_settings(path: Path) -> dict[str, Any]:
    """The tagger's own settings file (written by ``HFEntityMatcherTrainable.save``)."""
    settings = read_json_file(path)
    missing = [key for key in TAGGER_SETTINGS if not isinstance(settings, dict) or key not in settings]
    if missing:
        raise CheckpointError(f"damaged tagger settings: no {', '.join(missing)}", path)
    return settings


def check_saved_model(folder: Path) -> None:
    """A local model folder must hold a readable config.json, readable JSON files, and weights
    whose safetensors headers are whole. Anything else (a hub id) is left to transformers."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    config = read_json_file(folder / MODEL_CONFIG)
    if not isinstance(config, dict) or "model_type" not in config:
        raise CheckpointError("damaged model config: no 'model_type'", folder / MODEL_CONFIG)
    for path in sorted(folder.glob("*.json")):
        read_json_file(path)
    if not any((folder / name).is_file() for name in WEIGHTS_FILES):
        raise CheckpointError(f"no weights file ({' or '.join(WEIGHTS_FILES[:2])}) in the saved model", folder)
    for path in sorted(folder.glob("*.safetensors")):
        _check_safetensors(path)


def _check_safetensors(path: Path) -> None:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            handle.keys()
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"corrupt or truncated weights file ({error})", path) from None


@contextlib.contextmanager
def damaged_files_named(folder: Path) -> Iterator[None]:
    """Our own errors pass; any other failure of loading ``folder`` becomes a CheckpointError
    naming the file whose parser failed (told by the traceback), or the folder."""
    try:
        yield
    except MedkitExpError:
        raise
    except Exception as error:  # noqa: BLE001 - transformers raises many types for damaged files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(
            f"cannot load the saved model ({type(error).__name__}: {reason[:300]})", _blamed_file(error, Path(folder))
        ) from error


def _blamed_file(error: BaseException, folder: Path) -> Path:
    frames = " ".join(frame.f_code.co_filename for frame, _ in _walk(error))
    candidates: tuple[str, ...] = ()
    if "safetensors" in frames or "modeling_utils" in frames or "serialization" in frames:
        candidates = WEIGHTS_FILES
    elif "tokeniz" in frames:
        candidates = TOKENIZER_FILES
    elif "configuration_" in frames:
        candidates = (MODEL_CONFIG,)
    return next((folder / name for name in candidates if (folder / name).is_file()), folder)


def _walk(error: BaseException) -> Iterator[tuple[Any, int]]:
    import traceback

    return traceback.walk_tb(error.__traceback__)
