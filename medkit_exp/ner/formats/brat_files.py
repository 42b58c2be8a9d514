"""Finding the documents of a BRAT folder: which ``.txt``/``.ann`` pairs to read, and what not.

Nothing in the folder goes unnoticed: a file that is not read is counted in the read report, at
INFO for BRAT's own configuration files and hidden files, and at WARNING (``report.warnings``)
for editor backups (``doc.ann~``), misnamed files (``doc.ANN``), other files, dangling links and
texts without ``.ann``; ``errors="strict"`` makes each of these an error. A folder named like a
BRAT file (``doc.ann/``), a symlink loop and a ``.ann`` without its ``.txt`` are DataErrors
naming the path.
"""

from __future__ import annotations

import os
from pathlib import Path

from medkit_exp.errors import DataError
from medkit_exp.ner.documents import ReadReport
from medkit_exp.ner.textfiles import check_readable

BRAT_SUFFIXES = (".txt", ".ann")
# Files BRAT itself keeps beside the documents (not documents, nothing to warn about).
BRAT_CONFIG_FILES = frozenset({"annotation.conf", "visual.conf", "tools.conf", "kb_shortcuts.conf"})
_BACKUP_SUFFIXES = (".bak", ".orig", ".swp", ".swo", ".tmp", ".old")
CONFIG_OR_HIDDEN = "BRAT configuration or hidden file (not read)"
NO_ANN = "texts without .ann (read as documents without entities)"

DocumentFiles = tuple[str, Path, "Path | None"]


def _unread_kind(path: Path) -> str | None:
    """What kind of non-document ``path`` is, for the report; None for BRAT's own files (INFO)."""
    name = path.name
    if name in BRAT_CONFIG_FILES or name.startswith("."):
        return None
    if name.endswith("~") or name.lower().endswith(_BACKUP_SUFFIXES) or (name.startswith("#") and name.endswith("#")):
        return "editor backups not read"
    if path.suffix.lower() in BRAT_SUFFIXES or ".ann." in name or ".txt." in name:
        return "misnamed files not read (a document is NAME.txt + NAME.ann)"
    return "other files not read"


def _walk(folder: Path, report: ReadReport, errors: str, seen: set[tuple[int, int]]) -> list[Path]:
    """The ``.txt``/``.ann`` files under ``folder`` (links to folders followed once: a link back
    to a folder being walked is a symlink loop, an error)."""
    stat = folder.stat()
    if (stat.st_dev, stat.st_ino) in seen:
        raise DataError("symlink loop (a link to a folder that contains it)", path=folder)
    seen = seen | {(stat.st_dev, stat.st_ino)}
    found: list[Path] = []
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except PermissionError:
        raise DataError("permission denied (cannot list the folder)", path=folder) from None
    for entry in entries:
        path = Path(entry.path)
        if entry.is_symlink() and not path.exists():
            try:
                check_readable(path)
            except DataError as error:
                if "loop" in error.message:
                    raise
                report.warn("dangling links not read", path, errors)
            continue
        if path.is_dir():
            if path.suffix in BRAT_SUFFIXES:
                raise DataError(f"a folder named like a BRAT file (expected a {path.suffix} file)", path=path)
            found += _walk(path, report, errors, seen)
        elif path.suffix in BRAT_SUFFIXES and path.is_file():
            found.append(path)
        else:
            kind = _unread_kind(path)
            if kind is None:
                report.ignored[CONFIG_OR_HIDDEN] += 1
            else:
                report.warn(kind, path, errors)
    return found


def _pair(txt: Path, ann: Path, report: ReadReport, errors: str) -> Path | None:
    """The ``.ann`` of ``txt`` after checking both are files we can read, or None (warned)."""
    if not os.path.lexists(txt):
        raise DataError("the .ann file has no .txt beside it", path=ann)
    check_readable(txt, "BRAT .txt file")
    if not os.path.lexists(ann):
        report.warn(NO_ANN, txt, errors)
        return None
    check_readable(ann, "BRAT .ann file")
    return ann


def find_brat_documents(path: Path, report: ReadReport, errors: str) -> list[DocumentFiles]:
    """``(doc_id, txt, ann or None)`` for a folder (recursive) or one ``.txt``/``.ann`` path;
    ``doc_id`` is the path relative to the folder, without suffix."""
    if os.path.lexists(path) and not path.is_dir():
        if path.suffix not in BRAT_SUFFIXES:
            check_readable(path)
            raise DataError("not a BRAT file (expected .txt or .ann)", path=path)
        txt, ann = path.with_suffix(".txt"), path.with_suffix(".ann")
        return [(path.stem, txt, _pair(txt, ann, report, errors))]
    if not path.exists():
        raise DataError("no such file or directory (expected a BRAT folder or a .txt/.ann file)", path=path)
    if path.suffix in BRAT_SUFFIXES:
        raise DataError(f"a folder named like a BRAT file (expected a {path.suffix} file)", path=path)
    files = _walk(path, report, errors, set())
    found = []
    for stem in sorted({p.with_suffix("") for p in files}):
        txt, ann = stem.with_suffix(stem.suffix + ".txt"), stem.with_suffix(stem.suffix + ".ann")
        found.append((stem.relative_to(path).as_posix(), txt, _pair(txt, ann, report, errors)))
    if not found:
        raise DataError("no BRAT document (.txt/.ann) found in this folder", path=path)
    return found
