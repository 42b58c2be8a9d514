"""File operations that survive a kill (and, with fsync, a power cut) at any instant.

A checkpoint is only as safe as the order of its writes: data first and flushed to disk, then
the rename that publishes it, then the folder holding the new name flushed too (a rename lives
in the folder's own entries, which ``fsync`` of the files does not cover).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

TRASH_PREFIX = ".trash-"


def fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (names created, renamed or removed in it)."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return  # a platform without directory descriptors (Windows): its renames are durable
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems refuse fsync on folders; nothing more can be done there
    finally:
        os.close(descriptor)


def fsync_tree(folder: Path) -> None:
    """Flush every file under ``folder``, then every folder, the deepest first."""
    folders = [folder]
    for path in sorted(folder.rglob("*")):
        if path.is_dir():
            folders.append(path)
        elif path.is_file():
            fsync_file(path)
    for path in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(path)


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` so that a reader sees the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def remove_tree(folder: Path) -> None:
    """Remove ``folder``: renamed aside first, so that a kill while deleting leaves a ``.trash-``
    folder (cleaned up later), never a half-deleted folder under its own name."""
    trash = folder.with_name(TRASH_PREFIX + folder.name)
    if trash.exists():
        shutil.rmtree(trash)
    os.replace(folder, trash)
    fsync_dir(folder.parent)
    shutil.rmtree(trash)
