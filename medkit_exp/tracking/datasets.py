"""Describe training and evaluation data as MLflow dataset inputs (name, digest, source, counts).

>>> info = describe_dataset("demo-train", [("a text", 1), ("another", 0)], "brat:demo/train", context="train")
>>> info.count, len(info.digest)
(2, 16)

The digest is a SHA-256 over each record's canonical form: ``to_dict()`` as sorted JSON when
the record has one (medkit documents, dataclasses with ``to_dict``), else its ``repr``. The
same records in the same order have the same digest, in any process. Only metadata goes to
MLflow (a dataset input of source type ``medkit_exp``: name, digest, source, record count): the
records are not uploaded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

DIGEST_LENGTH = 16  # MLflow accepts at most 36 characters
SOURCE_TYPE = "medkit_exp"
CONTEXT_TAG = "mlflow.data.context"


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset as MLflow records it; ``context`` becomes the input tag ("train", "eval"...)."""

    name: str
    digest: str
    source: str
    count: int
    context: str


def record_fingerprint(record: Any) -> bytes:
    """The canonical bytes of one record: sorted-JSON ``to_dict()`` if it has one, else ``repr``."""
    to_dict = getattr(record, "to_dict", None)
    if callable(to_dict):
        return json.dumps(to_dict(), sort_keys=True, default=str, ensure_ascii=False).encode("utf-8")
    return repr(record).encode("utf-8")


def dataset_digest(records: Iterable[Any]) -> tuple[str, int]:
    """``(digest, count)`` of records, in order."""
    sha = hashlib.sha256()
    count = 0
    for record in records:
        fingerprint = record_fingerprint(record)
        sha.update(len(fingerprint).to_bytes(8, "little"))  # no ambiguity at record boundaries
        sha.update(fingerprint)
        count += 1
    return sha.hexdigest()[:DIGEST_LENGTH], count


def describe_dataset(name: str, records: Iterable[Any], source: str, context: str | None = None) -> DatasetInfo:
    """A :class:`DatasetInfo` for ``records`` read from ``source`` (a path, URI or description)."""
    digest, count = dataset_digest(records)
    return DatasetInfo(name=name, digest=digest, source=str(source), count=count, context=context or name)


def entity_dict(info: DatasetInfo) -> dict[str, Any]:
    """The fields of the ``mlflow.entities.Dataset`` of ``info``, JSON-serializable (for the spool):
    a metadata-only dataset (no schema) whose source is ``{"uri": source}`` and whose profile is
    the number of records. Built from the public entity's fields: nothing of ``mlflow.data`` runs."""
    return {
        "name": info.name,
        "digest": info.digest,
        "source_type": SOURCE_TYPE,
        "source": json.dumps({"uri": info.source}),
        "schema": None,
        "profile": json.dumps({"num_records": info.count}),
    }


def dataset_input(entity: dict[str, Any], context: str) -> Any:
    """An ``mlflow.entities.DatasetInput`` from an :func:`entity_dict`, for ``MlflowClient.log_inputs``."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    return DatasetInput(dataset=Dataset(**entity), tags=[InputTag(key=CONTEXT_TAG, value=context)])
