"""Keeping a component's gradients equal on every rank: DistributedDataParallel, or collectives.

A component that calls its ``model`` as a whole gets DDP: for each training forward the Trainer
puts the DDP wrapper in the component's ``model`` attribute (and puts the model back after it),
so DDP's backward hooks all-reduce the gradients while backward runs (its overlap), and
``no_sync()`` keeps the micro-batches of a gradient-accumulation window local but the last.
The wrapper passes attribute and item access through to the model, so a component whose
``forward`` calls submodules (``self.model["encoder"](...)``) still runs; DDP's forward is then
never called, which the wrapper notices (it counts its calls): from then on the component's
gradients are averaged with ``torch.distributed.all_reduce`` at the optimizer step, like those of
a component that exposes no ``model`` at all (and of optimizer parameters outside the model).

At construction, rank 0's weights are broadcast to every rank (DDP does it for its module).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from medkit_exp.errors import ConfigError
from medkit_exp.training.distributed import DistributedContext, check_same_parameters

logger = logging.getLogger(__name__)


class ComponentDDP(DistributedDataParallel):
    """DDP that counts its forward calls and passes other attribute/item access to its module."""

    forward_calls = 0

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self.forward_calls += 1
        return super().forward(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "module":
                raise
            return getattr(self.module, name)

    def __getitem__(self, key: Any) -> Any:
        return self.module[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.module)

    def __len__(self) -> int:
        return len(self.module)


class GradientSync:
    """What the Trainer calls so a component's gradients are the same on every rank.

    With one process every method does nothing (no collective, no wrapper).
    """

    def __init__(self, context: DistributedContext, component: Any, optimizer: torch.optim.Optimizer):
        self.context, self.component = context, component
        self.parameters = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
        self.ddp: ComponentDDP | None = None
        self.attribute, self.model = None, None
        self.uses_ddp: bool | None = None  # known after the first training forward
        self._average_all = False  # this step's gradients did not all go through DDP
        if not context.is_distributed:
            return
        _check_devices(context, self.parameters)
        check_same_parameters(context, self.parameters)
        self.attribute, self.model = _settable_model(component)
        in_model: set[int] = set()
        if self.model is not None:
            self.ddp = _wrap(context, self.model)
            context.close_on_leave("gradient_sync", self.close)  # and the wrapper of an earlier model
            in_model = {id(p) for p in self.model.parameters()}
        # Optimizer parameters DDP does not hold: broadcast now, averaged at every step.
        self.outside = [p for p in self.parameters if id(p) not in in_model]
        _broadcast(self.outside)

    def forward(self, sync: bool) -> contextlib.AbstractContextManager:
        """Around a training forward: the DDP wrapper in place (``no_sync`` unless ``sync``); nothing
        for one process (no generator entered at every micro-batch)."""
        if self.ddp is None or self.uses_ddp is False:
            return contextlib.nullcontext()
        return self._ddp_forward(sync)

    @contextlib.contextmanager
    def _ddp_forward(self, sync: bool) -> Iterator[None]:
        calls = self.ddp.forward_calls
        setattr(self.component, self.attribute, self.ddp)
        try:
            with contextlib.nullcontext() if sync else self.ddp.no_sync():
                yield
        finally:
            setattr(self.component, self.attribute, self.model)
        called = self.ddp.forward_calls > calls
        if self.uses_ddp is None:
            self.uses_ddp = called
            if not called:
                logger.info("The component's forward does not call its model as a whole: its gradients are "
                            "averaged at each optimizer step instead of during backward (no DDP overlap)")
        if sync and not called:
            self._average_all = True

    def discard_backward(self, loss: torch.Tensor, synced: bool) -> None:
        """A batch skipped on every rank (non-finite loss) after a DDP forward that expects a backward.

        DDP's reduction must still complete: backward of ``loss * 0``, then the gradients as they
        were before it, averaged at the step.
        """
        if self.ddp is None or not self.uses_ddp or not synced:
            return
        saved = [None if p.grad is None else p.grad.clone() for p in self.parameters]
        (loss * 0.0).backward()
        for parameter, grad in zip(self.parameters, saved):
            parameter.grad = grad
        self._average_all = True

    def close(self) -> None:
        """Drop the DDP wrapper (and its reducer) while the process group still exists."""
        self.ddp, self.uses_ddp = None, False

    def average_gradients(self) -> None:
        """At the optimizer step: average what DDP did not (every gradient in the fallback mode)."""
        if not self.context.is_distributed:
            return
        average_all = self._average_all or self.ddp is None or not self.uses_ddp
        self._average_all = False
        parameters = self.parameters if average_all else self.outside
        if parameters:
            average_gradients(self.context, parameters)


def average_gradients(context: DistributedContext, parameters: list[torch.Tensor]) -> None:
    """Replace each gradient by its mean over ranks (one all_reduce per device and dtype).

    A parameter without a gradient on every rank keeps none (the optimizer skips it, as with one
    process); one with a gradient somewhere gets zeros where it has none.
    """
    present = context.max_ints([int(p.grad is not None) for p in parameters])
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for parameter, has_grad in zip(parameters, present):
        if has_grad:
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
            groups.setdefault((parameter.device, parameter.grad.dtype), []).append(parameter)
    for members in groups.values():
        flat = torch.cat([p.grad.reshape(-1) for p in members])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=context._group_for(flat))
        flat /= context.world_size
        offset = 0
        for parameter in members:
            size = parameter.grad.numel()
            parameter.grad.copy_(flat[offset : offset + size].view_as(parameter.grad))
            offset += size


def _settable_model(component: Any) -> tuple[str | None, torch.nn.Module | None]:
    """The attribute holding the component's model, if the Trainer can swap the DDP wrapper into it."""
    for name in ("model", "_model"):
        model = getattr(component, name, None)
        if isinstance(model, torch.nn.Module):
            try:
                setattr(component, name, model)
            except AttributeError:  # a read-only property: gradients averaged at the step instead
                logger.info("The component's %s cannot be replaced by the DDP wrapper: gradients averaged at "
                            "each optimizer step", name)
                return None, None
            return name, model
    return None, None


def _wrap(context: DistributedContext, model: torch.nn.Module) -> ComponentDDP:
    device_ids = [context.device] if context.device.type == "cuda" else None
    try:
        # find_unused_parameters: any protocol component trains, even one whose forward leaves
        # some of its model's parameters out; broadcast_buffers off: evaluation forwards need no
        # collective, and rank 0's buffers are the ones saved.
        return ComponentDDP(model, device_ids=device_ids, find_unused_parameters=True, **_no_buffer_sync())
    except (RuntimeError, ValueError, AssertionError) as error:
        raise ConfigError("component", f"cannot be synchronised across processes by DistributedDataParallel: "
                          f"{error}") from error


def _no_buffer_sync() -> dict[str, bool]:
    """DDP's option for no buffer broadcast before each forward, by the name this torch knows."""
    parameters = inspect.signature(DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in parameters else {"broadcast_buffers": False}


def _check_devices(context: DistributedContext, parameters: list[torch.Tensor]) -> None:
    if not parameters:
        raise ConfigError("component", "cannot be synchronised: its optimizer has no trainable parameter")
    if context.backend != "nccl":
        return
    wrong = sorted({str(p.device) for p in parameters if p.device != context.device})
    if wrong:
        raise ConfigError("component.device", f"each process trains on its own GPU: this one's is {context.device} "
                          f"(LOCAL_RANK={context.local_rank}), but the component's parameters are on "
                          f"{', '.join(wrong)}")


def _broadcast(parameters: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for parameter in parameters:
            dist.broadcast(parameter.data, src=0)
