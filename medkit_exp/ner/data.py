"""Loading a corpus as the ``data`` config describes it: read, label policies, split, flatten, report.

Each loaded document keeps its entities as annotated (``TextDocument.annotated``) beside the
flattened ones the tagger learns (``entities``), for the scores against the documents as annotated.

>>> splits = load_corpus(NERDataConfig())  # the embedded demo corpus             # doctest: +SKIP
>>> len(splits["train"]), sorted(splits)                                         # doctest: +SKIP
(327, ['dev', 'train'])
"""

from __future__ import annotations

import os

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medkit_exp.errors import ConfigError, DataError
from medkit_exp.ner.documents import ERROR_MODES, TextDocument
from medkit_exp.ner.formats import FORMATS, find_split, read_documents
from medkit_exp.ner.policies import DISCONTINUOUS_POLICIES, OVERLAP_POLICIES, apply_policies, flatten_documents
from medkit_exp.ner.splitting import split_documents
from medkit_exp.ner.textfiles import check_readable

logger = logging.getLogger(__name__)

SPLIT_MODES = ("sentences", "none")


@dataclass
class NERDataConfig:
    """Schema of the ``data`` config group.

    ``path`` is the corpus folder (None: the embedded demo corpus), relative to ``data_dir``
    when that is given (the real corpora); ``train``/``dev``/``test``
    name the splits under it (a folder or a file, see ``find_split``; None: absent).

    Parameters
    ----------
    name: the corpus name (in logs, MLflow dataset names and tags).
    format: "brat", "conll", "jsonl", "medkit_json" or "auto" (from the file names).
    path: the corpus folder; null: the embedded demo corpus.
    data_dir: the folder ``path`` is relative to (``paths.data_dir``).
    train: the training split under ``path`` (a folder or a file).
    dev: the evaluation split; null: no evaluation during training.
    test: the test split (for ``python -m medkit_exp.evaluate split=test``); null: none.
    labels: the entity labels the tagger learns; a corpus label outside them (after ``label_map``) is an error.
    label_map: rename labels before filtering, e.g. ``{Disease: DISO}``.
    split: "sentences": documents are cut into sentences (offsets kept); "none": whole documents.
    nested: nested or overlapping entities: "keep_longest" (the outer one), "keep_first", "error", or
        "keep" (every entity: for a nested tagger; a flat tagger refuses it).
    discontinuous: discontinuous entities: "fill" (one span over the gaps), "drop" or "keep".
    errors: "raise" stops at bad input naming file and line; "skip" leaves it out and logs it;
        "strict" also stops at files not read (backups, a .txt without .ann: else WARNINGs with counts).
    max_documents: keep only the first N documents of each split (smoke tests).
    """

    name: str = "demo"
    format: str = "brat"
    path: str | None = None
    data_dir: str | None = None
    train: str = "train"
    dev: str | None = "dev"
    test: str | None = None
    labels: list[str] = field(default_factory=lambda: ["problem", "treatment", "test"])
    label_map: dict[str, str] = field(default_factory=dict)
    split: str = "sentences"
    nested: str = "keep_longest"
    discontinuous: str = "fill"
    errors: str = "raise"
    max_documents: int | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid key (``data.*``) and what is allowed."""
        from medkit_exp.training.config import check_choice, check_number

        for key in ("name", "train"):
            _text(f"data.{key}", getattr(self, key))
        for key in ("path", "dev", "test"):
            if getattr(self, key) is not None:
                _text(f"data.{key}", getattr(self, key))
        check_choice("data.format", self.format, FORMATS)
        check_choice("data.split", self.split, SPLIT_MODES)
        check_choice("data.nested", self.nested, OVERLAP_POLICIES)
        check_choice("data.discontinuous", self.discontinuous, DISCONTINUOUS_POLICIES)
        check_choice("data.errors", self.errors, ERROR_MODES)
        if self.max_documents is not None:
            check_number("data.max_documents", self.max_documents, 1, integer=True)
        _labels("data.labels", self.labels)
        for source, target in dict(self.label_map).items():
            _text(f"data.label_map.{source}", target)


def _text(key: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, f"must be a non-empty text, got {value!r}")


def _labels(key: str, labels: object) -> None:
    """A non-empty list of distinct labels, each a word (BRAT labels hold no whitespace)."""
    if isinstance(labels, str) or not isinstance(labels, Sequence) or not labels:
        raise ConfigError(key, f"must be a non-empty list of labels, got {labels!r}")
    for label in labels:
        if not isinstance(label, str) or not label or any(c.isspace() for c in label):
            raise ConfigError(key, f"a label must be a non-empty word without spaces, got {label!r}")
    duplicates = sorted({label for label in labels if list(labels).count(label) > 1})
    if duplicates:
        raise ConfigError(key, f"each label once: {', '.join(duplicates)} repeated")


def corpus_root(config: NERDataConfig) -> Path:
    """The corpus folder, failing clearly when a real corpus location is not configured."""
    if config.path is None:
        from medkit_exp.ner import demo_corpus_dir

        return Path(demo_corpus_dir())
    root = Path(config.path)
    data_dir = config.data_dir or None  # an empty MEDKIT_EXP_DATA_DIR counts as unset
    if not root.is_absolute() and data_dir is None and not root.exists():
        raise ConfigError(
            "paths.data_dir",
            f"the {config.name} corpus ({config.path}) needs the folder of the shared corpora: set "
            "paths.data_dir=/path/to/shared/data or the environment variable MEDKIT_EXP_DATA_DIR",
        )
    if not root.is_absolute() and data_dir is not None:
        root = Path(data_dir) / root
    if os.path.lexists(root) and not root.exists():
        check_readable(root, "corpus folder")  # a symlink loop or dangling link, named as such
    if not root.is_dir():
        raise DataError(f"corpus folder of {config.name} not found (config key data.path)", path=root)
    return root


def load_corpus(config: NERDataConfig, only: Sequence[str] | None = None) -> dict[str, list[TextDocument]]:
    """The configured splits (or the ``only`` ones, e.g. ``["test"]``), each read, then: label
    policies (``label_map``, ``labels``); split into sentences when ``split="sentences"`` (no cut
    inside any annotated entity); the ``discontinuous`` and ``nested`` policies per (sub-)document.
    Each document's ``entities`` are what the tagger learns, its ``annotated`` the entities before
    those two policies (nesting, overlaps and discontinuity intact) that honest scores count.
    The policies' report is logged once per split."""
    if config.split not in SPLIT_MODES:
        raise ConfigError("data.split", f"must be one of {', '.join(SPLIT_MODES)}; got {config.split!r}")
    wanted = {name: getattr(config, name) for name in ("train", "dev", "test") if getattr(config, name)}
    for name in only or ():
        if name not in wanted:
            raise ConfigError(f"data.{name}", f"the {config.name} data config has no {name!r} split; name one with data.{name}=PATH")
    if only is not None:
        wanted = {name: wanted[name] for name in only}
    root = corpus_root(config)
    paths = {name: find_split(root, split) for name, split in wanted.items()}  # all missing splits fail first
    splits = {}
    for name, path in paths.items():
        corpus = read_documents(path, config.format, errors=config.errors)
        splits[name] = _prepare_split(config, name, path, corpus)
    return splits


