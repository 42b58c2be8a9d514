"""Entity metrics of a nested tagger (stacked tag layers, see :mod:`medkit_exp.ner.nesting`).

The same metrics, names and rules as :class:`~medkit_exp.ner.metrics.EntityMetricsComputer`
(strict decoding, exact chunks); only the tags differ: each scored position carries one tag per
layer, written as one string joining the layers with ``|`` (``"B-DISO|B-DISO|O"``), and an item
decodes to the union of its layers' chunks, which may overlap. A nested entity predicted flat
(its inner one missing) is thus a miss.

>>> computer = NestedMetricsComputer(["O", "B-DISO", "I-DISO"], nesting_depth=2)
>>> gold = [["B-DISO|B-DISO", "I-DISO|O"]]
>>> computer.compute({"references": gold, "predictions": [["B-DISO|O", "I-DISO|O"]]})["recall"]
0.5
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from medkit_exp.errors import ConfigError
from medkit_exp.ner.metrics import IGNORE_INDEX, EntityMetricsComputer
from medkit_exp.ner.nesting import layers_to_chunks

#: What joins a position's layer tags into one tag string.
LAYER_SEPARATOR = "|"


class NestedMetricsComputer(EntityMetricsComputer):
    """Strict entity metrics from layered logits [B, T, depth x C] and labels [B, T, depth].

    ``id2label`` are the C tags of one layer (every layer has the same); logits hold the layers
    one after the other (row ``layer * C + tag``), as the nested tagger's head. Positions are
    scored where ``eval_mask`` is True (else where layer 0's label is not -100).

    It records nothing for the dev report (:meth:`start_recording` is a no-op): the report of a
    nested tagger predicts the dev documents again.
    """

    def __init__(
        self, id2label: Mapping[int, str] | Sequence[str], tagging_scheme: str = "iob2", nesting_depth: int = 3,
        annotated: bool = False,
    ):
        super().__init__(id2label, tagging_scheme, annotated=annotated)
        if isinstance(nesting_depth, bool) or not isinstance(nesting_depth, int) or nesting_depth < 1:
            raise ConfigError("nesting_depth", f"must be an integer >= 1, got {nesting_depth!r}")
        clashing = [tag for tag in self.id2label.values() if LAYER_SEPARATOR in tag]
        if clashing:
            raise ConfigError(
                "labels", f"a label holds {LAYER_SEPARATOR!r}, which joins the layers' tags: {clashing[:3]}"
            )
        self.nesting_depth = nesting_depth

    def start_recording(self) -> None:
        """Nothing is recorded (see the class doc): :meth:`take_recording` returns None."""
        self._recording = None

    def prepare_tags(
        self, model_output: Mapping[str, Any], input_batch: Mapping[str, Any]
    ) -> dict[str, list[list[str]]]:
        """Joined layer tags of the scored positions of each item: ``{"references", "predictions"}``."""
        logits, labels = model_output["logits"], input_batch["labels"]
        depth, nb_tags = self.nesting_depth, len(self.id2label)
        if labels.dim() != 3 or labels.shape[-1] != depth:
            raise ValueError(f"labels {tuple(labels.shape)} are not [B, T, {depth}] (one tag per layer)")
        if logits.dim() != 3 or tuple(logits.shape) != (*labels.shape[:2], depth * nb_tags):
            raise ValueError(
                f"logits {tuple(logits.shape)} do not match labels {tuple(labels.shape)} "
                f"([B, T, {depth} x {nb_tags}] vs [B, T, {depth}])"
            )
        predicted = logits.unflatten(-1, (depth, nb_tags)).argmax(dim=-1).tolist()
        gold = labels.tolist()
        mask = input_batch.get("eval_mask")
        if mask is not None and tuple(mask.shape) != tuple(labels.shape[:2]):
            raise ValueError(f"eval_mask {tuple(mask.shape)} does not match labels {tuple(labels.shape)}")
        scored = mask.tolist() if mask is not None else [[g[0] != IGNORE_INDEX for g in row] for row in gold]
        references, predictions = [], []
        for gold_row, pred_row, mask_row in zip(gold, predicted, scored):
            positions = [t for t, keep in enumerate(mask_row) if keep]
            if any(IGNORE_INDEX in gold_row[t] for t in positions):
                raise ValueError("eval_mask selects a position whose label is -100 in some layer (no gold tag there)")
            references.append([self._joined(gold_row[t]) for t in positions])
            predictions.append([self._joined(pred_row[t]) for t in positions])
        return {"references": references, "predictions": predictions}

    def _joined(self, ids: Sequence[int]) -> str:
        return LAYER_SEPARATOR.join(self._tag(index) for index in ids)

    def decode(self, tags: Sequence[str]) -> list[tuple[str, int, int]]:
        """The union of the layers' strict chunks (:func:`~medkit_exp.ner.nesting.layers_to_chunks`)."""
        layers = [tag.split(LAYER_SEPARATOR) for tag in tags]
        if any(len(row) != self.nesting_depth for row in layers):
            raise ValueError(f"a position's tags do not have {self.nesting_depth} layers: {list(tags)[:5]}")
        return layers_to_chunks(layers, self.tagging_scheme)


__all__ = ["LAYER_SEPARATOR", "NestedMetricsComputer"]
