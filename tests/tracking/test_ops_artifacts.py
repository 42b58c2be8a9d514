"""Artifact uploads into a local store: checkpoints hard-linked, the rest as MLflow does."""

from __future__ import annotations

import os
from pathlib import Path

from medkit_exp.tracking.files import link_or_copy, local_artifact_root


def test_local_artifact_root():
    assert local_artifact_root("/tmp/mlruns/1/abc/artifacts") == Path("/tmp/mlruns/1/abc/artifacts")
    assert local_artifact_root("file:///tmp/my%20runs/1/artifacts") == Path("/tmp/my runs/1/artifacts")
    for remote in ("mlflow-artifacts:/1/abc/artifacts", "s3://bucket/1/abc", "http://host/1", "file://other-host/x"):
        assert local_artifact_root(remote) is None


def test_link_or_copy_a_folder_and_a_file(tmp_path):
    source = tmp_path / "checkpoint"
    (source / "sub").mkdir(parents=True)
    (source / "model.bin").write_bytes(b"weights")
    (source / "sub" / "config.json").write_text("{}")
    target = tmp_path / "store" / "checkpoints" / "best"
    (target).mkdir(parents=True)
    (target / "model.bin").write_bytes(b"older weights")  # replaced, as an upload replaces it
    link_or_copy(source, target)
    assert (target / "model.bin").read_bytes() == b"weights" and (target / "sub" / "config.json").read_text() == "{}"
    assert os.stat(target / "model.bin").st_ino == os.stat(source / "model.bin").st_ino  # no second copy
    link_or_copy(source / "model.bin", tmp_path / "store" / "single")
    assert (tmp_path / "store" / "single" / "model.bin").read_bytes() == b"weights"


def test_checkpoint_artifact_is_a_link_and_other_artifacts_are_copies(make_trainer, make_callback, client, tmp_path):
    callback = make_callback(plots=False, log_checkpoints="best")
    trainer = make_trainer(callback=[callback], nb_training_epochs=1)
    trainer.train()
    root = Path(client.get_run(callback.run_id).info.artifact_uri)
    best = Path(trainer.state.best_checkpoint)
    logged = sorted(p.relative_to(root / "checkpoints" / "best") for p in (root / "checkpoints" / "best").rglob("*") if p.is_file())
    assert logged == sorted(p.relative_to(best) for p in best.rglob("*") if p.is_file()) and logged
    for relative in logged:
        assert os.stat(root / "checkpoints" / "best" / relative).st_ino == os.stat(best / relative).st_ino
    history = root / "history" / "history.jsonl"
    assert history.read_bytes() == (Path(trainer.state.output_dir) / "history.jsonl").read_bytes()
    assert os.stat(history).st_ino != os.stat(Path(trainer.state.output_dir) / "history.jsonl").st_ino
