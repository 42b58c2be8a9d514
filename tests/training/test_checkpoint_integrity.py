"""Checkpoints that are missing, incomplete, damaged or not finite, and runs that must not start over.

Real trainings of the toy classifier in tmp_path; the checkpoint folders are damaged by hand the
way a kill of an older version, a full disk or an editor would leave them.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medkit_exp.errors import CheckpointError, ConfigError
from medkit_exp.training.checkpoint import STATE_FILE, CheckpointManager, check_resume_choice
from medkit_exp.training.digests import MANIFEST, incomplete_reason, read_manifest, verify_checkpoint, write_manifest

CHECKPOINT_FILES = ["toy_model.pt", "optimizer.pt", "trainer_state.pt", "trainer_config.yml"]


def trained(make_trainer, tmp_path: Path, name: str, **config) -> Path:
    """The checkpoints folder of a toy run (64 items, batches of 8: 8 steps an epoch)."""
    make_trainer(output_dir=str(tmp_path / name), **config).train()
    return tmp_path / name / "checkpoints"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ state.json and what is on disk
def test_state_naming_a_half_deleted_checkpoint_falls_back_to_the_newest_complete_one(make_trainer, tmp_path, caplog):
    """The issue's case: an older version pruned before rewriting state.json, then was killed."""
    full = make_trainer(nb_training_epochs=3, output_dir=str(tmp_path / "full")).train()
    checkpoints = trained(make_trainer, tmp_path, "part", nb_training_epochs=3, max_steps=12, keep_best_k=5)
    half, newest = checkpoints / "checkpoint-0000008", checkpoints / "checkpoint-0000012"
    (half / "trainer_state.pt").unlink()
    (half / "toy_model.pt").unlink()
    state = json.loads((checkpoints / STATE_FILE).read_text())
    state.update(last=half.name, checkpoints=[r for r in state["checkpoints"] if r["name"] == half.name])
    (checkpoints / STATE_FILE).write_text(json.dumps(state))
    resumed = make_trainer(nb_training_epochs=3, output_dir=str(tmp_path / "part"))
    assert f"names {half} as the last checkpoint, but it is incomplete" in caplog.text
    assert f"using the newest complete checkpoint, {newest}" in caplog.text
    assert resumed.train(resume_from_checkpoint="last")[-1] == full[-1]


def test_no_state_file_recovers_the_complete_checkpoints_from_their_folders(make_trainer, tmp_path, caplog):
    checkpoints = trained(make_trainer, tmp_path, "run", nb_training_epochs=3, keep_best_k=5)
    before = CheckpointManager(checkpoints, keep_best_k=5)
    (checkpoints / STATE_FILE).unlink()
    shutil.copytree(checkpoints / "checkpoint-0000008", checkpoints / "checkpoint-0000030")
    (checkpoints / "checkpoint-0000030" / "optimizer.pt").unlink()  # incomplete: not recovered
    recovered = CheckpointManager(checkpoints, keep_best_k=5)
    assert "has no state.json: recovered 3 complete checkpoint(s) from their folders, the last being " \
           "checkpoint-0000024" in caplog.text
    assert recovered.records == before.records and recovered.last == before.last == "checkpoint-0000024"
    assert recovered.best == before.best


def test_a_state_file_naming_only_missing_checkpoints_leaves_nothing_to_resume(make_trainer, tmp_path, caplog):
    checkpoints = trained(make_trainer, tmp_path, "run", nb_training_epochs=2)
    for folder in checkpoints.glob("checkpoint-*"):
        shutil.rmtree(folder)
    trainer = make_trainer(output_dir=str(tmp_path / "run"))
    assert "no complete checkpoint is left" in caplog.text
    with pytest.raises(CheckpointError, match=f"{checkpoints}: nothing to resume from"):
        trainer.train(resume_from_checkpoint="last")
    assert make_trainer(output_dir=str(tmp_path / "run"), nb_training_epochs=1).train()  # nothing to overwrite


def test_a_damaged_checksums_file_makes_the_folder_incomplete_and_is_named(make_trainer, tmp_path):
    checkpoints = trained(make_trainer, tmp_path, "run", nb_training_epochs=2, keep_best_k=3)
    last = checkpoints / "checkpoint-0000016"
    (last / MANIFEST).write_text("{garbage")
    assert "unreadable checksums file" in incomplete_reason(last)
    assert CheckpointManager(checkpoints).last == "checkpoint-0000008"
    with pytest.raises(CheckpointError, match="unreadable checksums file") as error:
        verify_checkpoint(last)
    assert error.value.path == str(last / MANIFEST)


# ------------------------------------------------------------------ a run never starts over silently
def test_a_new_run_in_a_folder_holding_checkpoints_is_refused_and_changes_nothing(make_trainer, tmp_path):
    trained(make_trainer, tmp_path, "run", nb_training_epochs=1)
    before = snapshot(tmp_path / "run")
    with pytest.raises(ConfigError) as error:
        make_trainer(output_dir=str(tmp_path / "run"), nb_training_epochs=1).train()
    assert error.value.key == "resume_from"
    assert f"{tmp_path / 'run' / 'checkpoints'} already holds checkpoints of an earlier run (checkpoint-0000008)" \
           in str(error.value)
    assert "resume it with resume_from=last, or start the new run in a new output folder" in str(error.value)
    assert snapshot(tmp_path / "run") == before  # history, checkpoints, state: untouched
    with pytest.raises(ConfigError, match="config key 'resume_from'"):
        check_resume_choice(tmp_path / "run", None)  # what an application checks before any work


