"""One set of redaction rules for every record: URLs of any scheme, secret-named keys and
environment variables, token-shaped strings; params, command line, logs, spool, YAML files."""

from __future__ import annotations

import io
import json
import logging
import string
from urllib.parse import quote

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from medkit_exp.redaction import install_log_redaction, redact_data, redact_text, redact_url
from medkit_exp.tracking.params import command_line, config_yaml, mlflow_params, redact_argv, redact_yaml_files

SECRET = "s3cretPW"

# 14 credentialed URLs (schemes, a user alone, an @ inside the password, ports, IPv6, queries)
CREDENTIALED = [
    ("https://alice:s3cretPW@git.example.org/repo", "https://alice:***@git.example.org/repo"),
    ("postgresql://optuna:s3cretPW@db-host:5432/optuna", "postgresql://optuna:***@db-host:5432/optuna"),
    ("http://user:s3cretPW@mlflow-host:5000", "http://user:***@mlflow-host:5000"),
    ("postgresql+psycopg2://u:s3cretPW@h/db", "postgresql+psycopg2://u:***@h/db"),
    ("mysql://root:s3cretPW@localhost/db?charset=utf8", "mysql://root:***@localhost/db?charset=utf8"),
    ("https://s3cretPW@github.com/org/repo.git", "https://***@github.com/org/repo.git"),
    ("ftp://u:s3cretPW@[::1]:21/x", "ftp://u:***@[::1]:21/x"),
    ("redis://:s3cretPW@cache:6379/0", "redis://:***@cache:6379/0"),
    ("s3://AKIA:s3cretPW@bucket/key", "s3://AKIA:***@bucket/key"),
    ("https://u:s3cretPW@host", "https://u:***@host"),
    ("https://u:p%40s3cretPW@host/x", "https://u:***@host/x"),
    ("https://u:s3cretPW@h/x#frag", "https://u:***@h/x#frag"),
    ("git+ssh://git:s3cretPW@h/r", "git+ssh://git:***@h/r"),
    ("HTTPS://U:s3cretPW@H/", "HTTPS://U:***@H/"),
]


@pytest.mark.parametrize(("url", "expected"), CREDENTIALED)
def test_a_url_loses_its_password_whatever_its_scheme(url, expected):
    assert redact_url(url) == expected
    assert redact_text(f"cloned from {url} today") == f"cloned from {expected} today"


@pytest.mark.parametrize("text", [
    "https://git.example.org/repo", "sqlite:///mlflow.db", "journal:./optuna.journal", "alice@example.org",
    "optimizer.lr=0.001", "max_tokens=5", "tokenizer=bert", "http://[broken", "",
])
def test_text_without_secrets_is_unchanged(text):
    assert redact_text(text) == text
    assert redact_url(text) == text


