"""The protocol a component implements to be trained (signature-compatible with medkit's)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from medkit_exp.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from medkit_exp.training.batch import BatchData

_REQUIRED_MEMBERS = ("device", "configure_optimizer", "preprocess", "collate", "forward", "save", "load")


@runtime_checkable
class TrainableComponent(Protocol):
    """What the Trainer needs from a component; the component owns everything model-specific.

    Same members and argument names as ``medkit.training.TrainableComponent``, so a
    component written for medkit trains unchanged with :class:`~medkit_exp.training.Trainer`.
    A component may also expose ``model`` (a ``torch.nn.Module``): the Trainer then
    applies weight decay by parameter group and can ``torch.compile`` it (and, under torchrun,
    wraps it in DistributedDataParallel). A component whose loss is a mean over something other
    than its items (tokens, say) may define ``nb_loss_terms(input_batch) -> int``: under
    data-parallel training each process's loss is then weighed by it, so the loss is that mean
    over the global batch (the tagger counts its labelled tokens).
    """

    @property
    def device(self) -> torch.device: ...

    def configure_optimizer(self, lr: float) -> torch.optim.Optimizer:
        """Create the optimizer for this learning rate."""

    def preprocess(self, data_item: Any) -> dict[str, Any]:
        """Turn one data item into the features needed by ``forward`` (with labels)."""

    def collate(self, batch: list[dict[str, Any]]) -> BatchData:
        """Pack preprocessed items into a batch."""

    def forward(
        self, input_batch: BatchData, return_loss: bool, eval_mode: bool
    ) -> tuple[BatchData, torch.Tensor | None]:
        """Run the model (train or eval mode) and return its output and, if asked, the loss."""

    def save(self, path: str | Path) -> None:
        """Save the model into the folder ``path``."""

    def load(self, path: str | Path) -> None:
        """Load the model saved by ``save``."""


def check_trainable_component(component: Any) -> None:
    """Raise ``TypeError`` naming every protocol member the component lacks.

    >>> check_trainable_component(object())
    Traceback (most recent call last):
    ...
    TypeError: object does not implement TrainableComponent: missing device, configure_optimizer, preprocess, collate, forward, save, load
    """
    missing = [name for name in _REQUIRED_MEMBERS if not _has_member(component, name)]
    if missing:
        raise TypeError(
            f"{type(component).__name__} does not implement TrainableComponent: missing "
            + ", ".join(missing)
        )
    for name in _REQUIRED_MEMBERS[1:]:
        if not callable(getattr(component, name)):
            raise TypeError(f"{type(component).__name__}.{name} must be a method")


def _has_member(component: Any, name: str) -> bool:
    # Look on the class first so a failing ``device`` property does not hide as "missing".
    return hasattr(type(component), name) or name in getattr(component, "__dict__", {})


def exposed_model(component: Any) -> Any | None:
    """The component's ``torch.nn.Module`` if it exposes one (``model``, or medkit's ``_model``)."""
    import torch

    for name in ("model", "_model"):
        model = getattr(component, name, None)
        if isinstance(model, torch.nn.Module):
            return model
    return None


def compile_exposed_model(component: Any) -> None:
    """``torch.compile`` the component's exposed model in place (``TrainerConfig.compile``)."""
    model = exposed_model(component)
    if model is None:
        raise ConfigError("compile", "needs a component that exposes its torch model as `model`")
    model.compile()


def accepts_argument(function: Any, name: str) -> bool:
    """Whether ``function`` can be called with the keyword argument ``name``."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())
