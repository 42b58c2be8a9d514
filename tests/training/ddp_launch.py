"""Starting scripts under torchrun for the data-parallel tests (real processes, gloo on CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
NATIVE_ABORT = "terminate called without an active exception"


def torchrun(script: str, *args: str, nproc: int = 2, timeout: float = 120, env: dict[str, str] | None = None,
             check: bool = True) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --standalone --nproc-per-node=N tests/training/<script> ARGS``.

    One thread per process (2 processes on a shared 2-core machine); ``check`` asserts success
    and shows the output otherwise.
    """
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               str(HERE / script), *args]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment, cwd=ROOT)
    if check and result.returncode != 0 and NATIVE_ABORT in result.stderr:
        # Seen once (2026-12-06, a clean-clone CI run on the 2-core machine): rank 0 of a resumed run
        # aborted in native code at its first backward pass; four reruns of that test passed. Not
        # root-caused. Launched once more, said on stderr; a second failure of any kind fails the test.
        print(f"torchrun {script}: a rank aborted ({NATIVE_ABORT!r}); launched once more", file=sys.stderr)
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment, cwd=ROOT)
    if check:
        assert result.returncode == 0, f"torchrun {script} failed ({result.returncode}):\n{result.stderr[-6000:]}"
    return result


def single(script: str, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """The same script in one plain process (no torchrun: WORLD_SIZE unset)."""
    environment = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    environment.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, str(HERE / script), *args], capture_output=True, text=True,
                            timeout=timeout, env=environment, cwd=ROOT)
    if check:
        assert result.returncode == 0, f"{script} failed ({result.returncode}):\n{result.stderr[-6000:]}"
    return result


def rank_files(folder: Path, nproc: int = 2) -> list[dict]:
    """The JSON each rank wrote as ``rank<N>.json``."""
    return [json.loads((folder / f"rank{rank}.json").read_text()) for rank in range(nproc)]
