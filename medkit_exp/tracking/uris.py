"""Tracking URIs and the environment MLflow reads: resolved, set for a block, passed to a worker."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping

# Used only when these are unset: MLflow's defaults (7 retries with exponential backoff, 120 s
# timeout) would stall a training for minutes when the server is away, while the spool makes
# retries unnecessary.
HTTP_ENV_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}

# What MLflow, its artifact stores and the tasks a worker runs (a model loaded by transformers)
# read from the environment: the tracking worker gets these from the training process at each
# run, not the whole environment (which it inherited when it started).
TRACKING_ENV_PREFIXES = ("MLFLOW_", "AWS_", "AZURE_", "GOOGLE_", "DATABRICKS_", "HF_", "TRANSFORMERS_", "MEDKIT_")
TRACKING_ENV_NAMES = frozenset({
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "TMPDIR",
})


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """The tracking URI a run uses, made explicit.

    ``tracking_uri`` if given; else MLflow 3's own resolution, ``mlflow.get_tracking_uri()``:
    ``mlflow.set_tracking_uri()``'s value, else the ``MLFLOW_TRACKING_URI`` environment variable,
    else ``./mlruns`` (``file:``) when that folder already holds file-store runs, else
    ``sqlite:///mlflow.db`` in the current working directory (as an absolute path).
    """
    if tracking_uri:
        return str(tracking_uri)
    import mlflow

    return mlflow.get_tracking_uri()


def is_remote(tracking_uri: str) -> bool:
    return tracking_uri.startswith(("http://", "https://"))


def configure_http_env(tracking_uri: str, max_retries: int | None = None, timeout: int | None = None) -> None:
    """Short HTTP retries and timeout for a remote tracking URI, unless the user set them.

    MLflow reads these environment variables at each request, so they apply to the process.
    """
    if not is_remote(tracking_uri):
        return
    values = dict(HTTP_ENV_DEFAULTS)
    if max_retries is not None:
        values["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(max_retries)
    if timeout is not None:
        values["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(timeout)
    for name, value in values.items():
        os.environ.setdefault(name, value)


def _is_tracking_variable(name: str) -> bool:
    return name.startswith(TRACKING_ENV_PREFIXES) or name in TRACKING_ENV_NAMES


def tracking_environment() -> dict[str, str]:
    """This process's variables that MLflow's work reads (see ``TRACKING_ENV_PREFIXES``)."""
    # Not os.environ.items(): it lists the names, then reads each one, and a variable another
    # thread removes in between (MLflow's telemetry thread removes its session id) raises KeyError.
    found = {name: os.environ.get(name) for name in list(os.environ) if _is_tracking_variable(name)}
    return {name: value for name, value in found.items() if value is not None}


def apply_tracking_environment(env: Mapping[str, str]) -> None:
    """Make this process's tracking variables exactly ``env``'s (a worker serving a new run):
    those ``env`` lacks are removed, the others set; any other variable is left alone."""
    for name in [name for name in list(os.environ) if _is_tracking_variable(name) and name not in env]:
        os.environ.pop(name, None)
    os.environ.update(env)


@contextlib.contextmanager
def fluent_tracking_uri(tracking_uri: str) -> Iterator[None]:
    """MLflow's fluent (process-wide) tracking URI set to ``tracking_uri`` for a block, restored after.

    ``mlflow.set_tracking_uri`` also sets ``MLFLOW_TRACKING_URI``, so that variable tells the
    previous state: when it was unset, the URI was never set and is unset again
    (``set_tracking_uri(None)``), so that MLflow's default resolution applies as before.
    """
    import mlflow

    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # type: ignore[arg-type] - None unsets it
