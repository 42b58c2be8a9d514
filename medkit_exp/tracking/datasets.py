"""Describe training and evaluation data as MLflow dataset inputs (name, digest, source, counts).

>>> info = describe_dataset("demo-train", [("a text", 1), ("another", 0)], "brat:demo/train", context="train")
>>> info.count, len(info.digest)
(2, 16)

The digest is a SHA-256 over each record's canonical form: ``to_dict()`` as sorted JSON when
the record has one (medkit documents, dataclasses with ``to_dict``), else its ``repr``. The
same records in the same order have the same digest, in any process. Only metadata goes to
MLflow (an ``mlflow.data`` dataset of source type ``medkit_exp``): the records are not uploaded.
"""

from __future__ import annotations

import functools
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


def mlflow_dataset(info: DatasetInfo) -> Any:
    """The ``mlflow.data`` dataset of ``info`` (a metadata-only dataset with a record count)."""
    return _classes()[1](info)


def entity_dict(info: DatasetInfo) -> dict[str, Any]:
    """The fields of the ``mlflow.entities.Dataset`` of ``info``, JSON-serializable (for the spool)."""
    entity = mlflow_dataset(info)._to_mlflow_entity()
    return {
        "name": entity.name,
        "digest": entity.digest,
        "source_type": entity.source_type,
        "source": entity.source,
        "schema": entity.schema,
        "profile": entity.profile,
    }


def dataset_input(entity: dict[str, Any], context: str) -> Any:
    """An ``mlflow.entities.DatasetInput`` from an :func:`entity_dict`."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    return DatasetInput(dataset=Dataset(**entity), tags=[InputTag(key=CONTEXT_TAG, value=context)])


@functools.lru_cache(maxsize=1)
def _classes() -> tuple[type, type]:
    """The mlflow.data classes, defined on first use so importing this module stays cheap."""
    from mlflow.data.dataset_source import DatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    class MedkitDatasetSource(DatasetSource):
        """A source string (path, URI or description) of data read by medkit_exp."""

        def __init__(self, uri: str):
            self.uri = uri

        @staticmethod
        def _get_source_type() -> str:
            return SOURCE_TYPE

        def load(self, **kwargs: Any) -> Any:
            raise NotImplementedError("a medkit_exp source only describes where the data came from")

        @staticmethod
        def _can_resolve(raw_source: Any) -> bool:
            return False

        @classmethod
        def _resolve(cls, raw_source: Any) -> Any:
            raise NotImplementedError

        def to_dict(self) -> dict[str, Any]:
            return {"uri": self.uri}

        @classmethod
        def from_dict(cls, source_dict: dict[str, Any]) -> Any:
            return cls(source_dict["uri"])

    class RecordsDataset(MetaDataset):
        """Metadata of a list of records: name, digest, source and the number of records."""

        def __init__(self, info: DatasetInfo):
            self.count = info.count
            super().__init__(MedkitDatasetSource(info.source), name=info.name, digest=info.digest)

        @property
        def profile(self) -> Any:
            return {"num_records": self.count}

        def to_dict(self) -> dict[str, str]:
            config = super().to_dict()
            config["profile"] = json.dumps(self.profile)
            return config

    return MedkitDatasetSource, RecordsDataset
