"""Refuse loaded weights that hold NaN or infinity.

A model whose weights are not finite predicts garbage and, trained on, stays there with every
loss NaN; a checkpoint written with such weights (or damaged into them) is refused where it is
loaded, naming the tensor and the file it came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medkit_exp.errors import CheckpointError
from medkit_exp.training.checkpoint import TRAINER_FILES

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def weights_files(folder: Path) -> list[Path]:
    """The files under ``folder`` that can hold the component's weights (safetensors first)."""
    folder = Path(folder)
    found = [
        path for path in folder.rglob("*")
        if path.is_file() and path.name.endswith(_WEIGHT_SUFFIXES) and path.name not in TRAINER_FILES
    ]
    return sorted(found, key=lambda p: (not p.name.endswith(".safetensors"), p.as_posix()))


def check_finite_weights(model: Any, folder: Path) -> None:
    """CheckpointError naming the first parameter or floating buffer of ``model`` (a torch
    module, or None: nothing to check) that holds NaN or infinity, and the file it was loaded from."""
    import torch

    if model is None:
        return
    tensors = [*model.named_parameters(), *model.named_buffers()]
    for name, tensor in tensors:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor.detach()).all()):
            bad = int((~torch.isfinite(tensor.detach())).sum())
            raise CheckpointError(
                f"tensor {name!r} holds {bad} NaN or infinite values of {tensor.numel()}: refusing weights "
                "that are not finite (the checkpoint was saved after training diverged, or is damaged)",
                _source_file(folder, name),
            )


def _source_file(folder: Path, tensor_name: str) -> Path:
    """The weights file that holds ``tensor_name`` (safetensors files are searched by key)."""
    files = weights_files(folder)
    for path in files:
        if path.name.endswith(".safetensors") and tensor_name in _safetensors_keys(path):
            return path
    return files[0] if len(files) == 1 else Path(folder)


def _safetensors_keys(path: Path) -> set[str]:
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            return set(handle.keys())
    except Exception:  # noqa: BLE001 - only used to name a file; the load itself succeeded
        return set()
