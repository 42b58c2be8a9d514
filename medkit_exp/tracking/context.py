"""Where a run comes from: git commit and dirty flag, command line, host, package versions."""

from __future__ import annotations

import logging
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from medkit_exp.tracking.datasets import DatasetInfo
from medkit_exp.tracking.params import command_line

logger = logging.getLogger(__name__)

TRACKED_PACKAGES = ("torch", "transformers", "medkit_exp", "mlflow")


def git_info(cwd: str | Path | None = None) -> dict[str, str]:
    """``{"commit", "dirty", "branch"}`` of the git repository holding ``cwd``; {} if there is none."""
    cwd = str(cwd or os.getcwd())

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {}
    status = git("status", "--porcelain", "--untracked-files=no")
    info = {"commit": commit, "dirty": "unknown" if status is None else str(bool(status)).lower()}
    branch = git("rev-parse", "--abbrev-ref", "HEAD")
    if branch:
        info["branch"] = branch
    return info


def package_versions(packages: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    """Installed versions: ``__version__`` of a package already imported, else its metadata
    (nothing is imported). Reading the metadata scans site-packages for each name, 0.3 s for
    four names in a training process, which has most of them imported anyway."""
    versions = {"python": platform.python_version()}
    for name in packages:
        versions[name] = installed_version(name) or "not installed"
    return versions


def installed_version(name: str) -> str | None:
    """The version of package ``name`` (see :func:`package_versions`); None if not installed."""
    version = getattr(sys.modules.get(name), "__version__", None)
    if isinstance(version, str) and version:
        return version
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def context_tags(argv: list[str] | None = None, cwd: str | Path | None = None) -> dict[str, str]:
    """Tags describing the code, machine and command of a run.

    ``git.commit``, ``git.dirty``, ``git.branch`` (and MLflow's ``mlflow.source.git.commit``)
    when ``cwd`` is in a git repository; ``command`` (redacted ``sys.argv``), ``host``,
    ``versions.<package>``; MLflow's ``mlflow.source.name`` and ``mlflow.user``.
    """
    argv = list(sys.argv if argv is None else argv)
    tags = {
        "command": command_line(argv),
        "host": socket.gethostname(),
        "mlflow.source.name": argv[0] if argv else "",
        "mlflow.source.type": "LOCAL",
    }
    user = os.environ.get("USER") or os.environ.get("USERNAME")
    if user:
        tags["mlflow.user"] = user
    git = git_info(cwd)
    for key, value in git.items():
        tags[f"git.{key}"] = value
    if "commit" in git:
        tags["mlflow.source.git.commit"] = git["commit"]
    for name, version in package_versions().items():
        tags[f"versions.{name}"] = version
    return tags


def run_tags(experiment_name: str, run_name: str | None, parent_run_id: str | None, output_dir: Path) -> dict[str, str]:
    """``experiment_name``, ``run_name``, ``output_dir`` and, for a child run, ``mlflow.parentRunId``."""
    tags = {"experiment_name": experiment_name, "output_dir": str(Path(output_dir).resolve())}
    if run_name:
        tags["run_name"] = run_name
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    return tags


def dataset_tags(datasets: Iterable[DatasetInfo]) -> dict[str, str]:
    """``data.<name>.digest``, ``data.<name>.count`` and ``data.<name>.source`` of each dataset."""
    tags = {}
    for info in datasets:
        tags[f"data.{info.name}.digest"] = info.digest
        tags[f"data.{info.name}.count"] = str(info.count)
        tags[f"data.{info.name}.source"] = info.source
    return tags
