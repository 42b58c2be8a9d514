"""Where a run comes from: the code's version (the package's git commit and dirty flag, else its
installed version and source; the working directory's repository apart), command line, host,
package versions."""

from __future__ import annotations

import json
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


def _git(cwd: str | Path, *args: str) -> str | None:
    """``git ARGS`` run in ``cwd``: its output, or None (no git, not a repository, an error)."""
    try:
        done = subprocess.run(["git", *args], cwd=str(cwd), capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_info(cwd: str | Path | None = None) -> dict[str, str]:
    """``{"commit", "dirty", "branch", "toplevel"}`` of the git work tree holding ``cwd`` (the
    working directory by default); {} if there is none. Two git calls: ``rev-parse`` (top folder
    and commit) and ``status`` (branch and uncommitted changes to tracked files)."""
    cwd = Path(cwd or os.getcwd())
    if not cwd.is_dir():
        return {}
    found = _git(cwd, "rev-parse", "--show-toplevel", "HEAD")
    if not found or len(found.splitlines()) != 2:
        return {}
    toplevel, commit = found.splitlines()
    status = _git(cwd, "status", "--porcelain=v2", "--branch", "--untracked-files=no")
    info = {"commit": commit, "toplevel": toplevel, "dirty": "unknown"}
    if status is not None:
        lines = status.splitlines()
        info["dirty"] = str(any(not line.startswith("#") for line in lines)).lower()
        branch = next((line.split(" ", 2)[2] for line in lines if line.startswith("# branch.head ")), None)
        if branch and branch != "(detached)":
            info["branch"] = branch
    return info


def distribution_info(name: str = "medkit_exp") -> dict[str, str]:
    """``{"version", "source"[, "commit"]}`` of an installed distribution: its version, and where it
    was installed from (``direct_url.json``: a folder, a URL, a VCS commit; else a package index);
    {} if it is not installed."""
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return {}
    info = {"version": dist.version, "source": "package index"}
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "null")
    except ValueError:
        direct = None
    if isinstance(direct, dict) and direct.get("url"):
        vcs = direct.get("vcs_info") or {}
        source = str(direct["url"])
        if vcs.get("commit_id"):
            info["commit"] = str(vcs["commit_id"])
            source += f"@{vcs['commit_id']}"
        if (direct.get("dir_info") or {}).get("editable"):
            source += " (editable)"
        info["source"] = source
    return info


def code_version_tags(package_dir: str | Path | None = None, cwd: str | Path | None = None) -> dict[str, str]:
    """Which code ran: the package's own source and, apart, the working directory's repository.

    ``medkit_exp.version``, ``medkit_exp.source``, ``medkit_exp.path``; ``medkit_exp.git.commit``,
    ``.dirty`` and ``.branch`` when the package's folder is in a git work tree (an editable install
    or a source checkout), else the commit an install from a VCS URL recorded. ``workdir.git.*``
    when the working directory (the user's configs) is in a git work tree; ``mlflow.source.git.commit``
    is the package's commit, else the working directory's.
    """
    package_dir = Path(package_dir or Path(__file__).resolve().parents[1])
    dist = distribution_info()
    package_git = git_info(package_dir)
    tags = {"medkit_exp.version": dist.get("version") or _package_version(), "medkit_exp.path": str(package_dir)}
    if package_git:
        tags["medkit_exp.source"] = f"git checkout {package_git['toplevel']}"
        tags.update({f"medkit_exp.git.{key}": value for key, value in package_git.items() if key != "toplevel"})
    else:
        tags["medkit_exp.source"] = dist.get("source", "not installed (found on sys.path)")
        if "commit" in dist:
            tags["medkit_exp.git.commit"] = dist["commit"]
    workdir = Path(cwd or os.getcwd()).resolve()
    if package_git and workdir.is_relative_to(package_git["toplevel"]):
        workdir_git = package_git  # the same work tree: no second status (a nested repository is rare)
    else:
        workdir_git = git_info(workdir)
    tags.update({f"workdir.git.{key}": value for key, value in workdir_git.items() if key != "toplevel"})
    commit = tags.get("medkit_exp.git.commit") or workdir_git.get("commit")
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def _package_version() -> str:
    from medkit_exp import __version__

    return __version__


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

    The code's version (:func:`code_version_tags`: ``medkit_exp.*`` for the package, whether or not
    ``cwd`` is in a git repository, ``workdir.git.*`` for ``cwd``'s repository, MLflow's
    ``mlflow.source.git.commit``); ``command`` (redacted ``sys.argv``), ``host``,
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
    tags.update(code_version_tags(cwd=cwd))
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