def test_a_new_run_is_refused_over_incomplete_checkpoints_too_but_not_over_leftover_temporary_folders(
    make_trainer, tmp_path
):
    checkpoints = tmp_path / "run" / "checkpoints"
    (checkpoints / ".tmp-checkpoint-0000005").mkdir(parents=True)  # killed in its first save
    assert make_trainer(output_dir=str(tmp_path / "run"), nb_training_epochs=1).train()
    assert not (checkpoints / ".tmp-checkpoint-0000005").exists()  # cleaned by the first save
    other = tmp_path / "other" / "checkpoints" / "checkpoint-0000003"
    other.mkdir(parents=True)  # incomplete, but a new run would replace what is left of it
    with pytest.raises(ConfigError, match="already holds checkpoints of an earlier run \\(checkpoint-0000003\\)"):
        make_trainer(output_dir=str(tmp_path / "other")).train()


@pytest.mark.parametrize("which", ["last", "best"])
def test_check_resume_choice_names_the_folder_with_nothing_to_resume(tmp_path, which):
    with pytest.raises(CheckpointError, match=rf"{tmp_path / 'run' / 'checkpoints'}: nothing to resume from"):
        check_resume_choice(tmp_path / "run", which)
    with pytest.raises(CheckpointError, match="checkpoint folder not found"):
        check_resume_choice(tmp_path / "run", tmp_path / "no_such_checkpoint")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'empty'}: not a complete checkpoint"):
        check_resume_choice(tmp_path / "run", tmp_path / "empty")
    assert check_resume_choice(tmp_path / "run", None) is None  # a new run in an empty folder


def test_resume_best_without_a_ranked_checkpoint_uses_the_last_one_and_says_so(make_trainer, tmp_path, caplog):
    trained(make_trainer, tmp_path, "run", nb_training_epochs=1, eval_strategy="no")
    resumed = make_trainer(output_dir=str(tmp_path / "run"), nb_training_epochs=2, eval_strategy="no")
    resumed.train(resume_from_checkpoint="best")
    assert "No checkpoint of" in caplog.text and "resuming from the last one" in caplog.text
    assert resumed.state.global_step == 16


# ------------------------------------------------------------------ digests and weights on resume
# Every file with every damage would be 16 trainings: each file and each damage once, flips of
# every file at random below (test_any_changed_byte_of_any_file_is_named).
@pytest.mark.parametrize(("name", "damage"), [
    ("toy_model.pt", "flip"), ("optimizer.pt", "truncate"), ("trainer_state.pt", "append"),
    ("trainer_config.yml", "delete"), ("toy_model.pt", "delete"),
])
def test_a_damaged_file_is_named_on_resume_before_anything_is_loaded(make_trainer, tmp_path, name, damage):
    checkpoints = trained(make_trainer, tmp_path, "run", nb_training_epochs=1)
    path = checkpoints / "checkpoint-0000008" / name
    data = path.read_bytes()
    if damage == "flip":
        path.write_bytes(data[:10] + bytes([data[10] ^ 0x01]) + data[11:])
    elif damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "append":
        path.write_bytes(data + b"\0")
    else:
        path.unlink()
    resumed = make_trainer(output_dir=str(tmp_path / "resumed"), nb_training_epochs=2)
    weights = {k: v.clone() for k, v in resumed.component.model.state_dict().items()}
    expected = {"flip": "damaged: its sha256 differs", "truncate": "damaged: .* bytes, .* when it was saved",
                "append": "damaged: .* bytes", "delete": "missing: the checkpoint's checksums.json lists it"}[damage]
    with pytest.raises(CheckpointError, match=expected) as error:
        resumed.train(resume_from_checkpoint=path.parent)
    assert error.value.path == str(path)
    assert resumed.state.global_step == 0
    assert all(torch.equal(v, weights[k]) for k, v in resumed.component.model.state_dict().items())
    if damage != "flip":  # "last": the folder is incomplete; with no other checkpoint, the error says why
        with pytest.raises(CheckpointError, match=f"nothing to resume from .*{path.parent} is incomplete .*{name}"):
            make_trainer(output_dir=str(tmp_path / "run"), nb_training_epochs=2).train(resume_from_checkpoint="last")


