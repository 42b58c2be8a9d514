"""CoNLL / IOB column files: one ``token ... tag`` line per token, blank line between sentences.

The first column is the token and the last one the tag (tab-separated, or whitespace-separated
when the line has no tab). ``-DOCSTART-`` starts a new document. Documents are rebuilt as text
with exact offsets: tokens joined by one space, sentences by ``"\\n"``; each document keeps
``metadata["sentences"]`` and ``metadata["tokens"]`` (lists of ``(start, end)``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from medkit_exp.errors import DataError
from medkit_exp.ner.documents import (
    ERROR_MODES,
    Corpus,
    Entity,
    ReadReport,
    TextDocument,
    check_choice,
    fail,
    read_corpus_file,
)
from medkit_exp.ner.tagging import find_tag_errors, tags_to_chunks
from medkit_exp.ner.textfiles import BOM, clip, split_lines

logger = logging.getLogger(__name__)

CONLL_SCHEMES = ("auto", "iob1", "iob2", "bioes", "bilou")
WITHOUT_DOCSTART = ("sentence", "file")
_LETTERS = {"bilou": str.maketrans("ES", "LU"), "bioes": str.maketrans("LU", "ES")}


@dataclass
class _Sentence:
    tokens: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    bad: bool = False


def _parse_lines(content: str, path: Path, report: ReadReport, errors: str) -> list[list[_Sentence]]:
    """Documents (lists of sentences) as written, before any tag check."""
    documents: list[list[_Sentence]] = [[]]
    sentence = _Sentence()

    def close() -> None:
        nonlocal sentence
        if sentence.tokens and not sentence.bad:
            documents[-1].append(sentence)
        sentence = _Sentence()

    # \n, \r\n and \r all end a line (a file with \r only is not one line); the BOM is gone.
    for number, line in enumerate(split_lines(content), 1):
        if not line.strip():
            close()
            continue
        fields = line.strip().split("\t") if "\t" in line else line.split()
        if line.startswith(BOM):  # files joined with their BOMs: the line would start with a junk token
            fail(report, errors, "a byte order mark (U+FEFF) inside the file: files concatenated?", path, number)
            sentence.bad = True
            continue
        if fields[0] == "-DOCSTART-":
            close()
            documents.append([])
            continue
        if len(fields) < 2 or not fields[0] or not fields[-1]:
            fail(report, errors, f"expected a token and a tag column, got {clip(line)}", path, number)
            sentence.bad = True
            continue
        sentence.tokens.append(fields[0].strip())
        sentence.tags.append(fields[-1].strip())
        sentence.lines.append(number)
    close()
    return documents


def _scheme_errors(sentences: list[_Sentence], scheme: str) -> int:
    """How many tags of ``sentences`` break ``scheme`` (BIOES/BILOU: either letter set)."""
    table = _LETTERS.get(scheme)
    count = 0
    for sentence in sentences:
        tags = sentence.tags if table is None else [t.translate(table) if t[1:2] == "-" else t for t in sentence.tags]
        count += len(find_tag_errors(tags, scheme))
        if scheme == "iob1":  # true IOB1 writes B- only right after an entity of the same label
            count += sum(
                tag.startswith("B-") and (not index or tags[index - 1][2:] != tag[2:])
                for index, tag in enumerate(tags)
            )
    return count


def _detect_scheme(sentences: list[_Sentence]) -> str:
    """The scheme under which the fewest tags are wrong (ties: IOB2, BIOES/BILOU, IOB1), so that
    one stray ``E-X`` in an IOB2 file is reported on its own line as what it is, instead of turning
    the file into BIOES with every single-word ``B-X`` reported as unclosed; and one ``I-X`` after
    ``O`` in an IOB2 file (where entities start with ``B-`` after ``O``, which IOB1 never writes)
    is reported, instead of turning the file into IOB1."""
    prefixes = {tag[0] for sentence in sentences for tag in sentence.tags if tag[1:2] == "-"}
    closing = "bilou" if prefixes & set("LU") and not prefixes & set("ES") else "bioes"
    candidates = ["iob2"] + ([closing] if prefixes & set("ELSU") else []) + ["iob1"]
    errors = {scheme: _scheme_errors(sentences, scheme) for scheme in candidates}
    best = min(candidates, key=lambda scheme: errors[scheme])  # min keeps the first of equals
    if best == "iob1":
        logger.info("detected IOB1 tags (%d tags are not valid IOB2)", errors["iob2"])
    return best


def _check_tags(
    sentence: _Sentence, scheme: str, path: Path, report: ReadReport, errors: str, detected: bool = False
) -> bool:
    if scheme in _LETTERS:  # BIOES and BILOU name the same thing; accept both letter sets
        sentence.tags = [tag.translate(_LETTERS[scheme]) if tag[1:2] == "-" else tag for tag in sentence.tags]
    problems = find_tag_errors(sentence.tags, scheme)
    if problems:
        index, message = problems[0]
        if detected:
            message += f" (tagging scheme detected from the whole file: {scheme})"
        fail(
            report,
            errors,
            f"{message} (sentence left out)" if errors == "skip" else message,
            path,
            sentence.lines[index],
        )
    return not problems


def _build_document(sentences: list[_Sentence], scheme: str, doc_id: str, path: Path) -> TextDocument:
    pieces, sentence_spans, token_spans, entities = [], [], [], []
    offset = 0
    for sentence in sentences:
        if pieces:
            pieces.append("\n")
            offset += 1
        first_token = len(token_spans)
        sentence_start = offset
        for index, token in enumerate(sentence.tokens):
            if index:
                pieces.append(" ")
                offset += 1
            token_spans.append((offset, offset + len(token)))
            pieces.append(token)
            offset += len(token)
        sentence_spans.append((sentence_start, offset))
        for label, first, end in tags_to_chunks(sentence.tags, scheme):
            span = (token_spans[first_token + first][0], token_spans[first_token + end - 1][1])
            entities.append(Entity(label, [span]))
    metadata = {"path": str(path), "line": sentences[0].lines[0], "sentences": sentence_spans, "tokens": token_spans}
    return TextDocument("".join(pieces), entities, doc_id, metadata)


def read_conll(
    path: str | Path,
    *,
    scheme: str = "auto",
    without_docstart: str = "sentence",
    errors: str = "raise",
    encoding: str = "utf-8",
) -> Corpus:
    """Read a CoNLL/IOB file into documents with exact character offsets.

    ``scheme``: ``"iob1"``, ``"iob2"``, ``"bioes"``/``"bilou"`` (either letter set accepted) or
    ``"auto"`` (the scheme under which the fewest tags are wrong: IOB2 first, then BIOES/BILOU,
    then IOB1; noted in the report). Tags are checked exactly for the scheme: the prefix is one
    of its letters (``-X``, ``BI-X`` are errors), ``I-X`` after ``O`` is an error in IOB2, legal
    in IOB1. Lines end at ``\\n``, ``\\r\\n`` or ``\\r``; a leading BOM is dropped.
    ``without_docstart`` applies when the file has no ``-DOCSTART-`` line: ``"sentence"`` makes
    each sentence a document, ``"file"`` one document of the whole file. ``errors="skip"``
    leaves bad sentences out, listed in ``corpus.report.skipped`` (``"strict"`` is ``"raise"``
    here: nothing is only warned about). ``doc_id`` is ``<file stem>-<n>``.

    >>> corpus = read_conll("ncbi/conll/train.tsv")  # doctest: +SKIP
    >>> corpus[0].text, corpus[0].entities[0].text  # doctest: +SKIP
    ('Identification of APC2 , a homologue ...', 'adenomatous polyposis coli tumour')
    """
    check_choice("scheme", scheme, CONLL_SCHEMES)
    check_choice("without_docstart", without_docstart, WITHOUT_DOCSTART)
    check_choice("errors", errors, ERROR_MODES)
    path, content, report = read_corpus_file(path, "CoNLL", encoding)
    documents = _parse_lines(content, path, report, errors)
    has_docstart = len(documents) > 1
    sentences = [sentence for document in documents for sentence in document]
    if not sentences:
        raise DataError("no sentence found", path=path)
    detected = scheme == "auto"
    if detected:
        scheme = _detect_scheme(sentences)
        report.notes.append(f"tagging scheme detected: {scheme}")
    documents = [
        [s for s in document if _check_tags(s, scheme, path, report, errors, detected)] for document in documents
    ]
    if not has_docstart:
        documents = [[s] for s in documents[0]] if without_docstart == "sentence" else documents
    corpus = Corpus(report=report)
    for document in documents:
        if document:  # text before the first -DOCSTART-, or between two, may hold no sentence
            corpus.append(_build_document(document, scheme, f"{path.stem}-{len(corpus)}", path))
    report.documents = len(corpus)
    report.entities = sum(len(doc.entities) for doc in corpus)
    report.log()
    return corpus
