"""Files into a local MLflow artifact store: hard links where the file system allows.

The one place the tracking code (and a component's model logging) links files instead of
copying them: checkpoints are written once and never changed in place (a new checkpoint is a new
folder), so a hard link is as good as a copy and costs neither the time nor the disk of one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection
from pathlib import Path
from urllib.parse import unquote, urlparse


def link_or_copy(source: str | Path, target_dir: str | Path, exclude: Collection[str] = ()) -> Path:
    """Put a file, or a folder's files (sub-folders kept), into ``target_dir`` as MLflow's local
    artifact store does, hard-linked where possible, copied across file systems; a file already
    there is replaced. Files named in ``exclude`` are left out. Returns ``target_dir``."""
    source, target_dir = Path(source), Path(target_dir)
    files = [(source, target_dir / source.name)] if source.is_file() else [
        (path, target_dir / path.relative_to(source)) for path in sorted(source.rglob("*")) if path.is_file()
    ]
    target_dir.mkdir(parents=True, exist_ok=True)
    for path, destination in files:
        if path.name in exclude:
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        if destination.exists() or destination.is_symlink():
            destination.unlink()
        try:
            os.link(path, destination)
        except OSError:  # another file system, no hard links: copy
            shutil.copy2(path, destination)
    return target_dir


def local_artifact_root(artifact_uri: str) -> Path | None:
    """The folder of a run's artifacts when they live on this machine (a path or ``file:``), else None."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and artifact_uri.startswith("/"):
        return Path(artifact_uri)
    return None
