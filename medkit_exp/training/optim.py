"""Optimizer helpers: parameter groups without decay on biases/norms, the fastest AdamW."""

from __future__ import annotations

import logging
from typing import Any

import torch

from medkit_exp.errors import ConfigError
from medkit_exp.training.component import accepts_argument, exposed_model

logger = logging.getLogger(__name__)


def param_groups_with_weight_decay(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two parameter groups: decayed weights, and biases + normalisation weights without decay.

    >>> layer = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    >>> [len(g["params"]) for g in param_groups_with_weight_decay(layer, 0.01)]
    [1, 3]
    """
    no_decay_ids: set[int] = set()
    for module in model.modules():
        if _is_normalisation(module):
            no_decay_ids.update(id(p) for p in module.parameters(recurse=False))
    decay, no_decay = [], []
    seen: set[int] = set()
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue  # tied weights appear once
        seen.add(id(param))
        if id(param) in no_decay_ids or name.endswith("bias"):
            no_decay.append(param)
        else:
            decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _is_normalisation(module: torch.nn.Module) -> bool:
    norm_types = (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.modules.batchnorm._NormBase)
    return isinstance(module, norm_types) or "norm" in type(module).__name__.lower()


def make_adamw(params: Any, lr: float, weight_decay: float = 0.0, **kwargs: Any) -> torch.optim.AdamW:
    """AdamW with the fastest correct kernel: fused where the parameters' device supports it.

    The fused kernel updates every parameter in one pass (CPU and CUDA in torch >= 2.4);
    elsewhere the multi-tensor ``foreach`` path is used.
    """
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError) as error:
        logger.debug("fused AdamW unavailable (%s); using foreach", error)
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, foreach=True, **kwargs)


def rebuild_with_weight_decay(
    optimizer: torch.optim.Optimizer, model: torch.nn.Module, weight_decay: float
) -> torch.optim.Optimizer:
    """The same optimizer class and settings, over groups that skip decay on biases and norms."""
    defaults = {key: value for key, value in optimizer.defaults.items() if key != "weight_decay"}
    groups = param_groups_with_weight_decay(model, weight_decay)
    try:
        return type(optimizer)(groups, **defaults)
    except TypeError:
        # Optimizers whose defaults hold keys their constructor does not take.
        return type(optimizer)(groups, lr=defaults["lr"])


def build_optimizer(component: Any, learning_rate: float, weight_decay: float) -> torch.optim.Optimizer:
    """``component.configure_optimizer(learning_rate)``, with decoupled weight decay when asked.

    A ``configure_optimizer`` that accepts ``weight_decay`` applies it itself; otherwise its
    optimizer is rebuilt with decay on weights only, which needs the component's ``model``.
    """
    if weight_decay > 0 and accepts_argument(component.configure_optimizer, "weight_decay"):
        return component.configure_optimizer(learning_rate, weight_decay=weight_decay)
    optimizer = component.configure_optimizer(learning_rate)
    if weight_decay > 0:
        model = exposed_model(component)
        if model is None:
            raise ConfigError("weight_decay", "needs a component exposing its torch model as `model`")
        optimizer = rebuild_with_weight_decay(optimizer, model, weight_decay)
    return optimizer
