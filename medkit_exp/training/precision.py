"""Mixed precision: which precision a run uses, the autocast context of forward passes and the
gradient scaler of fp16."""

from __future__ import annotations

import contextlib
import functools
import sys
from pathlib import Path

import torch

from medkit_exp.errors import ConfigError

#: CPU flags (Linux /proc/cpuinfo) of native bfloat16 arithmetic: AVX-512 BF16 and AMX.
NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision a run uses: ``precision`` itself, except "auto", which is "bf16" where
    ``device`` computes in bfloat16 natively (CUDA GPUs from Ampere on; CPUs with AVX-512 BF16 or
    AMX) and "32" elsewhere (emulated bf16 is slower than fp32, not faster)."""
    if precision != "auto":
        return precision
    return "bf16" if has_native_bf16(device) else "32"


def has_native_bf16(device: torch.device) -> bool:
    """Whether ``device`` has bfloat16 arithmetic in hardware (not emulated)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return bool(set(NATIVE_BF16_CPU_FLAGS) & cpu_flags())
    return False


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux reports them; empty elsewhere (so "auto" stays fp32 there)."""
    if not sys.platform.startswith("linux"):
        return frozenset()
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast to bfloat16 ("bf16") or float16 ("fp16") on ``device``; nothing for "32".
    ``precision`` is a resolved one (see :func:`resolve_precision`)."""
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
