"""Params flattening and limits; secrets never reach MLflow."""

from __future__ import annotations

import sys
from pathlib import Path

from medkit_exp.tracking.params import (
    command_line,
    flatten_params,
    is_secret_key,
    mlflow_params,
    redact_config,
    redact_override,
    truncate_value,
)

TOKEN = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"


def test_flatten_nested_config_to_dotted_keys():
    config = {"a": {"b": {"c": 1}, "d": [1, 2]}, "e": None, "f": {}, "g": True}
    assert flatten_params(config) == {"a.b.c": "1", "a.d": "[1, 2]", "e": "None", "f": "{}", "g": "True"}


def test_param_keys_and_values_fit_mlflow():
    params = mlflow_params({"bad key!": {"x" * 300: "v"}, "long": "y" * 6500})
    assert all(len(key) <= 250 for key in params)
    assert "bad key_.xxx" in next(iter(params))[:12]
    assert len(params["long"]) == 6000 and params["long"].endswith("[truncated; full value in config/config.yaml]")
    assert truncate_value("short") == "short"


def test_secret_looking_keys():
    secrets = ["password", "db_password", "passwd", "api_key", "apiKey", "OPENAI_API_KEY", "client_secret",
               "aws_secret_access_key", "hf_token", "access_token", "token", "credentials", "private_key"]
    harmless = ["tokenizer", "max_tokens", "token_type_ids", "nb_tokens", "lr", "model.name", "pad_token_id"]
    assert [key for key in secrets if not is_secret_key(key)] == []
    assert [key for key in harmless if is_secret_key(key)] == []


def test_redact_config_and_overrides():
    config = {"model": {"hf_auth_token": TOKEN, "name": "bert"}, "db": {"password": "pw", "user": "me"},
              "services": [{"api_key": "k"}], "note": TOKEN}
    assert redact_config(config) == {"model": {"name": "bert"}, "db": {"password": "***", "user": "me"},
                                     "services": [{"api_key": "***"}], "note": "***"}
    assert redact_override(f"component.hf_auth_token={TOKEN}") is None
    assert redact_override("+db.password=pw") == "+db.password=***"
    assert redact_override("trainer.lr=0.1") == "trainer.lr=0.1"
    line = command_line(["train.py", "--api-key", "k", f"x.hf_auth_token={TOKEN}", "y=1", TOKEN])
    assert line == "train.py --api-key '***' y=1 '***'"


def test_secrets_never_reach_mlflow(make_trainer, make_callback, client, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["medkit-exp", f"component.hf_auth_token={TOKEN}", "db.password=pw", "trainer.lr=0.1"])
    params = {"component": {"hf_auth_token": TOKEN, "name": "tiny"}, "db": {"password": "pw", "api_key": "k"}}
    config_yaml = f"component:\n  hf_auth_token: {TOKEN}\n  name: tiny\ndb:\n  password: pw\n  api_key: k\n"
    callback = make_callback(
        params=params, config_yaml=config_yaml, overrides=[f"component.hf_auth_token={TOKEN}", "db.password=pw"],
        tags={"github_token": "ghp_x"}, log_checkpoints=False, plots=False,
    )
    make_trainer(callback=[callback], nb_training_epochs=1).train()

    run = client.get_run(callback.run_id)
    assert run.data.params == {"component.name": "tiny", "db.password": "***", "db.api_key": "***"}
    assert run.data.tags["command"] == "medkit-exp 'db.password=***' trainer.lr=0.1"
    assert run.data.tags["github_token"] == "***"
    downloaded = Path(client.download_artifacts(callback.run_id, "config", str(tmp_path / "dl")))
    texts = {path.name: path.read_text() for path in downloaded.iterdir()}
    assert texts["overrides.yaml"] == "- db.password=***\n"
    assert "password: '***'" in texts["config.yaml"] and "name: tiny" in texts["config.yaml"]
    everything = " ".join([*texts.values(), *run.data.params, *run.data.params.values(), *run.data.tags.values()])
    assert "hf_auth_token" not in everything and TOKEN not in everything and "pw\n" not in everything
    for path in (tmp_path / "run").rglob("*"):  # nor in the local copies made for MLflow
        if path.is_file() and path.suffix in (".yaml", ".json", ".jsonl"):
            assert TOKEN not in path.read_text(), path
