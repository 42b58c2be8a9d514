"""``python -m medkit_exp.reproduce``: overrides replayed, warnings, comparison, clear errors.
(The end-to-end re-run of a real run is in test_app_run.py.)"""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import pytest

from medkit_exp.reproduce import MetricComparison, main, provenance_warnings, replayed_overrides, report

ROOT = Path(__file__).resolve().parents[2]


def test_replayed_overrides_leave_out_what_belongs_to_the_recorded_run(caplog):
    recorded = ["+experiment=ner", "debug=fast", "hydra.run.dir=run", "tracking.tracking_uri=sqlite:///a.db",
                "resume_from=last", "++tracking.tags.reproduces=abc", "optimizer.lr=3e-5", "component.hf_token=***",
                "tracking.model_hooks.0.register_model_name=ner", "tracking.model_hooks.0.model_alias=champion"]
    assert replayed_overrides(recorded) == ["+experiment=ner", "debug=fast", "optimizer.lr=3e-5"]
    assert "re-run from the start" in caplog.text and "redacted" in caplog.text


def test_metric_comparison_and_report(capsys):
    same = MetricComparison("eval/f1", [(2, 0.5), (4, 0.75)], [(2, 0.5), (4, 0.75)])
    close = MetricComparison("eval/loss", [(2, 1.0)], [(2, 1.0 + 1e-9)])
    other_steps = MetricComparison("train/loss", [(1, 2.0), (2, 1.0)], [(1, 2.0)])
    assert same.max_difference == 0.0 and math.isinf(other_steps.max_difference)
    assert report([same], tolerance=0.0)
    assert not report([same, close], tolerance=0.0) and report([same, close], tolerance=1e-6)
    assert not report([other_steps], tolerance=1.0)
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "steps differ" in out


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_provenance_warnings_name_commit_dirty_tree_versions_and_seed(tmp_path):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    same = provenance_warnings({"git.commit": head, "git.dirty": "false"}, {"seed": "42"}, cwd=ROOT)
    assert not any("git commit" in warning for warning in same)
    other = provenance_warnings({"git.commit": "0" * 40, "git.dirty": "true", "versions.torch": "0.0.1"},
                                {"seed": "None"}, cwd=ROOT)
    text = "\n".join(other)
    assert f"recorded {'0' * 40}, now {head}" in text and "had uncommitted changes" in text
    assert "the run used 0.0.1" in text and "no seed" in text
    outside = provenance_warnings({"git.commit": head}, {"seed": "1"}, cwd=tmp_path)
    assert any("no git repository to compare" in warning for warning in outside)


def test_unknown_run_is_one_clear_error_line(tracking_uri, capsys):
    code = main(["0" * 32, "--tracking-uri", tracking_uri])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"Error: {tracking_uri}: no MLflow run '{'0' * 32}' here")


def test_run_without_overrides_artifact_is_one_clear_error_line(client, tracking_uri, experiment_name, capsys):
    experiment_id = client.create_experiment(experiment_name)
    run = client.create_run(experiment_id)
    client.set_terminated(run.info.run_id)
    code = main([run.info.run_id, "--tracking-uri", tracking_uri])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert f"runs:/{run.info.run_id}/config/overrides.yaml: run {run.info.run_id} has no config/overrides.yaml" in err[0]


def test_dry_run_prints_the_command(app_run, capsys, tmp_path):
    code = main([app_run["run_id"], "optimizer.lr=0.1", "--tracking-uri", app_run["tracking_uri"],
                 "--output-dir", str(tmp_path / "out dir"), "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    command = out.splitlines()[0]
    assert command.startswith("Re-running: python -m medkit_exp +experiment=ner debug=fast ")
    assert "hydra.run.dir=run " not in command and f"hydra.run.dir='{tmp_path / 'out dir'}'" in command
    assert f"tracking.tracking_uri={app_run['tracking_uri']}" in command
    assert "model_alias=candidate" not in command and "tracking.model_hooks.0.model_alias=null" in command
    assert command.endswith(f"++tracking.tags.reproduces={app_run['run_id']} optimizer.lr=0.1")
    assert not (tmp_path / "out dir").exists()


def test_package_versions_of_imported_packages_equal_their_metadata():
    """Versions come from ``__version__`` of imported packages: the same as their installed metadata
    (medkit_exp's ``__version__`` kept equal to pyproject's version)."""
    from importlib import metadata

    import medkit_exp
    import torch
    import transformers

    from medkit_exp.tracking.context import TRACKED_PACKAGES, package_versions

    assert medkit_exp and torch and transformers
    versions = package_versions()
    for name in TRACKED_PACKAGES:
        assert versions[name] == metadata.version(name), name
