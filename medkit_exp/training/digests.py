"""The digests of a checkpoint's files: ``checksums.json``, written last inside the folder.

It records, for every file, its size and sha256, plus the checkpoint's step and metric. Its
presence (with every file it lists at its recorded size) is what makes a folder *complete*: it
is written after all the others, before the folder is renamed to its final name. Verifying
the digests before a resume, an evaluation or a prediction names the file that changed since.

>>> write_manifest(folder, step=120, metric=0.83)  # doctest: +SKIP
>>> verify_checkpoint(folder)                       # doctest: +SKIP
True
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from medkit_exp.errors import CheckpointError

logger = logging.getLogger(__name__)

MANIFEST = "checksums.json"
MANIFEST_FORMAT = 1
# A checkpoint written before digests were recorded holds this file of the Trainer's.
LEGACY_MARKER = "trainer_state.pt"
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path, step: int | None = None, metric: float | None = None) -> Path:
    """Record the size and sha256 of every file under ``folder`` (call it after the last write)."""
    folder = Path(folder)
    files = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and relative != MANIFEST:
            files[relative] = {"size": path.stat().st_size, "sha256": file_sha256(path)}
    manifest = {"format": MANIFEST_FORMAT, "algorithm": "sha256", "step": step, "metric": metric, "files": files}
    path = folder / MANIFEST
    path.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return path


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of ``folder``; None when it has none; CheckpointError when it is unreadable."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = manifest["files"]
        valid = isinstance(files, dict) and all(
            isinstance(entry, dict) and isinstance(entry.get("size"), int) and isinstance(entry.get("sha256"), str)
            for entry in files.values()
        )
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"unreadable checksums file ({type(error).__name__}: {error})", path) from None
    if not valid or manifest.get("format") != MANIFEST_FORMAT:
        raise CheckpointError("unreadable checksums file (not written by this version of medkit_exp)", path)
    return manifest


def incomplete_reason(folder: Path) -> str | None:
    """Why ``folder`` is not a complete checkpoint (cheap: names and sizes only); None if it is.

    A folder written before digests were recorded is complete when it holds trainer_state.pt.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return "missing"
    try:
        manifest = read_manifest(folder)
    except CheckpointError as error:
        return str(error)
    if manifest is None:
        return None if (folder / LEGACY_MARKER).is_file() else f"incomplete (no {MANIFEST})"
    for name, entry in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            return f"incomplete ({name} is missing)"
        if path.stat().st_size != entry["size"]:
            return f"incomplete ({name} has {path.stat().st_size} bytes, {entry['size']} when saved)"
    return None


def verify_checkpoint(folder: Path, warn_unverified: bool = True) -> bool:
    """Check every file against its recorded digest; CheckpointError naming the first damaged one.

    Returns False for a folder without digests (a warning says so unless ``warn_unverified`` is
    False: a model folder of another program has none), True when all match.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        if warn_unverified:
            logger.warning("%s has no %s (saved by an older medkit_exp or by another program): its files "
                           "cannot be verified", folder, MANIFEST)
        return False
    for name, entry in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"missing: the checkpoint's {MANIFEST} lists it", path)
        size = path.stat().st_size
        if size != entry["size"]:
            raise CheckpointError(f"damaged: {size} bytes, {entry['size']} when it was saved", path)
        if file_sha256(path) != entry["sha256"]:
            raise CheckpointError(f"damaged: its sha256 differs from the one in {MANIFEST}", path)
    return True
