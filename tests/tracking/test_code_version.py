"""The code version of a run: the package's own git checkout wherever the run starts, else its
installed version and source; the working directory's repository apart; few git calls."""

from __future__ import annotations

import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

from medkit_exp.reproduce import provenance_warnings
from medkit_exp.tracking import context
from medkit_exp.tracking.context import code_version_tags

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def head(folder: Path) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def git_calls(monkeypatch) -> list:
    """The git commands the tags cost (they still run)."""
    calls, run = [], subprocess.run

    def counted(command, *args, **kwargs):
        if command and command[0] == "git":
            calls.append(command)
        return run(command, *args, **kwargs)

    monkeypatch.setattr(context.subprocess, "run", counted)
    return calls


def test_outside_any_repository_the_package_commit_is_recorded(tmp_path, git_calls):
    tags = code_version_tags(cwd=tmp_path)
    calls = len(git_calls)
    assert tags["medkit_exp.git.commit"] == head(ROOT) == tags["mlflow.source.git.commit"]
    assert tags["medkit_exp.source"] == f"git checkout {ROOT}" and tags["medkit_exp.path"] == str(ROOT / "medkit_exp")
    assert tags["medkit_exp.git.dirty"] in ("true", "false") and tags["medkit_exp.version"] == metadata.version("medkit_exp")
    assert not any(key.startswith("workdir.") for key in tags)
    assert calls == 3  # the package: rev-parse and status; the working directory: rev-parse


def test_the_working_directory_repository_is_recorded_apart(tmp_path, git_calls):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    git("init", "-q")
    (tmp_path / "experiment.yaml").write_text("lr: 1\n")
    git("add", "experiment.yaml")
    git("commit", "-q", "-m", "configs")
    git_calls.clear()
    tags = code_version_tags(cwd=tmp_path)
    calls = len(git_calls)
    assert tags["workdir.git.commit"] == head(tmp_path) != tags["medkit_exp.git.commit"] == head(ROOT)
    assert tags["workdir.git.dirty"] == "false" and tags["mlflow.source.git.commit"] == head(ROOT)
    assert calls == 4
    git_calls.clear()
    inside = code_version_tags(cwd=ROOT / "conf")  # the package's own work tree: one status, not two
    assert len(git_calls) == 2 and inside["workdir.git.commit"] == inside["medkit_exp.git.commit"]


def test_an_installed_package_records_its_version_and_source(tmp_path):
    """The package's folder outside any git work tree: the distribution's metadata speak."""
    direct_url = metadata.distribution("medkit_exp").read_text("direct_url.json")
    tags = code_version_tags(package_dir=tmp_path / "site-packages" / "medkit_exp", cwd=tmp_path)
    assert tags["medkit_exp.version"] == metadata.version("medkit_exp")
    assert not any(key.startswith(("medkit_exp.git.", "workdir.")) for key in tags) and "mlflow.source.git.commit" not in tags
    if direct_url and '"editable": true' in direct_url:  # this environment's editable install
        assert tags["medkit_exp.source"] == f"{ROOT.as_uri()} (editable)"
    else:
        assert tags["medkit_exp.source"]


def test_reproduce_compares_the_package_commit_and_the_configs_commit(tmp_path):
    recorded = code_version_tags(cwd=ROOT)
    same = provenance_warnings({**recorded, "medkit_exp.git.dirty": "false"}, {"seed": "1"}, cwd=ROOT)
    assert not any("git commit" in warning for warning in same), same
    other = {**recorded, "medkit_exp.git.commit": "0" * 40, "workdir.git.commit": "1" * 40}
    text = "\n".join(provenance_warnings(other, {"seed": "1"}, cwd=ROOT))
    assert f"medkit_exp's git commit differs: recorded {'0' * 40}, now {head(ROOT)}" in text
    assert f"the working directory's git commit (its configs) differs: recorded {'1' * 40}, now {head(ROOT)}" in text
    outside = provenance_warnings(code_version_tags(cwd=tmp_path), {"seed": "1"}, cwd=tmp_path)
    assert not any("no git commit" in warning or "differs" in warning for warning in outside), outside
