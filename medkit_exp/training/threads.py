"""torch's CPU threads for a run: ``TrainerConfig.num_threads``, or torch's own choice."""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)

# torch's choice for this process, read before any run changed it (a sweep's trials share a process).
_TORCH_DEFAULT = torch.get_num_threads()


def use_threads(requested: int | None) -> int:
    """Set torch's intra-op threads to ``requested`` (None: torch's own choice, as it was before an
    earlier run of this process changed it); return the number in use, which the run records."""
    threads = _TORCH_DEFAULT if requested is None else int(requested)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
        logger.info("CPU threads for torch: %d (%s)", threads, "torch's choice" if requested is None else "num_threads")
    return torch.get_num_threads()
