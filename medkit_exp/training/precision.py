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


def resolve_precision(precision: str, device: torch.device, flags: frozenset[str] | None = None) -> str:
    """The precision a run uses: ``precision`` itself, except "auto", which is "bf16" where
    ``device`` computes in bfloat16 natively (CUDA GPUs from Ampere on; CPUs with AVX-512 BF16 or
    AMX) and "32" elsewhere (emulated bf16 is slower than fp32, not faster). ``flags``: the CPU's
    feature flags (None: this machine's, :func:`cpu_flags`)."""
    if precision != "auto":
        return precision
    return "bf16" if has_native_bf16(device, flags) else "32"


def has_native_bf16(device: torch.device, flags: frozenset[str] | None = None) -> bool:
    """Whether ``device`` has bfloat16 arithmetic in hardware (not emulated); a CPU's is read from
    ``flags`` (None: this machine's, :func:`cpu_flags`)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return bool(native_bf16_cpu_flags(cpu_flags() if flags is None else flags))
    return False


def native_bf16_cpu_flags(flags: frozenset[str]) -> list[str]:
    """Those of ``flags`` that give native bfloat16 arithmetic, in :data:`NATIVE_BF16_CPU_FLAGS`' order."""
    return [flag for flag in NATIVE_BF16_CPU_FLAGS if flag in flags]


def describe_precision(precision: str, device: torch.device, flags: frozenset[str] | None = None) -> str:
    """One line saying the precision used and, for "auto", why.

    >>> describe_precision("auto", torch.device("cpu"), frozenset({"avx512f", "avx512_bf16"}))
    'precision: auto -> bf16 (CPU has native bfloat16: avx512_bf16)'
    >>> describe_precision("auto", torch.device("cpu"), frozenset({"avx2"}))
    'precision: auto -> 32 (CPU has no native bfloat16: no avx512_bf16 or amx_bf16 flag)'
    >>> describe_precision("bf16", torch.device("cpu"))
    'precision: bf16'
    """
    if precision != "auto":
        return f"precision: {precision}"
    used = resolve_precision(precision, device, flags)
    if device.type == "cpu":
        found = native_bf16_cpu_flags(cpu_flags() if flags is None else flags)
        reason = (f"CPU has native bfloat16: {', '.join(found)}" if found
                  else f"CPU has no native bfloat16: no {' or '.join(NATIVE_BF16_CPU_FLAGS)} flag")
    elif device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        reason = f"{name} {'has' if used == 'bf16' else 'has no'} native bfloat16"
    else:
        reason = f"no native bfloat16 known on {device.type}"
    return f"precision: auto -> {used} ({reason})"


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
