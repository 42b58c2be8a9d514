"""Secrets out of every record: one set of rules for params, tags, logs, spools and files.

What is a secret (replaced by ``"***"``):

- the password inside a URL, whatever its scheme (``https://alice:***@host/repo``,
  ``postgresql://optuna:***@db/x``), and a URL's user when it comes alone (``https://***@host``:
  the form a token takes in a git remote);
- values of secret-named keys: token, password, secret, credential, api key... (see
  :func:`is_secret_key`), in configs and in ``key=value`` / ``key: value`` text;
- strings shaped like well-known access tokens (``hf_...``, ``ghp_...``, ``sk_...``);
- the values of secret-named environment variables (``HF_TOKEN``, ``MLFLOW_TRACKING_PASSWORD``,
  ``AWS_SECRET_ACCESS_KEY``...), wherever they appear in a text.

This module imports only the standard library: the training process, the tracking worker and
the sweeper all use it.

>>> redact_url("postgresql://optuna:PASSWORD@db-host:5432/optuna")
'postgresql://optuna:***@db-host:5432/optuna'
>>> redact_text("cloned from https://alice:s3cret@git.example.org/repo, api_key=abc123")
'cloned from https://alice:***@git.example.org/repo, api_key=***'
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any
from urllib.parse import urlsplit

REDACTED = "***"

_SECRET_ANYWHERE = re.compile(
    r"passw(or)?d|passphrase|secret|credential|api_?key|apikey|access_key|private_key|auth_header|bearer"
)
# "token" only as the last word: hf_token, access_token, auth_token, but not tokenizer or max_tokens.
_SECRET_TOKEN = re.compile(r"(^|_)token$")
_SECRET_VALUE = re.compile(r"\b(?:hf_[A-Za-z0-9]{20,}|(?:sk|ghp|gho|ghs|github_pat)_[A-Za-z0-9_]{20,})\b")
# scheme://netloc: the netloc stops at a path, a query, a fragment, a space, a quote or a bracket
# Each match starts only where a scheme or key can start (the lookbehind) and never backtracks
# (possessive quantifiers): linear time on any text, a 100,000-character word included.
_URL = re.compile(r"(?<![A-Za-z0-9+.\-])([A-Za-z][A-Za-z0-9+.\-]*+://)([^/?#\s'\"<>()\[\]{}\\]*+)")
# key=value or key: value in free text (a log line, a command line, a YAML line)
_KEY_VALUE = re.compile(r"(?<![\w.\-+~])([+~\-]*+[A-Za-z_][\w.\-]*+)(\s*+[=:]\s*+)(['\"]?)([^\s'\",;}\]]++)")
# shorter values would hide ordinary words ("1", "true") and pieces of run ids all over the logs
MIN_ENV_SECRET_LENGTH = 8


def normalise_key(key: str) -> str:
    """The last dotted part of a key, lower case, spaces and dashes as underscores."""
    last = str(key).rsplit(".", 1)[-1]
    return re.sub(r"[\s\-]+", "_", last).lower()


def is_secret_key(key: str) -> bool:
    """True when a key (its last dotted part) names a secret: token, password, api key...

    >>> [is_secret_key(k) for k in ("db.password", "HF_TOKEN", "tokenizer", "max_tokens")]
    [True, True, False, False]
    """
    name = normalise_key(key)
    return bool(_SECRET_ANYWHERE.search(name) or _SECRET_TOKEN.search(name))


def is_secret_value(value: Any) -> bool:
    """True for strings shaped like well-known access tokens (Hugging Face, OpenAI, GitHub)."""
    return isinstance(value, str) and bool(_SECRET_VALUE.fullmatch(value.strip()))


def redact_url(url: str) -> str:
    """``url`` with the password of its user info replaced by ``***`` (a lone user too: a token
    given as the user name); anything that is not a URL with user info comes back unchanged."""
    text = str(url)
    try:
        parts = urlsplit(text)
    except ValueError:  # a malformed netloc ("[" without "]"): fall back to the text rule
        return _URL.sub(_redact_netloc, text)
    if not parts.scheme or not parts.netloc or any(c.isspace() for c in text):
        return _URL.sub(_redact_netloc, text)  # not one URL: the rule for URLs inside a text
    if "@" not in parts.netloc:
        return text
    user_info, _, host = parts.netloc.rpartition("@")
    user, has_password, _ = user_info.partition(":")
    hidden = f"{user}:{REDACTED}" if has_password else REDACTED
    # the netloc replaced in place: urlunsplit would change the rest (the scheme's case, a bare "?")
    return text.replace(parts.netloc, f"{hidden}@{host}", 1)


def _redact_netloc(match: re.Match[str]) -> str:
    scheme, netloc = match.group(1), match.group(2)
    if "@" not in netloc:
        return match.group(0)
    user_info, _, host = netloc.rpartition("@")
    user, has_password, _ = user_info.partition(":")
    return f"{scheme}{user}:{REDACTED}@{host}" if has_password else f"{scheme}{REDACTED}@{host}"


_known_secrets: set[str] = set()  # values of secret-named keys this process has redacted


def remember_secret(value: Any) -> None:
    """Hide ``value`` (a secret-named key's value) wherever this process writes it later, a log
    line printing it without its key included."""
    if isinstance(value, str) and len(value.strip()) >= MIN_ENV_SECRET_LENGTH and value != REDACTED:
        _known_secrets.add(value.strip())


def secret_env_values(environ: Any = None) -> list[str]:
    """Values of the secret-named environment variables and of the secret-named keys redacted so
    far, longest first."""
    environ = os.environ if environ is None else environ
    values = {
        value for name, value in environ.items()
        if is_secret_key(name) and len(value.strip()) >= MIN_ENV_SECRET_LENGTH
    }
    return sorted(values | _known_secrets, key=len, reverse=True)


def _redact_key_value(match: re.Match[str]) -> str:
    key, separator, quote, value = match.groups()
    if not is_secret_key(key.lstrip("+~-")) or value == REDACTED:
        return match.group(0)
    return f"{key}{separator}{quote}{REDACTED}"


def redact_text(text: str, environ: Any = None) -> str:
    """``text`` (a log line, a command line, a YAML document) with every secret it holds
    replaced by ``***``: credentials in URLs, values after secret-named keys, token-shaped
    strings and the values of secret-named environment variables."""
    if not text:
        return text
    for value in secret_env_values(environ):
        text = text.replace(value, REDACTED)
    text = _URL.sub(_redact_netloc, text)
    text = _SECRET_VALUE.sub(REDACTED, text)
    return _KEY_VALUE.sub(_redact_key_value, text)


def redact_value(value: Any) -> Any:
    """A config leaf redacted: strings through :func:`redact_text`; other values unchanged."""
    if isinstance(value, str):
        return REDACTED if is_secret_value(value) else redact_text(value)
    return value


def redact_data(data: Any) -> Any:
    """A copy of JSON-like data (dicts, lists, strings) with secrets redacted: the values of
    secret-named keys become ``***``, every string goes through :func:`redact_text`."""
    if isinstance(data, dict):
        redacted = {}
        for key, value in data.items():
            if is_secret_key(str(key)) and value is not None and not isinstance(value, (dict, list)):
                remember_secret(value)
                redacted[key] = REDACTED
            else:
                redacted[key] = redact_data(value)
        return redacted
    if isinstance(data, (list, tuple)):
        return [redact_data(item) for item in data]
    return redact_value(data)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the message of every record it sees (arguments merged)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: let the handler report it
            return True
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


_factory_installed = False


def install_log_redaction() -> None:
    """Redact every log record of this process when it is created, whatever handler (console,
    Hydra's ``cli.log``, the tracking worker's forwarding) writes it later; idempotent.

    A record factory rather than a handler filter: Hydra replaces the handlers for each job."""
    global _factory_installed
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()
    redacting = RedactingFilter()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redacting.filter(record)
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True
