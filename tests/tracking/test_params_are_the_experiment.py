"""Params are the experiment, tags the circumstances: two runs that differ only by their folder
and name have the same params (composed from conf/ as the application does)."""

from __future__ import annotations

from omegaconf import OmegaConf, open_dict

from medkit_exp.cli import run_params
from medkit_exp.tracking.context import run_tags
from medkit_exp.tracking.params import mlflow_params
from tests.test_cli import composed


def _params(output_dir: str, run_name: str) -> dict[str, str]:
    cfg = composed("+experiment=ner", f"paths.output_dir={output_dir}", f"tracking.run_name={run_name}")
    with open_dict(cfg):
        del cfg["hydra"]  # the application's cfg has no hydra node
    config = OmegaConf.to_container(cfg, resolve=True)
    return mlflow_params(run_params(config))


def test_two_runs_differing_only_by_folder_and_name_have_the_same_params(tmp_path):
    first = _params(str(tmp_path / "run-a"), "trial-0")
    second = _params(str(tmp_path / "run-b"), "trial-1")
    assert first == second
    assert not any(str(tmp_path) in value for value in first.values())
    assert {"paths.output_dir", "trainer.output_dir", "tracking.run_name"}.isdisjoint(first)
    assert "trainer.learning_rate" in first  # what a user varies stays
    tags = run_tags("ner", "trial-0", None, tmp_path / "run-a")  # the circumstances are tags
    assert tags["output_dir"] == str((tmp_path / "run-a").resolve()) and tags["run_name"] == "trial-0"


def test_wiring_and_tracking_settings_are_not_params(tmp_path):
    """``_target_``/``_partial_``, the printer and the tracking group (its URI may hold a password)
    are how the run is wired and recorded; early stopping's settings are the experiment."""
    cfg = composed("+experiment=ner", "callbacks=early_stopping", f"paths.output_dir={tmp_path}",
                   "tracking.tracking_uri=http://user:s3cret@host:5000")
    with open_dict(cfg):
        del cfg["hydra"]
    params = mlflow_params(run_params(OmegaConf.to_container(cfg, resolve=True)))
    assert not [key for key in params if key.endswith(("_target_", "_partial_"))]
    assert not [key for key in params if key.startswith(("tracking.", "callbacks.printer", "callbacks.tracking"))]
    assert not any("s3cret" in value or "user" in value for value in params.values())
    assert params["callbacks.early_stopping.patience"] == "3" and "callbacks.early_stopping.metric" in params
    assert "trainer.learning_rate" in params and "component.model_name_or_path" in params
