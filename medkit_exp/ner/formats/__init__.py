"""Corpus readers and writers: BRAT standoff, CoNLL/IOB, JSON lines, medkit (lazy).

:func:`read_documents` picks a reader by format (or guesses it from the path) and
:func:`read_splits` reads ``train``/``dev``/``test`` under one folder, naming any missing split.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
import os
from pathlib import Path
from typing import Any

from medkit_exp.errors import DataError
from medkit_exp.ner.documents import Corpus, ReadReport, TextDocument
from medkit_exp.ner.formats.brat import iter_brat, read_brat, write_brat
from medkit_exp.ner.formats.conll import read_conll
from medkit_exp.ner.formats.jsonl import iter_jsonl, read_jsonl, write_jsonl
from medkit_exp.ner.textfiles import check_readable

__all__ = [
    "FORMATS",
    "Corpus",
    "ReadReport",
    "from_medkit",
    "iter_brat",
    "iter_documents",
    "iter_jsonl",
    "read_brat",
    "read_conll",
    "read_documents",
    "read_jsonl",
    "read_medkit_json",
    "read_splits",
    "to_medkit",
    "write_brat",
    "write_jsonl",
    "write_medkit_json",
]

FORMATS = ("auto", "brat", "conll", "jsonl", "medkit_json")
_SUFFIXES = {".jsonl": "jsonl", ".tsv": "conll", ".conll": "conll", ".iob": "conll", ".bio": "conll"}


def __getattr__(name: str) -> Any:
    # The medkit converters are imported on first use only (medkit itself is optional).
    if name in ("to_medkit", "from_medkit", "read_medkit_json", "write_medkit_json"):
        from medkit_exp.ner.formats import medkit as medkit_format

        return getattr(medkit_format, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _guess_format(path: Path) -> str:
    if path.suffix in _SUFFIXES:  # first: a folder named "x.tsv" is a CoNLL file that is a folder
        return _SUFFIXES[path.suffix]
    if path.is_dir() or path.suffix in (".ann", ".txt"):
        return "brat"
    raise DataError(f"cannot tell the format from the name; pass format= one of {', '.join(FORMATS[1:])}", path=path)


def read_documents(path: str | Path, format: str = "auto", **options: Any) -> Corpus:
    """Read a corpus in ``format`` (``"auto"``: a folder or .txt/.ann is BRAT, ``.tsv``/``.conll``
    /``.iob``/``.bio`` CoNLL, ``.jsonl`` JSON lines); ``options`` go to the reader.

    >>> train = read_documents("ncbi_disease/conll/train.tsv", without_docstart="file")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.exists():
        check_readable(path)  # names a symlink loop or a dangling link as what it is
    if format == "auto":
        format = _guess_format(path)
    if format == "brat":
        return read_brat(path, **options)
    if format == "conll":
        return read_conll(path, **options)
    if format == "jsonl":
        return read_jsonl(path, **options)
    if format == "medkit_json":
        from medkit_exp.ner.formats.medkit import read_medkit_json

        return read_medkit_json(path, **options)
    from medkit_exp.errors import ConfigError

    raise ConfigError("format", f"must be one of {', '.join(FORMATS)}, got {format!r}")


def iter_documents(
    path: str | Path, format: str = "auto", report: ReadReport | None = None, **options: Any
) -> Iterator[TextDocument]:
    """The documents of :func:`read_documents`, read lazily where the format allows: JSON lines
    line by line, BRAT file by file (same checks and messages, raised when the reader reaches the
    bad line or file). CoNLL is read whole (its tagging scheme is detected from the whole file), then
    handed out one document at a time. ``report`` (optional) receives the reader's counts and
    skipped items.

    >>> for doc in iter_documents("notes.jsonl"):  # doctest: +SKIP
    ...     print(doc.doc_id)
    """
    path = Path(path)
    if not path.exists():
        check_readable(path)
    if format == "auto":
        format = _guess_format(path)
    if format == "jsonl":
        return iter_jsonl(path, report=report, **options)
    if format == "brat":
        return iter_brat(path, report=report, **options)
    corpus = read_documents(path, format, **options)
    if report is not None:
        vars(report).update(vars(corpus.report))
    return iter(corpus)


def find_split(root: str | Path, split: str) -> Path:
    """The path of ``split`` under ``root``: a folder ``root/split`` or a file ``root/split.<ext>``.

    >>> find_split("ncbi_disease/conll", "devel")  # doctest: +SKIP
    PosixPath('ncbi_disease/conll/devel.tsv')
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError("no such data folder", path=root)
    candidates = [root / split] + [root / f"{split}{suffix}" for suffix in _SUFFIXES]
    for candidate in candidates:
        if candidate.exists():
            return candidate
        if os.path.lexists(candidate):  # a link: a loop or a dangling one, not "not found"
            check_readable(candidate)
    present = sorted(p.name for p in root.iterdir())[:20]
    raise DataError(f"split {split!r} not found (looked for {split}/ and {split}.<ext>); present: {present}", path=root)


def read_splits(
    root: str | Path, splits: Sequence[str] = ("train", "dev", "test"), format: str = "auto", **options: Any
) -> dict[str, Corpus]:
    """Read each split under ``root`` (see :func:`find_split`); a missing one is a DataError
    naming the path.

    >>> corpora = read_splits("quaero_frenchmed/corpus", format="brat")  # doctest: +SKIP
    >>> sorted(corpora)  # doctest: +SKIP
    ['dev', 'test', 'train']
    """
    paths = {split: find_split(root, split) for split in splits}  # fail before reading anything
    return {split: read_documents(path, format, **options) for split, path in paths.items()}
