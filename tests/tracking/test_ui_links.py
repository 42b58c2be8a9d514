"""The run summary's MLflow link opens the run in the UI's model-training view (MLflow 3.17 reads
``workflowType`` from the URL, not the experiment's kind tag): real sqlite store, real app run."""

from __future__ import annotations

from medkit_exp.tracking.ui_links import experiment_url, summary_lines
from tests.tracking.helpers import free_port


def test_a_local_store_says_how_to_start_the_ui_and_links_the_run_in_the_training_view(client, tracking_uri,
                                                                                          experiment_name):
    experiment_id = client.create_experiment(experiment_name)
    run_id = client.create_run(experiment_id).info.run_id
    lines = summary_lines(tracking_uri, run_id, experiment_id)
    assert lines == [
        f"  MLflow run: {run_id} ({tracking_uri})",
        f"  open the MLflow UI: mlflow ui --backend-store-uri {tracking_uri}",
        f"  the run in the UI: http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}"
        "?workflowType=machine_learning",
    ]
    assert experiment_url("http://127.0.0.1:5000", experiment_id) == (
        f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs?workflowType=machine_learning")


def test_a_server_the_tracker_never_reached_gives_its_redacted_address_and_no_run_link():
    uri = f"http://alice:pw-1234567@127.0.0.1:{free_port()}"
    lines = summary_lines(uri, "0" * 32, None)  # the tracker knows no experiment: it never reached MLflow
    assert not any("pw-1234567" in line for line in lines)
    assert lines[-1].startswith("  open the MLflow UI: http://alice:***@127.0.0.1:")
    assert not any("/runs/" in line for line in lines)


def test_the_app_prints_the_runs_training_view_link(app_run, client):
    experiment_id = client.get_run(app_run["run_id"]).info.experiment_id
    link = f"/#/experiments/{experiment_id}/runs/{app_run['run_id']}?workflowType=machine_learning"
    assert f"  the run in the UI: http://127.0.0.1:5000{link}" in app_run["stdout"]
