"""Reading corpus files as text, strictly: one DataError naming the path for anything unreadable.

Shared by every reader of :mod:`medkit_exp.ner.formats`: a folder where a file is expected, a
symlink loop, a dangling link, a file we may not read and undecodable bytes are all
:class:`~medkit_exp.errors.DataError` naming the path (and the line, for bad bytes); line ends
``\\n``, ``\\r\\n`` and ``\\r`` are all line ends; a UTF-8 byte order mark is never part of the
first line; values quoted in messages are clipped so that one huge label cannot make a huge line.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from medkit_exp.errors import DataError

BOM = "\ufeff"
# What a value quoted in an error message may take at most (the message is one line).
CLIP_CHARS = 120
# A whole error line is cut here, whatever it quotes.
MAX_MESSAGE_CHARS = 1000
_LINE_END_RE = re.compile(r"\r\n|\r|\n")


def clip(value: object, limit: int = CLIP_CHARS) -> str:
    """``repr(value)``, cut with an ellipsis and the full length when longer than ``limit``.

    >>> clip("x" * 5)
    "'xxxxx'"
    >>> clip("y" * 1000, 10)
    "'yyyyyyyyy…' (1000 characters)"
    """
    if isinstance(value, str) and len(value) > limit:
        return f"{value[: limit - 1]!r}"[:-1] + f"…' ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}… ({len(text)} characters)"


def shorten(text: str, limit: int = CLIP_CHARS) -> str:
    """``text`` itself (no quotes added), cut with an ellipsis and its length when longer than ``limit``.

    >>> shorten("z" * 300, 5)
    'zzzz… (300 characters)'
    """
    return text if len(text) <= limit else f"{text[: limit - 1]}… ({len(text)} characters)"


def clip_message(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``message`` on one line of at most about ``limit`` characters (the end says how long it was).

    >>> clip_message("abc\\ndef")
    'abc def'
    """
    message = message.replace("\r", " ").replace("\n", " ")
    return message if len(message) <= limit else f"{message[: limit - 1]}… ({len(message)} characters)"


def split_lines(content: str) -> list[str]:
    """The lines of ``content``, cut at ``\\r\\n``, ``\\r`` or ``\\n`` (line ends removed).

    Only these three: ``str.splitlines`` also cuts at ``\\x1c``, ``\\u2028``... which no corpus
    format means as a line end. A final line end does not make an extra empty line.

    >>> split_lines("a\\r\\nb\\rc\\nd\\n")
    ['a', 'b', 'c', 'd']
    """
    lines = _LINE_END_RE.split(content)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def check_readable(path: Path, what: str = "file") -> None:
    """A DataError naming ``path`` unless it is a regular file (or a link to one) we may read."""
    if os.path.islink(path) and not path.exists():
        try:
            path.stat()
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise DataError("symlink loop (the link points back to itself)", path=path) from None
        raise DataError(f"dangling link to {os.readlink(path)!r} (its target does not exist)", path=path)
    if not path.exists():
        raise DataError("no such file or directory", path=path)
    if path.is_dir():
        raise DataError(f"expected a {what}, got a folder", path=path)
    if not path.is_file():
        raise DataError(f"expected a {what}, got a special file (device, pipe or socket)", path=path)


def read_text_file(path: str | Path, encoding: str = "utf-8", *, bom: str = "strip") -> str:
    """The exact content of a text file (no newline translation, so offsets match the bytes'
    characters), or a DataError naming the file (and the line of the first undecodable byte).

    ``bom``: what a leading UTF-8 byte order mark becomes: ``"strip"`` (removed: line-based
    formats) or ``"space"`` (one space, for BRAT texts whose offsets count it as a character).
    """
    path = Path(path)
    check_readable(path)
    try:
        raw = path.read_bytes()
    except PermissionError:
        raise DataError("permission denied (cannot read the file)", path=path) from None
    except OSError as error:
        raise DataError(f"cannot read the file: {error.strerror or error}", path=path) from None
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as error:
        line = len(split_lines(raw[: error.start].decode(encoding, errors="replace") + "x"))
        raise DataError(
            f"not valid {encoding} (byte {raw[error.start]:#04x} at offset {error.start}); "
            "convert the file or pass the right encoding",
            path=path,
            line=line,
        ) from None
    if text.startswith(BOM):
        text = (" " if bom == "space" else "") + text[1:]
    return text
