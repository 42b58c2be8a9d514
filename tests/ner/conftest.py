"""Small helpers for the tests of medkit_exp.ner's data layer (awkward files written in tmp_path)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def real_data_dir() -> Path:
    """Where the real corpora live: $MEDKIT_EXP_DATA_DIR, else ../shared/data beside the project."""
    default = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    return Path(os.environ.get("MEDKIT_EXP_DATA_DIR", default))


def require_real_data(*parts: str) -> Path:
    path = real_data_dir().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real corpus not found at {path} (set MEDKIT_EXP_DATA_DIR to the shared data folder)")
    return path


def write_pair(folder: Path, name: str, text: str | bytes, ann: str | bytes | None) -> Path:
    """Write ``name.txt`` (+ ``name.ann``) byte for byte (no newline translation)."""
    folder.mkdir(parents=True, exist_ok=True)
    txt = folder / f"{name}.txt"
    txt.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    if ann is not None:
        (folder / f"{name}.ann").write_bytes(ann if isinstance(ann, bytes) else ann.encode("utf-8"))
    return txt
