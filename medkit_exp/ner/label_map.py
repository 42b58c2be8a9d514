"""Label maps of pretrained token-classification heads.

A model that already tags (a tagger trained by medkit or medkit_exp, a NER model of the hub)
holds one classifier row per tag, in the order of its ``id2label``. Fine-tuning it on our tags
must keep each shared tag's row: relabelling the head in another order (what loading with a new
``id2label`` and ``ignore_mismatched_sizes`` does) silently swaps the entity types. Here:

- :func:`head_tags` reads the tags of a pretrained config (None when it names none);
- :func:`infer_scheme` / :func:`resolve_scheme` tell the tagging scheme from the tags;
- :func:`plan_label_map` decides, for each requested tag, the pretrained row it comes from;
- :func:`apply_label_map` builds the new head by copying those rows (weights and bias).

>>> pretrained = ["O", "B-test", "I-test", "B-drug", "I-drug"]
>>> plan = plan_label_map(pretrained, ["O", "B-problem", "I-problem", "B-test", "I-test"])
>>> plan.tags, plan.source_rows, plan.dropped
(['O', 'B-test', 'I-test', 'B-problem', 'I-problem'], [0, 1, 2, None, None], ['B-drug', 'I-drug'])
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medkit_exp.errors import ConfigError, DataError
from medkit_exp.ner.tagging import labels_of_tags

logger = logging.getLogger(__name__)

SCHEME_KEY = "component.tagging_scheme"
_DEFAULT_LABEL = re.compile(r"LABEL_\d+")
_PREFIXES = frozenset("BILUES")
_BIOES_TO_BILOU = {"E": "L", "S": "U"}  # BIOES is BILOU under other names: read it as BILOU
MAX_TAG_CHARS = 5000  # MLflow tag values are limited (8000 characters at most)


@dataclass(frozen=True)
class LabelMap:
    """The tags of a head in row order, and where each row comes from.

    ``source_rows[i]`` is the pretrained row that row ``i`` is copied from, None for a new row
    (freshly initialised); ``dropped`` are the pretrained tags no longer predicted; ``source``
    names the pretrained head ("" when the head is new).
    """

    tags: list[str]
    source_rows: list[int | None]
    dropped: list[str] = field(default_factory=list)
    source: str = ""

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.tags))

    @property
    def new_tags(self) -> list[str]:
        return [tag for tag, row in zip(self.tags, self.source_rows) if row is None]

    @property
    def kept_tags(self) -> list[str]:
        return [tag for tag, row in zip(self.tags, self.source_rows) if row is not None]

    def is_identity(self, nb_rows: int) -> bool:
        """True when the head of ``nb_rows`` rows is already this map (nothing to rebuild)."""
        return self.source_rows == list(range(nb_rows))

    def describe(self) -> str:
        """One line for the log and for MLflow: origin, then kept / new / dropped tags."""
        if not self.source:
            return f"new head of {len(self.tags)} tags"
        return (
            f"pretrained head of {self.source}: {len(self.kept_tags)} tags kept with their rows, "
            f"new: {self.new_tags or 'none'}, dropped: {self.dropped or 'none'}"
        )

    def mlflow_tags(self) -> dict[str, str]:
        """Run tags recording the map: ``tagger.label_map`` (the tags in row order, space
        separated) and ``tagger.label_map_origin``; values cut at :data:`MAX_TAG_CHARS`, saying so."""
        values = {"tagger.label_map": " ".join(self.tags), "tagger.label_map_origin": self.describe()}
        return {key: _cut(value) for key, value in values.items()}


def _cut(value: str) -> str:
    if len(value) <= MAX_TAG_CHARS:
        return value
    note = " ... (cut: the full map is the id2label of the checkpoint's config.json)"
    return value[: MAX_TAG_CHARS - len(note)] + note


def head_tags(config: Any) -> list[str] | None:
    """The tags of a pretrained token-classification config in row order; None when it names no
    tag: no ``id2label``, Hugging Face's default ``LABEL_0, LABEL_1...``, or an architecture that
    is not a token classifier (a sequence classifier's labels are classes, not tags)."""
    id2label: Mapping[Any, Any] = getattr(config, "id2label", None) or {}
    if not id2label:
        return None
    tags = [str(id2label[key]) for key in sorted(id2label, key=int)]
    if all(_DEFAULT_LABEL.fullmatch(tag) for tag in tags):
        return None
    architectures = getattr(config, "architectures", None) or []
    if architectures and not any(name.endswith("ForTokenClassification") for name in architectures):
        logger.info("The labels of %s's head (%s) are not tags: a new head is built", architectures[0], tags[:5])
        return None
    return tags


def split_prefix(tag: str) -> tuple[str, str] | None:
    """``"B-DRUG-NAME"`` -> ``("B", "DRUG-NAME")``; None for a tag of no known scheme."""
    prefix, sep, label = tag.partition("-")
    if not sep or not label or prefix not in _PREFIXES or len(prefix) != 1:
        return None
    return prefix, label


def infer_scheme(tags: Sequence[str], where: str | Path) -> str | None:
    """``"iob2"`` for B-/I- tags, ``"bilou"`` for B-/I-/L-/U- (or BIOES's E-/S-) ones, None
    when there is no entity tag; a DataError naming ``where`` for tags of no known scheme."""
    entity_tags = [tag for tag in tags if tag != "O"]
    unknown = [tag for tag in entity_tags if split_prefix(tag) is None]
    if unknown:
        raise DataError(
            f"the model's tags {unknown[:8]} are of no known tagging scheme (expected O and tags with "
            "B-/I- (iob2), B-/I-/L-/U- (bilou) or B-/I-/E-/S- (bioes) prefixes)", path=where,
        )
    prefixes = {split_prefix(tag)[0] for tag in entity_tags}  # type: ignore[index]
    if prefixes & set("LU") and prefixes & set("ES"):
        raise DataError(f"the model's tags mix BILOU (L-/U-) and BIOES (E-/S-) prefixes: {sorted(tags)}", path=where)
    if not prefixes:
        return None
    return "bilou" if prefixes & set("LUES") else "iob2"


def as_bilou_names(tags: Sequence[str], where: str | Path) -> list[str]:
    """The tags with BIOES's E-/S- renamed L-/U- (the same roles), said in a warning."""
    renamed = []
    for tag in tags:
        parts = split_prefix(tag) if tag != "O" else None
        renamed.append(f"{_BIOES_TO_BILOU[parts[0]]}-{parts[1]}" if parts and parts[0] in _BIOES_TO_BILOU else tag)
    if renamed != list(tags):
        logger.warning("The model in %s tags with BIOES: its E-/S- tags are read as BILOU's L-/U-", where)
    return renamed


def resolve_scheme(given: str | None, tags: Sequence[str], where: str | Path) -> str:
    """The tagging scheme of a tagger built on a head with ``tags``: ``given`` when the tags agree
    with it, the tags' own scheme when ``given`` is None (iob2 when they have no entity tag); a
    ConfigError on ``component.tagging_scheme`` when they contradict it."""
    inferred = infer_scheme(tags, where)
    if given is None:
        return inferred or "iob2"
    if inferred is not None and inferred != given:
        examples = [tag for tag in tags if tag != "O"][:6]
        raise ConfigError(
            SCHEME_KEY, f"{given}, but the model in {where} tags with {inferred} ({', '.join(examples)}...): "
            f"set {SCHEME_KEY}={inferred}, or null to take the model's scheme",
        )
    return given


def plan_label_map(pretrained: Sequence[str], requested: Sequence[str], source: str = "") -> LabelMap:
    """The head for the ``requested`` tags on a pretrained head of ``pretrained`` tags (row order).

    "O" comes first (predict and the metrics take row 0 as "O"), then the kept tags in their
    pretrained order, then the new ones in requested order; pretrained tags not requested are
    ``dropped``. Duplicate pretrained tags are a DataError (which row would be the tag's?).
    """
    duplicates = sorted({tag for tag in pretrained if list(pretrained).count(tag) > 1})
    if duplicates:
        raise DataError(f"the model's id2label names {duplicates} more than once", path=source or None)
    row_of = {tag: row for row, tag in enumerate(pretrained)}
    wanted = set(requested)
    order = [tag for tag in requested if tag == "O"]
    order += [tag for tag in pretrained if tag in wanted and tag != "O"]
    order += [tag for tag in requested if tag not in row_of and tag != "O"]
    dropped = [tag for tag in pretrained if tag not in wanted]
    return LabelMap(order, [row_of.get(tag) for tag in order], dropped, source)


def new_label_map(tags: Sequence[str]) -> LabelMap:
    """The map of a freshly initialised head."""
    return LabelMap(list(tags), [None] * len(tags))


def find_head(model: Any) -> tuple[str, Any]:
    """``(name, module)`` of the model's classification layer: the one ``torch.nn.Linear`` outside
    the base model whose outputs are the labels. A ConfigError when there is none or several."""
    import torch

    prefix = getattr(model, "base_model_prefix", "") or "\0"
    nb_labels = model.config.num_labels
    heads = [
        (name, module) for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module.out_features == nb_labels
        and name.split(".")[0] != prefix
    ]
    if len(heads) != 1:
        raise ConfigError(
            "component.model_name_or_path", f"cannot tell the classification layer of {type(model).__name__} "
            f"(linear layers with {nb_labels} outputs outside the encoder: {[n for n, _ in heads]})",
        )
    return heads[0]


def apply_label_map(model: Any, plan: LabelMap) -> None:
    """Give ``model`` the head of ``plan``: a new linear layer whose rows (weight and bias) are
    copies of the pretrained rows of the kept tags, new rows initialised by the model's own
    initialiser (as Hugging Face initialises a new head); the config takes the new id2label."""
    import torch

    name, old = find_head(model)
    if not plan.is_identity(old.out_features):
        new = torch.nn.Linear(old.in_features, len(plan.tags), bias=old.bias is not None)
        new.to(device=old.weight.device, dtype=old.weight.dtype)
        with torch.no_grad():
            model._init_weights(new)
            for row, source_row in enumerate(plan.source_rows):
                if source_row is not None:
                    new.weight[row] = old.weight[source_row]
                    if old.bias is not None:
                        new.bias[row] = old.bias[source_row]
        parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        setattr(parent, name.rpartition(".")[2], new)
    model.config.id2label = plan.id2label
    model.config.label2id = {tag: row for row, tag in plan.id2label.items()}
    if hasattr(model, "num_labels"):
        model.num_labels = len(plan.tags)


def labels_of_model_folder(path: str | Path, settings_file: str) -> tuple[list[str], str]:
    """Labels and scheme of a token-classification folder without the tagger's ``settings_file``,
    read from its ``id2label`` (said in a warning); a DataError naming the folder otherwise."""
    from transformers import AutoConfig

    try:
        tags = head_tags(AutoConfig.from_pretrained(str(path)))
    except (OSError, ValueError) as error:
        raise DataError(f"not a tagger folder (no {settings_file}) nor a readable model: {error}", path=path) from error
    if tags is None:
        raise DataError(f"no {settings_file} and no tags in the config's id2label: not a token classifier", path=path)
    scheme = infer_scheme(tags, path)
    if scheme is None:
        raise DataError(f"the model's id2label has no entity tag: {tags}", path=path)
    labels = labels_of_tags(tags)
    logger.warning(
        "No %s in %s: labels %s and tagging scheme %s inferred from the model's id2label "
        "(tag_subtokens false, windows of the model's length)", settings_file, path, labels, scheme,
    )
    return labels, scheme


def head_was_loaded(model: Any, info: dict[str, Any]) -> bool:
    """Whether the classification layer's weights came from the checkpoint (neither missing nor
    re-initialised for a size mismatch)."""
    name, _ = find_head(model)
    mismatched = {entry[0] if isinstance(entry, (tuple, list)) else entry for entry in info.get("mismatched_keys", ())}
    absent = set(info.get("missing_keys", ())) | mismatched
    return not any(key == f"{name}.weight" or key.endswith(f".{name}.weight") for key in absent)
