"""Mixed precision: the autocast context of forward passes and the gradient scaler of fp16."""

from __future__ import annotations

import contextlib

import torch

from medkit_exp.errors import ConfigError


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast to bfloat16 ("bf16") or float16 ("fp16") on ``device``; nothing for "32"."""
    if precision == "32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """The loss scaler fp16 needs (on CUDA only); None for the other precisions."""
    if precision != "fp16":
        return None
    if device.type != "cuda":
        raise ConfigError("precision", "fp16 needs a CUDA device; use bf16 on CPU")
    return torch.amp.GradScaler("cuda")