def _prepare_split(config: NERDataConfig, name: str, path: Path, corpus: Sequence[TextDocument]) -> list[TextDocument]:
    """One split's documents: label policies, sentence split, flattening policies, limits."""
    # Labels first, nothing flattened: the sentence splitter sees every entity as annotated
    # (nested, overlapping, discontinuous), so that no cut falls inside any of them.
    documents, report = apply_policies(
        corpus, label_map=config.label_map, labels=config.labels,
        discontinuous="keep", overlaps="keep", log=False,
    )
    if config.split == "sentences":
        documents, _ = split_documents(documents, mode="sentence")  # logs its own report
    # Then per (sub-)document what makes entities fit the tagger; each keeps its entities as
    # annotated beside them, for the scores against the documents as annotated.
    documents = flatten_documents(
        documents, discontinuous=config.discontinuous, overlaps=config.nested, report=report
    )
    report.log()  # once per split: labels, discontinuous, overlaps, annotated kept
    documents = [doc for doc in documents if doc.text.strip()]
    if config.max_documents is not None:
        documents = documents[: config.max_documents]
    if not documents:
        raise DataError(f"split {name!r} holds no document", path=path)
    logger.info(
        "%s/%s: %d documents, %d entities (%d as annotated) (from %s)",
        config.name, name, len(documents), sum(len(d.entities) for d in documents),
        sum(len(d.annotated_entities) for d in documents), path,
    )
    return documents
