"""Optimizer helpers: parameter groups without decay on biases/norms, the fastest AdamW, the
optimizer a config names (:func:`use_optimizer`: AdamW or SGD), and one optimizer step."""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import torch

from medkit_exp.errors import ConfigError
from medkit_exp.training.component import accepts_argument, exposed_model
from medkit_exp.training.config import check_choice, check_number

logger = logging.getLogger(__name__)

#: The optimizers a config can name, and the torch class each builds.
OPTIMIZERS = {"adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


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


class OptimizerStep(NamedTuple):
    """What one optimizer step reports to the log."""

    grad_norm: torch.Tensor | None  # before clipping; measured when clipping or when asked
    learning_rate: float  # the rate the step used


def optimizer_step(
    optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None, max_grad_norm: float | None,
    measure_grad_norm: bool,
) -> OptimizerStep:
    """One step on the accumulated gradients: unscale (fp16), clip to ``max_grad_norm``, step,
    zero the gradients. Without clipping, the gradient norm is computed only at the steps that
    log it (``measure_grad_norm``): a step that nobody logs pays for no reduction."""
    if scaler is not None:
        scaler.unscale_(optimizer)
    grad_norm = None
    if max_grad_norm is not None:
        grad_norm = torch.nn.utils.clip_grad_norm_(_parameters(optimizer), max_grad_norm)
    elif measure_grad_norm:
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in _parameters(optimizer) if p.grad is not None])
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return OptimizerStep(grad_norm, optimizer.param_groups[0]["lr"])


def _parameters(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def make_optimizer(name: str, params: Any, lr: float, momentum: float = 0.0) -> torch.optim.Optimizer:
    """The optimizer ``name`` ("adamw" or "sgd") over ``params`` (whose groups carry their own
    weight decay); ``momentum`` is SGD's (AdamW has none)."""
    check_choice("optimizer.name", name, tuple(OPTIMIZERS))
    if name == "adamw":
        return make_adamw(params, lr=lr)
    return torch.optim.SGD(params, lr=lr, momentum=momentum)


class NamedOptimizer:
    """A ``configure_optimizer(lr, weight_decay=0.0)`` building the named optimizer over the
    component's model (no decay on biases and norms), so that the optimizer a config names is the
    one that trains. A component that exposes no model keeps its own ``configure_optimizer``,
    whose optimizer must then be of the named class."""

    def __init__(self, component: Any, name: str, momentum: float = 0.0):
        check_choice("optimizer.name", name, tuple(OPTIMIZERS))
        check_number("optimizer.momentum", momentum, 0.0)
        if name != "sgd" and momentum:
            raise ConfigError("optimizer.momentum", f"is SGD's; {name} takes none (got {momentum!r})")
        self.component, self.name, self.momentum = component, name, momentum
        self.own = component.configure_optimizer  # bound before this replaces it

    def __call__(self, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
        model = exposed_model(self.component)
        if model is not None:
            return make_optimizer(self.name, param_groups_with_weight_decay(model, weight_decay), lr, self.momentum)
        optimizer = build_optimizer(_Own(self.own), lr, weight_decay)
        if not isinstance(optimizer, OPTIMIZERS[self.name]):
            raise ConfigError("optimizer.name", f"{self.name!r}, but the component exposes no `model` and its "
                              f"configure_optimizer builds {type(optimizer).__name__}")
        return optimizer


class _Own:
    """The component's own ``configure_optimizer``, as :func:`build_optimizer` expects a component."""

    def __init__(self, configure_optimizer: Any):
        self.configure_optimizer = configure_optimizer


def use_optimizer(component: Any, name: str, momentum: float = 0.0) -> Any:
    """Make ``component`` build the optimizer ``name`` ("adamw", "sgd") when the Trainer asks it
    (``build_optimizer`` calls ``component.configure_optimizer``); returns the component.

    >>> class Linear:
    ...     model = torch.nn.Linear(2, 2)
    ...     def configure_optimizer(self, lr): return torch.optim.AdamW(self.model.parameters(), lr=lr)
    >>> type(build_optimizer(use_optimizer(Linear(), "sgd", momentum=0.9), 0.1, 0.01)).__name__
    'SGD'
    """
    component.configure_optimizer = NamedOptimizer(component, name, momentum)
    return component
