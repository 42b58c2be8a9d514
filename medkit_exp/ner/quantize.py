"""An int8 copy of a tagger's model for fast CPU inference: dynamic quantization of its linear
layers (weights stored in int8, activations quantized on the fly per batch).

The copy is cached per tagger and made again only when the tagger's model changed (another
model object, or a parameter modified in place, e.g. by an optimizer step), so repeated
``predict(..., precision="int8")`` calls quantize once, and a tagger still being trained is
never handed a stale copy. The tagger's own model is never modified.

API used: ``torch.ao.quantization.quantize_dynamic`` (eager mode). torch 2.13 still ships it but
warns on import that ``torch.ao.quantization`` is deprecated in favour of torchao's
``quantize_``; torchao is not a dependency here. The warning is logged once (INFO) instead of
printed on each quantization.
"""

from __future__ import annotations

import logging
import warnings
import weakref
from typing import Any

import torch

logger = logging.getLogger(__name__)

# tagger -> (model id, parameter versions, quantized copy); weak: a dropped tagger frees its copy.
_CACHE: weakref.WeakKeyDictionary[Any, tuple[int, tuple[int, ...], torch.nn.Module]] = weakref.WeakKeyDictionary()
_WARNED: list[str] = []


def int8_model(tagger: Any) -> torch.nn.Module:
    """The int8 dynamically quantized copy of ``tagger.model`` (a CPU model, in eval mode)."""
    key = _model_key(tagger.model)
    cached = _CACHE.get(tagger)
    if cached is not None and cached[:2] == key:
        return cached[2]
    quantized = quantize_linear_layers(tagger.model)
    _CACHE[tagger] = (*key, quantized)
    return quantized


def quantize_linear_layers(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose ``torch.nn.Linear`` layers compute in int8 (``model`` unchanged)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from torch.ao.quantization import quantize_dynamic

        was_training = model.training
        model.eval()  # quantize_dynamic copies the model as it is: the copy predicts, so eval mode
        try:
            quantized = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=False)
        finally:
            model.train(was_training)
    _log_warnings_once(caught)
    return quantized


def _model_key(model: torch.nn.Module) -> tuple[int, tuple[int, ...]]:
    """What tells a changed model: its identity and each parameter's in-place version counter
    (``optimizer.step()`` and ``load_state_dict`` bump it)."""
    return id(model), tuple(parameter._version for parameter in model.parameters())


def _log_warnings_once(caught: list[warnings.WarningMessage]) -> None:
    for warning in caught:
        first_line = str(warning.message).strip().splitlines()[0]
        if first_line not in _WARNED:
            _WARNED.append(first_line)
            logger.info("int8 quantization (torch.ao.quantization.quantize_dynamic): torch warns: %s", first_line)
