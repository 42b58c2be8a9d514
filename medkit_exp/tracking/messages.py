"""What a training asks of MLflow, each request defined once as a typed message.

Two kinds of messages:

- **Operations** on a run (:data:`Operation`): :class:`LogMetrics`, :class:`LogParams`,
  :class:`SetTags`, :class:`LogInputs`, :class:`LogArtifacts`, :class:`SetStatus`. They are what
  the background sender sends, what the spool keeps on disk (``ops.jsonl``, one JSON record per
  line: :func:`to_record` / :func:`from_record`) and what its replay sends later;
  :func:`medkit_exp.tracking.ops.apply_op` is the one place that executes them against MLflow.
- **Session requests** (:data:`SessionRequest`): :class:`Warm`, :class:`Open`, :class:`Describe`,
  :class:`Wake`, :class:`Flush`, :class:`State`, :class:`RunTask`, :class:`StopMonitor`,
  :class:`Close`, plus every operation (submitted to the run). The session of a run
  (:class:`medkit_exp.tracking.tracker.RunTracker`) handles them, in the training process or in
  the tracking worker, which receives them pickled over a pipe.

Every operation is idempotent, metrics included: the sender drops points whose (key, step) the
run already has, so replaying something that did arrive adds nothing.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Union

MetricPoint = tuple[str, float, int, int]  # key, value, timestamp (ms), step


def now_ms() -> int:
    return int(time.time() * 1000)


def is_number(value: Any) -> bool:
    """A metric value: a real number (numpy's included) or a one-element tensor/array; not a bool."""
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Real):
        return True
    return hasattr(value, "item") and tuple(getattr(value, "shape", (0,))) in ((), (1,))


# ---------------------------------------------------------------------- operations on a run
@dataclass(frozen=True)
class LogMetrics:
    points: tuple[MetricPoint, ...]
    kind: ClassVar[str] = "metrics"

    @classmethod
    def at_step(cls, metrics: Mapping[str, Any], step: int, timestamp: int | None = None) -> LogMetrics:
        timestamp = now_ms() if timestamp is None else timestamp
        return cls(tuple((key, float(value), timestamp, int(step)) for key, value in metrics.items()))


@dataclass(frozen=True)
class LogParams:
    """Only the params the run lacks are logged (a resumed run keeps its params)."""

    params: Mapping[str, Any]
    kind: ClassVar[str] = "params"


@dataclass(frozen=True)
class SetTags:
    tags: Mapping[str, Any]
    kind: ClassVar[str] = "tags"


@dataclass(frozen=True)
class LogInputs:
    """Dataset inputs: ``{"entity": {...}, "context": "train"}`` each."""

    datasets: tuple[Mapping[str, Any], ...]
    kind: ClassVar[str] = "inputs"


@dataclass(frozen=True)
class LogArtifacts:
    """A file or a folder's files; ``link``: hard-linked into a local store (files written once)."""

    local_path: str
    artifact_path: str | None = None
    link: bool = False
    kind: ClassVar[str] = "artifact"


@dataclass(frozen=True)
class SetStatus:
    status: str  # RUNNING | FINISHED | FAILED | KILLED
    end_time: int | None = None
    kind: ClassVar[str] = "status"


Operation = Union[LogMetrics, LogParams, SetTags, LogInputs, LogArtifacts, SetStatus]
OPERATION_TYPES: tuple[type, ...] = (LogMetrics, LogParams, SetTags, LogInputs, LogArtifacts, SetStatus)
_BY_KIND: dict[str, type] = {cls.kind: cls for cls in OPERATION_TYPES}


def to_record(op: Operation) -> dict[str, Any]:
    """The operation as a JSON record (the spool's line format, unchanged since dict operations)."""
    record = {"op": op.kind, **asdict(op)}
    if isinstance(op, LogMetrics):
        record["metrics"] = [list(point) for point in record.pop("points")]
    return record


def from_record(record: Mapping[str, Any]) -> Operation:
    """The operation a JSON record (a spool line) holds."""
    cls = _BY_KIND.get(record.get("op", ""))
    if cls is None:
        raise ValueError(f"unknown tracking operation {record.get('op')!r}")
    if cls is LogMetrics:
        return LogMetrics(tuple(tuple(point) for point in record["metrics"]))  # type: ignore[misc]
    if cls is LogInputs:
        return LogInputs(tuple(record["datasets"]))
    names = {f.name for f in fields(cls)}
    return cls(**{key: value for key, value in record.items() if key in names})  # type: ignore[return-value]


# ---------------------------------------------------------------------- session requests
@dataclass(frozen=True)
class Warm:
    """Import ``modules`` and open the store ahead of the run (a worker started early)."""

    tracking_uri: str | None
    modules: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str


@dataclass(frozen=True)
class Open:
    """Reattach to the run or create it; the tracking environment and working directory to use."""

    request: Mapping[str, Any]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None


@dataclass(frozen=True)
class Describe:
    """Tags, params, dataset inputs, the config artifact; the system metrics monitor."""


@dataclass(frozen=True)
class Wake:
    """Send what is queued now rather than at the next interval."""


@dataclass(frozen=True)
class Flush:
    timeout: float | None = None


@dataclass(frozen=True)
class State:
    """The run id and whether MLflow answers."""


@dataclass(frozen=True)
class RunTask:
    """``function(run=<the run's handle>, **kwargs)`` where the run's MLflow work is done."""

    function: Callable[..., None]  # module-level: pickled by its module and name
    kwargs: Mapping[str, Any]


@dataclass(frozen=True)
class StopMonitor:
    pass


@dataclass(frozen=True)
class Close:
    timeout: float | None = None


SessionRequest = Union[Warm, Open, Describe, Wake, Flush, State, RunTask, StopMonitor, Close, Operation]


# ---------------------------------------------------------------------- worker -> training process
@dataclass(frozen=True)
class Reply:
    """The answer to the request numbered ``request_id``: its result, or the error's text."""

    request_id: int
    result: Any = None
    error: str | None = None


@dataclass(frozen=True)
class ForwardedLog:
    """A log record of the worker, re-emitted by the training process's loggers."""

    fields: Mapping[str, Any]