@pytest.mark.parametrize(
    ("tensor", "value", "count"), [("embed.weight", float("nan"), 1), ("out.bias", float("inf"), 2)]
)
def test_weights_that_are_not_finite_are_refused_on_resume(make_trainer, tmp_path, tensor, value, count):
    checkpoints = trained(make_trainer, tmp_path, "run", nb_training_epochs=1)
    folder = checkpoints / "checkpoint-0000008"
    weights = torch.load(folder / "toy_model.pt")
    weights[tensor].view(-1)[:count] = value
    torch.save(weights, folder / "toy_model.pt")
    manifest = read_manifest(folder)
    write_manifest(folder, manifest["step"], manifest["metric"])  # saved so: the digests match
    with pytest.raises(CheckpointError) as error:
        make_trainer(output_dir=str(tmp_path / "run"), nb_training_epochs=2).train(resume_from_checkpoint="last")
    assert f"tensor '{tensor}' holds {count} NaN or infinite values" in str(error.value)
    assert error.value.path == str(folder / "toy_model.pt")


def test_a_checkpoint_without_digests_resumes_with_a_warning(make_trainer, tmp_path, caplog):
    """Checkpoints written before digests were recorded stay usable: said, not verified."""
    full = make_trainer(nb_training_epochs=2, output_dir=str(tmp_path / "full")).train()
    checkpoints = trained(make_trainer, tmp_path, "run", nb_training_epochs=1)
    (checkpoints / "checkpoint-0000008" / MANIFEST).unlink()
    resumed = make_trainer(output_dir=str(tmp_path / "run"), nb_training_epochs=2)
    assert resumed.train(resume_from_checkpoint="last")[-1] == full[-1]
    assert f"checkpoint-0000008 has no {MANIFEST}" in caplog.text and "cannot be verified" in caplog.text


# ------------------------------------------------------------------ properties
@pytest.fixture(scope="module")
def saved_checkpoint(tmp_path_factory) -> Path:
    from tests.training.toy import toy_trainer_builder

    output = tmp_path_factory.mktemp("saved") / "run"
    toy_trainer_builder(output)(nb_training_epochs=1).train()
    return output / "checkpoints" / "checkpoint-0000008"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(CHECKPOINT_FILES), st.floats(0, 1, exclude_max=True), st.integers(1, 255))
def test_any_changed_byte_of_any_file_is_named(saved_checkpoint, name, where, mask):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "checkpoint"
        shutil.copytree(saved_checkpoint, folder)
        path = folder / name
        data = bytearray(path.read_bytes())
        data[int(where * len(data))] ^= mask
        path.write_bytes(bytes(data))
        assert incomplete_reason(folder) is None  # same size: only the digest can tell
        with pytest.raises(CheckpointError) as error:
            verify_checkpoint(folder)
        assert error.value.path == str(path)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.one_of(st.none(), st.floats(0, 1)), min_size=1, max_size=12),
    st.integers(0, 3), st.booleans(),
)
def test_saves_keep_the_best_k_and_the_last_and_state_names_only_complete_folders(metrics, keep, minimize):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "checkpoints"
        manager = CheckpointManager(root, keep_best_k=keep, minimize=minimize)
        for step, metric in enumerate(metrics, start=1):
            manager.save(step, metric, lambda folder, step=step: (folder / "weights.bin").write_bytes(bytes([step])))
            state = json.loads((root / STATE_FILE).read_text())
            on_disk = sorted(p.name for p in root.iterdir() if p.is_dir())
            assert on_disk == sorted(r["name"] for r in state["checkpoints"])
            assert all(incomplete_reason(root / name) is None for name in on_disk)
            scored = [(m, s) for s, m in enumerate(metrics[:step], start=1) if m is not None]
            best = sorted(scored, key=lambda p: ((1 if minimize else -1) * p[0], p[1]))[:keep]
            assert set(on_disk) == {f"checkpoint-{s:07d}" for _, s in best} | {f"checkpoint-{step:07d}"}
            assert state["last"] == f"checkpoint-{step:07d}"
        reread = CheckpointManager(root, keep_best_k=keep, minimize=minimize)
        assert (reread.records, reread.last, reread.best) == (manager.records, manager.last, manager.best)


def test_fallback_warnings_are_warnings(make_trainer, tmp_path, caplog):
    """The fallbacks are logged at WARNING (seen without -v), not INFO."""
    checkpoints = trained(make_trainer, tmp_path, "run", nb_training_epochs=2, keep_best_k=3)
    shutil.rmtree(checkpoints / "checkpoint-0000016")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="medkit_exp.training.checkpoint"):
        assert CheckpointManager(checkpoints).last == "checkpoint-0000008"
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "checkpoint-0000016 as the last checkpoint, but it is missing: using the newest complete" in caplog.text


def test_a_save_that_cannot_write_is_a_checkpoint_error_and_leaves_the_earlier_checkpoints(tmp_path):
    import errno

    root = tmp_path / "checkpoints"
    manager = CheckpointManager(root)
    manager.save(1, 0.5, lambda folder: (folder / "weights.bin").write_bytes(b"one"))
    before = snapshot(root)

    def disk_full(folder: Path) -> None:
        (folder / "weights.bin").write_bytes(b"tw")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(CheckpointError, match="cannot write the checkpoint .*No space left on device") as error:
        manager.save(2, 0.4, disk_full)
    assert error.value.path == str(root / ".tmp-checkpoint-0000002")
    assert snapshot(root) == before and manager.last == "checkpoint-0000001"
