"""A tagger of nested and overlapping entities: stacked tag layers by nesting depth.

>>> tagger = NestedEntityTagger(default_encoder(), labels=["DISO", "ANAT"], nesting_depth=3)  # doctest: +SKIP
>>> Trainer(tagger, config, train_docs, dev_docs, tagger.make_metrics_computer()).train()     # doctest: +SKIP

Each word gets one tag per layer (:mod:`medkit_exp.ner.nesting`). With ``layer_order="inner_first"``
(the default) layer 0 holds the entities that hold no other, layer 1 those holding layer-0 ones,
etc., so an entity has the same target alone or nested ("cancers" inside "cancers colorectaux"
is in layer 0 as when it stands alone); with ``"outer_first"`` layer 0 holds the outermost
entities, layer 1 those inside them. The same words under two labels take two layers. The
head predicts ``nesting_depth`` tag sequences at once: ``depth x C`` outputs (C = the tags of one
layer, as the flat tagger's), one softmax per layer, and the loss is the cross-entropy over every
labelled (sub-token, layer) pair. Predictions decode each layer strictly and take the union,
so entities may overlap (same label or not). Discontinuous entities are never expressed exactly
(whatever the data policy left of them: filled or dropped).

The saved folder is a standard Hugging Face token-classification model whose ``id2label``
names each output ``L<layer>:<tag>`` (``L0:B-DISO``, ..., ``L1:B-DISO``, ...), in layer order;
``medkit_exp_tagger.json`` holds ``nesting_depth`` so that
:meth:`HFEntityMatcherTrainable.from_pretrained <medkit_exp.ner.tagger.HFEntityMatcherTrainable.from_pretrained>`
hands the folder to :meth:`NestedEntityTagger.from_pretrained`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch

from medkit_exp.errors import ConfigError, DataError
from medkit_exp.ner.documents import Entity, TextDocument
from medkit_exp.ner.encoding import IGNORE_INDEX, Window
from medkit_exp.ner.label_map import (
    LabelMap, apply_label_map, head_tags, head_was_loaded, new_label_map, resolve_scheme,
)
from medkit_exp.ner.nesting import LAYER_ORDERS, NestingReport, layered_tags, layered_tags_to_spans
from medkit_exp.ner.tagger import HFEntityMatcherTrainable
from medkit_exp.ner.tagger_files import TAGGER_CONFIG, check_saved_model, damaged_files_named, read_tagger_settings
from medkit_exp.ner.tagging import make_tag_labels, tokenize_words
from medkit_exp.training.batch import BatchData

logger = logging.getLogger(__name__)

MIN_DEPTH = 2
DEFAULT_DEPTH = 3
_LAYER_TAG = re.compile(r"L(\d+):(.+)")


def layer_tag_names(tags: list[str], depth: int) -> list[str]:
    """The head's output names: every tag of one layer, for each layer in turn.

    >>> layer_tag_names(["O", "B-X", "I-X"], 2)
    ['L0:O', 'L0:B-X', 'L0:I-X', 'L1:O', 'L1:B-X', 'L1:I-X']
    """
    return [f"L{layer}:{tag}" for layer in range(depth) for tag in tags]


def parse_layer_tags(names: list[str]) -> tuple[int, list[str]] | None:
    """``(depth, tags of one layer)`` of a nested head's output names; None when the names are
    not those of :func:`layer_tag_names` (a flat head, another layout)."""
    parsed = [_LAYER_TAG.fullmatch(name) for name in names]
    if not names or not all(parsed):
        return None
    layers = [int(match.group(1)) for match in parsed]  # type: ignore[union-attr]
    depth = max(layers) + 1
    tags = [match.group(2) for match, layer in zip(parsed, layers) if layer == 0]  # type: ignore[union-attr]
    return (depth, tags) if names == layer_tag_names(tags, depth) else None


def check_nested_options(nesting_depth: Any, tag_subtokens: Any, prefix: str = "", layer_order: Any = "inner_first") -> None:
    """The options only the nested tagger has, or refuses: a ConfigError naming ``prefix + key``
    (the composition check calls it with ``"component."``, before any data is read)."""
    if isinstance(nesting_depth, bool) or not isinstance(nesting_depth, int) or nesting_depth < MIN_DEPTH:
        raise ConfigError(
            f"{prefix}nesting_depth",
            f"must be an integer >= {MIN_DEPTH} (1 layer is the flat tagger); got {nesting_depth!r}",
        )
    if layer_order not in LAYER_ORDERS:
        raise ConfigError(f"{prefix}layer_order", f"must be one of {', '.join(LAYER_ORDERS)}; got {layer_order!r}")
    if tag_subtokens:
        raise ConfigError(
            f"{prefix}tag_subtokens", "the nested tagger tags each word's first sub-token only; set it to false"
        )


class NestedEntityTagger(HFEntityMatcherTrainable):
    """:class:`~medkit_exp.ner.tagger.HFEntityMatcherTrainable` with ``nesting_depth`` tag layers.

    Parameters are the flat tagger's, plus ``nesting_depth`` (>= 2): the layers, i.e. the
    deepest nesting it can express (an entity deeper than that is dropped from the training
    targets and counted in :attr:`report`), and ``layer_order`` ("inner_first" or
    "outer_first", see the module doc; inner_first measured better on QUAERO). ``tag_subtokens=True`` is refused: the layers are
    tagged on each word's first sub-token only.

    A pretrained head is reused only when it is this tagger's own (the same layers and tags);
    any other (e.g. a flat NER head) is replaced by a new one, said in the log. :attr:`tag_list`,
    :attr:`label_to_id` and :attr:`id_to_label` are the C tags of one layer; :attr:`label_map`
    names the head's ``depth x C`` rows.
    """

    def __init__(
        self,
        model_name_or_path: str | Path,
        labels: list[str],
        tagging_scheme: str | None = None,
        tag_subtokens: bool = False,
        tokenizer_max_length: int | None = None,
        hf_auth_token: str | None = None,
        device: int = -1,
        stride: int | None = None,
        unknown_labels: str = "error",
        pad_to_multiple_of: int | str | None = "auto",
        nesting_depth: int = DEFAULT_DEPTH,
        layer_order: str = "inner_first",
    ):
        check_nested_options(nesting_depth, tag_subtokens, layer_order=layer_order)
        self.nesting_depth = nesting_depth  # before the model loads: the head's size depends on it
        self.layer_order = layer_order
        super().__init__(model_name_or_path, labels, tagging_scheme, tag_subtokens, tokenizer_max_length,
                         hf_auth_token, device, stride, unknown_labels, pad_to_multiple_of)
        self.report: NestingReport = NestingReport()

    # ------------------------------------------------------------------ TrainableComponent
    def forward(
        self, input_batch: BatchData, return_loss: bool, eval_mode: bool
    ) -> tuple[BatchData, torch.Tensor | None]:
        """Logits [B, T, depth x C]; the loss is the mean cross-entropy over every labelled
        (position, layer) pair, each layer a softmax over its own C tags."""
        self.model.train(not eval_mode)
        output = self.model(input_ids=input_batch["input_ids"], attention_mask=input_batch["attention_mask"])
        logits = output.logits
        loss = None
        if return_loss:
            per_layer = logits.unflatten(-1, (self.nesting_depth, len(self.tag_list)))
            loss = torch.nn.functional.cross_entropy(
                per_layer.flatten(0, 2).float(), input_batch["labels"].flatten(), ignore_index=IGNORE_INDEX
            )
        return BatchData(logits=logits), loss

    # nb_loss_terms is the base's: labels != -100 over [B, T, depth] counts the (position, layer) terms.

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "nesting_depth": self.nesting_depth, "layer_order": self.layer_order}

    def make_metrics_computer(self) -> Any:
        """A :class:`~medkit_exp.ner.nested_metrics.NestedMetricsComputer` for this tagger's layers
        (scoring against the annotated entities when the flat tagger's computer would)."""
        from medkit_exp.ner.nested_metrics import NestedMetricsComputer

        flat = super().make_metrics_computer()
        return NestedMetricsComputer(self.id_to_label, self.tagging_scheme, self.nesting_depth,
                                     annotated=bool(getattr(flat, "annotated", False)))

    def expressible_entities(self, document: TextDocument) -> list[Entity]:
        """The document's entities of the tagger's labels through the layers and back (the
        ceiling's numerator, see :mod:`medkit_exp.ner.representation`)."""
        words = tokenize_words(document.text)
        entities = [entity for entity in document.entities if entity.label in self.labels]
        tags = layered_tags(words, entities, self.nesting_depth, self.tagging_scheme, order=self.layer_order)
        return layered_tags_to_spans(words, tags, self.tagging_scheme, text=document.text)

    def collate_windows(self, windows: list[dict[str, Any]], with_labels: bool) -> BatchData:
        """The flat tagger's batch (its padding, ``eval_mask``), with labels [B, T, depth]."""
        batch = super().collate_windows(windows, with_labels=False)
        if with_labels:
            rows, longest = batch["input_ids"].shape
            labels = torch.full((rows, longest, self.nesting_depth), IGNORE_INDEX, dtype=torch.long)
            for row, window in enumerate(windows):
                labels[row, : len(window["labels"])] = torch.tensor(window["labels"], dtype=torch.long).view(
                    -1, self.nesting_depth
                )
            batch["labels"] = labels
        return batch

    # ------------------------------------------------------------------ internals
    def _word_tags(self, words: list[Any], entities: list[Entity]) -> list[Any]:
        """Each word's tags, one per layer. The first entity dropped as deeper than the layers is
        said in a warning; every one is counted in :attr:`report` (``too_deep_dropped``)."""
        before = self.report.too_deep_dropped
        tags = layered_tags(words, entities, self.nesting_depth, self.tagging_scheme, self.report, self.layer_order)
        if before == 0 and self.report.too_deep_dropped:
            logger.warning(
                "An entity nested deeper than nesting_depth=%d is dropped from the training targets (others are "
                "counted in the tagger's report, too_deep_dropped); a larger nesting_depth keeps them",
                self.nesting_depth,
            )
        return tags

    def _window_features(self, window: Window, word_tags: list[Any]) -> dict[str, Any]:
        """Model inputs; ``labels`` one row of ``depth`` tag ids per sub-token, on each word's
        first sub-token (the others -100)."""
        inputs = self.window_inputs(window)
        labels = [[IGNORE_INDEX] * self.nesting_depth for _ in inputs["input_ids"]]
        offset = inputs["offset"]
        for position, word in enumerate(window.word_ids):
            if position == 0 or window.word_ids[position - 1] != word:
                labels[offset + position] = [self.label_to_id[tag] for tag in word_tags[word]]
        return {"input_ids": inputs["input_ids"], "labels": labels, "eval_mask": inputs["eval_mask"]}

    def _load_model(self, source: str | Path, pretrained: Any, new_head: bool) -> Any:
        """The model of ``source`` with this tagger's layered head: the folder's own when it is
        one of the same layers and tags, else a new one (a DataError when loading a checkpoint)."""
        from transformers import AutoModelForTokenClassification

        names = head_tags(pretrained)
        layered = parse_layer_tags(names) if names else None
        if layered is not None:
            self.tagging_scheme = resolve_scheme(self.tagging_scheme, layered[1], source)
        else:
            self.tagging_scheme = self.tagging_scheme or "iob2"
        wanted = layer_tag_names(make_tag_labels(self.labels, self.tagging_scheme), self.nesting_depth)
        if names == wanted:
            model, info = AutoModelForTokenClassification.from_pretrained(
                str(source), config=pretrained, token=self._hf_auth_token, output_loading_info=True
            )
            if head_was_loaded(model, info):
                self._set_layer_map(LabelMap(wanted, list(range(len(wanted))), source=str(source)), log=new_head)
                return model
            logger.warning("%s names its tags but holds no weights for its head: the head is new", source)
        if not new_head:
            raise DataError(
                f"the checkpoint's head is not this nested tagger's ({len(wanted)} outputs {wanted[:4]}...)", path=source
            )
        if names:
            logger.warning("The head of %s (%d tags: %s...) is not reused: the nested tagger's head is new "
                           "(%d layers x %d tags)", source, len(names), names[:4], self.nesting_depth,
                           len(wanted) // self.nesting_depth)
        return self._fresh_layered_model(source, wanted)

    def _fresh_layered_model(self, source: str | Path, names: list[str]) -> Any:
        """The encoder of ``source`` under a freshly initialised head of ``names``."""
        from transformers import AutoConfig, AutoModelForTokenClassification

        plan = new_label_map(names)
        config = AutoConfig.from_pretrained(
            str(source), num_labels=len(names), id2label=plan.id2label,
            label2id={tag: row for row, tag in plan.id2label.items()}, token=self._hf_auth_token,
        )
        model, info = AutoModelForTokenClassification.from_pretrained(
            str(source), config=config, token=self._hf_auth_token, ignore_mismatched_sizes=True,
            output_loading_info=True,
        )
        if head_was_loaded(model, info):  # another head of the same size: its rows mean other tags
            apply_label_map(model, plan)
        self._set_layer_map(plan, log=True)
        return model

    def _set_layer_map(self, plan: LabelMap, log: bool) -> None:
        """:attr:`label_map` names the head's rows; the tag ids are those of one layer."""
        previous: LabelMap | None = getattr(self, "label_map", None)
        if not log and previous is not None and previous.tags == plan.tags:
            plan = previous  # a reload of the tagger's own checkpoint: the map's origin stays the first load's
        self.label_map = plan
        depth = self.nesting_depth
        self.tag_list = [name.partition(":")[2] for name in plan.tags[: len(plan.tags) // depth]]
        self.label_to_id = {tag: index for index, tag in enumerate(self.tag_list)}
        self.id_to_label = dict(enumerate(self.tag_list))
        if log:
            logger.info("Label map (%s, %d layers): %s", plan.describe(), depth, self.id_to_label)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: int = -1) -> NestedEntityTagger:
        """A nested tagger saved by :meth:`save` (its settings read from ``medkit_exp_tagger.json``)."""
        folder = Path(path)
        check_saved_model(folder)
        settings_path = folder / TAGGER_CONFIG
        if not settings_path.is_file():
            raise DataError(f"no {TAGGER_CONFIG}: not a nested tagger's folder", path=folder)
        with damaged_files_named(folder):
            settings = read_tagger_settings(settings_path)
            if not settings.get("nesting_depth"):
                raise DataError(f"{TAGGER_CONFIG} has no nesting_depth: a flat tagger's folder", path=folder)
            tagger = cls(folder, settings["labels"], settings["tagging_scheme"], settings["tag_subtokens"],
                         settings["tokenizer_max_length"], device=device, stride=settings["stride"],
                         nesting_depth=settings["nesting_depth"],
                         layer_order=settings.get("layer_order", "outer_first"))  # folders saved before the option
        if tagger.label_map.new_tags:  # untrained rows would predict at random
            raise DataError(f"the model has no trained row for the tags {tagger.label_map.new_tags[:6]}", path=folder)
        return tagger