_USER = st.text(string.ascii_letters + string.digits + "._-", min_size=1, max_size=12)
_PASSWORD = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=8, max_size=30)
_SCHEME = st.from_regex(r"[a-z][a-z0-9+.\-]{0,10}", fullmatch=True)
_HOST = st.from_regex(r"[a-z][a-z0-9\-]{0,15}(\.[a-z]{2,5})?(:[0-9]{1,5})?", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(_SCHEME, _USER, _PASSWORD, _HOST, st.text(string.ascii_letters + " =,:", max_size=20))
def test_no_password_of_a_url_survives_in_any_text(scheme, user, password, host, around):
    quoted = quote(password, safe="")  # a URL's password is percent-encoded
    assume(quoted not in f"{scheme}://{user}:@{host}/path{around}")  # else it shows in what is kept
    url = f"{scheme}://{user}:{quoted}@{host}/path"
    for text in (url, f"{around}{url} {around}", f"key={url}", f"'{url}'"):
        redacted = redact_text(text)
        assert quoted not in redacted and f"{user}:***@{host}" in redacted
    assert redact_url(url) == f"{scheme}://{user}:***@{host}/path"


def test_secret_named_environment_variables_are_redacted_everywhere(monkeypatch):
    monkeypatch.setenv("MY_API_TOKEN", "envSecretValue123")
    monkeypatch.setenv("DATABASE_PASSWORD", "dbPassValue456")
    monkeypatch.setenv("SHORT_TOKEN", "abc1234")  # too short to hide: ordinary words would vanish
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false-value")  # not a secret-named variable
    text = "header envSecretValue123 and dbPassValue456 and abc1234 false-value"
    assert redact_text(text) == "header *** and *** and abc1234 false-value"
    assert mlflow_params({"note": "uses envSecretValue123"}) == {"note": "uses ***"}


def test_a_secret_keys_value_is_hidden_later_without_its_key():
    from medkit_exp.tracking.params import redact_config, redact_override

    assert redact_config({"component": {"hf_token": "abcdefgh12345"}}) == {"component": {"hf_token": "***"}}
    assert redact_override("+db.password=pw-given-on-cli") == "+db.password=***"
    assert redact_text("loading with abcdefgh12345 from the hub") == "loading with *** from the hub"
    assert redact_data({"api_key": "k-987654321"}) == {"api_key": "***"}
    assert redact_text("k-987654321 and a short one: x") == "*** and a short one: x"


def test_params_tags_and_the_command_line_lose_credentials():
    config = {"tracking": {"tags": {"source": CREDENTIALED[0][0]}, "tracking_uri": "http://u:pw123456@host"},
              "db": {"password": "x", "url": "postgresql://o:s3cretPW@db/x"}, "hf_auth_token": "hf_abc"}
    params = mlflow_params(config)
    assert SECRET not in json.dumps(params) and "pw123456" not in json.dumps(params)
    assert params["tracking.tags.source"] == CREDENTIALED[0][1] and params["db.password"] == "***"
    argv = ["medkit_exp", "+tracking.tags.source=https://alice:s3cretPW@git.example.org/repo",
            "hydra.sweeper.storage=postgresql://optuna:s3cretPW@db-host:5432/optuna",
            "tracking.tracking_uri=http://user:s3cretPW@host", "--token", "s3cretPW", "https://s3cretPW@h/r",
            "'optimizer.lr=choice(1e-4, 1e-3)'"]
    words = redact_argv(argv)
    assert SECRET not in command_line(argv) and SECRET not in " ".join(words)
    assert words[2] == "hydra.sweeper.storage=postgresql://optuna:***@db-host:5432/optuna"
    assert words[-1] == argv[-1]
    artifact = config_yaml(yaml.safe_dump(config), None)
    assert SECRET not in artifact and "hf_abc" not in artifact and "https://alice:***@git.example.org/repo" in artifact


@pytest.mark.parametrize(("text", "expected"), [
    ("--password=abc123", "--password=***"), ("+db.password=abc123", "+db.password=***"),
    ("~hf_token=xyz", "~hf_token=***"), ("x api_key: 'k1'", "x api_key: '***'"), ("AUTH_TOKEN=v,seed=1", "AUTH_TOKEN=***,seed=1"),
    ("max_tokens=5 tokenizer=bert", "max_tokens=5 tokenizer=bert"),
])
def test_secret_named_keys_in_free_text(text, expected):
    assert redact_text(text) == expected


@pytest.mark.parametrize("text", ["a." * 50000, "a" * 100000, "a-" * 50000 + "://x", "a=" * 50000, "-" * 100000 + "a=",
                                  "http://" + "@" * 100000, ("https://u:p@h " * 8000), "hf_" + "a" * 100000 + "_"])
def test_redaction_takes_linear_time_on_long_texts(text):
    """A long log line or value (100,000 characters) is redacted at once (it took minutes)."""
    import time

    started = time.perf_counter()
    redact_text(text)
    assert time.perf_counter() - started < 1.0


def test_redact_data_keeps_structure_and_non_secrets():
    data = {"token": "t0k3n-value", "n": 3, "urls": ["https://a:s3cretPW@h", "plain"], "nested": {"api_key": None}}
    assert redact_data(data) == {"token": "***", "n": 3, "urls": ["https://a:***@h", "plain"], "nested": {"api_key": None}}


def test_log_records_are_redacted_when_created_whatever_the_handler():
    install_log_redaction()
    install_log_redaction()  # idempotent
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    log = logging.getLogger("test_redaction_logs")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("storage %s unreachable, password=%s", "postgresql://o:s3cretPW@db/x", "pw-in-args")
        try:
            raise RuntimeError("cannot reach https://alice:s3cretPW@git.example.org")
        except RuntimeError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    output = stream.getvalue()
    assert SECRET not in output and "pw-in-args" not in output
    assert "postgresql://o:***@db/x" in output and "RuntimeError: cannot reach https://alice:***@" in output


def test_spool_files_hold_no_secret(tmp_path):
    from medkit_exp.tracking.messages import LogMetrics, LogParams, SetTags
    from medkit_exp.tracking.spool import RunSpool, replay_uri

    spool = RunSpool(tmp_path / "spool")
    uri = "http://user:s3cretPW@mlflow-host:5000"
    spool.write_spec({"tracking_uri": uri, "run_name": "r", "run_id": None})
    spool.append([
        SetTags({"command": "python x.py db=postgresql://o:s3cretPW@h/x", "source": CREDENTIALED[5][0]}),
        LogParams({"api_key": "s3cretPW", "url": CREDENTIALED[1][0]}),
        LogMetrics((("loss", 1.0, 0, 1),)),
    ])
    files = b"".join(path.read_bytes() for path in spool.directory.iterdir())
    assert SECRET.encode() not in files
    ops = spool.pending()
    assert ops[1].params == {"api_key": "***", "url": CREDENTIALED[1][1]} and ops[2].points == (("loss", 1.0, 0, 1),)
    spec = spool.read_spec()
    assert spec["tracking_uri"] == "http://user:***@mlflow-host:5000"
    assert replay_uri(spec, uri) == uri  # the training that replays knows the password
    assert replay_uri(spec, "http://other:pw@elsewhere") == spec["tracking_uri"]


def test_hydra_files_are_rewritten_without_secrets_and_others_left_alone(tmp_path):
    hydra = tmp_path / ".hydra"
    hydra.mkdir()
    (hydra / "overrides.yaml").write_text("- +tracking.tags.source=https://alice:s3cretPW@git.example.org/repo\n- seed=1\n")
    (hydra / "config.yaml").write_text("db:\n  password: s3cretPW\n  host: h\n")
    clean = "seed: 1\nname: x  # a comment kept\n"
    (hydra / "hydra.yaml").write_text(clean)
    rewritten = redact_yaml_files(tmp_path)
    assert sorted(p.name for p in rewritten) == ["config.yaml", "overrides.yaml"]
    assert all(SECRET not in p.read_text() for p in hydra.iterdir())
    assert yaml.safe_load((hydra / "overrides.yaml").read_text())[0] == "+tracking.tags.source=https://alice:***@git.example.org/repo"
    assert (hydra / "hydra.yaml").read_text() == clean


def test_the_sweep_results_file_holds_no_secret(tmp_path):
    from medkit_exp.sweeps.results import write_results

    path = write_results({"storage": "postgresql://optuna:s3cretPW@db/x", "best_params": {"u": CREDENTIALED[0][0]},
                          "mlflow_tracking_uri": "http://u:s3cretPW@h"}, tmp_path)
    assert SECRET not in path.read_text() and "postgresql://optuna:***@db/x" in path.read_text()
