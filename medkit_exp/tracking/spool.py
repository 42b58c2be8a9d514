"""The local spool: what could not be sent to MLflow, kept on disk and replayed later.

Layout, one folder per tracked run (``local_id``, stable across resumes)::

    OUTPUT_DIR/mlflow_spool/<local_id>/run.json    the run: tracking URI, experiment, name, run id
                                       ops.jsonl   operations not yet sent, in order (JSON records
                                               of :mod:`~medkit_exp.tracking.messages`)
                                       acked       how many lines of ops.jsonl were sent

Replay sends the operations after ``acked`` (creating the run first if it was never created)
and advances ``acked`` as they arrive; metric points the run already has (same key and step)
are skipped, so a point whose acknowledgement was lost is not sent twice. When everything
arrived, ``ops.jsonl`` and ``acked`` are removed; ``run.json`` stays, so a resumed training
finds the run it belongs to.

Replay happens by itself when the server comes back during training, at the end of training,
and when the next training starts in the same output folder; or by hand::

    python -m medkit_exp.tracking.spool OUTPUT_DIR [--tracking-uri URI]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medkit_exp.redaction import REDACTED, redact_data, redact_url
from medkit_exp.tracking.messages import LogMetrics, Operation, from_record, to_record
from medkit_exp.tracking.ops import MetricDeduper, create_run, merge_metric_ops, redact_op, send_op

logger = logging.getLogger(__name__)

SPOOL_DIR = "mlflow_spool"
RUN_FILE = "run.json"
OPS_FILE = "ops.jsonl"
ACKED_FILE = "acked"


class RunSpool:
    """The spool folder of one run."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    @classmethod
    def for_run(cls, output_dir: str | Path, local_id: str) -> RunSpool:
        return cls(Path(output_dir) / SPOOL_DIR / local_id)

    # ------------------------------------------------------------------ the run
    def read_spec(self) -> dict[str, Any] | None:
        path = self.directory / RUN_FILE
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def write_spec(self, spec: dict[str, Any]) -> None:
        """Write ``run.json``, secrets redacted: a password in the tracking URI is not kept (the
        replay takes the URI from the training that replays, see :func:`replay_uri`)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.directory / RUN_FILE, json.dumps(redact_data(spec), indent=1))

    def set_run_id(self, run_id: str) -> None:
        spec = self.read_spec() or {}
        spec["run_id"] = run_id
        self.write_spec(spec)

    # ------------------------------------------------------------------ operations
    def append(self, ops: Sequence[Operation]) -> None:
        """Append operations, on disk when this returns."""
        if not ops:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / OPS_FILE, "a", encoding="utf-8") as handle:
            for op in ops:
                handle.write(json.dumps(to_record(redact_op(op))) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _lines(self) -> list[str]:
        path = self.directory / OPS_FILE
        if not path.exists():
            return []
        # A line cut by a crash mid-write is not JSON: it is the last one, and it was never sent.
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def acked(self) -> int:
        path = self.directory / ACKED_FILE
        return int(path.read_text().strip() or 0) if path.exists() else 0

    def pending(self) -> list[Operation]:
        """Operations not yet acknowledged, in order."""
        ops = []
        for line in self._lines()[self.acked():]:
            try:
                ops.append(from_record(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                logger.warning("Skipping a damaged line of %s", self.directory / OPS_FILE)
        return ops

    def has_pending(self) -> bool:
        return len(self._lines()) > self.acked()

    def ack(self, count: int) -> None:
        _atomic_write(self.directory / ACKED_FILE, str(count))

    def clear(self) -> None:
        """Everything was sent: drop the operations, keep run.json."""
        for name in (OPS_FILE, ACKED_FILE):
            (self.directory / name).unlink(missing_ok=True)


def replay(spool: RunSpool, client: Any) -> str:
    """Send a spool's pending operations (creating the run if needed); the run id.

    MLflow's exceptions propagate (the spool keeps what was not acknowledged).
    """
    spec = spool.read_spec()
    if spec is None:
        raise FileNotFoundError(f"{spool.directory / RUN_FILE} is missing: cannot tell which run the spool is for")
    run_id = spec.get("run_id")
    if not run_id:
        run_id = create_run(client, spec)
        spool.set_run_id(run_id)
        logger.info("Created MLflow run %s for spooled run %s", run_id, spool.directory.name)
    ops = spool.pending()
    if not ops:
        spool.clear()
        return run_id
    deduper = MetricDeduper()
    deduper.load_from_run(client, run_id, {p[0] for op in ops if isinstance(op, LogMetrics) for p in op.points})
    done = spool.acked()
    # Merging keeps order; ``acked`` advances by the source lines each merged group covers.
    for group in _groups(ops):
        for op in merge_metric_ops(group):
            send_op(client, run_id, op, deduper)
        done += len(group)
        spool.ack(done)
    spool.clear()
    logger.info("Replayed %d spooled operations into MLflow run %s", len(ops), run_id)
    return run_id


def _groups(ops: list[Operation]) -> list[list[Operation]]:
    """Runs of consecutive metric operations, and every other operation alone."""
    groups: list[list[Operation]] = []
    for op in ops:
        if isinstance(op, LogMetrics) and groups and isinstance(groups[-1][0], LogMetrics):
            groups[-1].append(op)
        else:
            groups.append([op])
    return groups


def run_spools(output_dir: str | Path) -> list[RunSpool]:
    root = Path(output_dir) / SPOOL_DIR
    if not root.is_dir():
        return []
    return [RunSpool(path) for path in sorted(root.iterdir()) if (path / RUN_FILE).exists()]


def replay_spool(output_dir: str | Path, tracking_uri: str | None = None) -> dict[str, str]:
    """Replay every spool of ``output_dir`` (to ``tracking_uri``, else the URI each spool recorded).

    Returns ``{local_id: run_id}`` of the spools replayed completely; a spool that fails stays.
    """
    from mlflow import MlflowClient

    replayed = {}
    for spool in run_spools(output_dir):
        if not spool.has_pending() and (spool.read_spec() or {}).get("run_id"):
            continue
        uri = tracking_uri or replay_uri(spool.read_spec() or {}, None)
        try:
            replayed[spool.directory.name] = replay(spool, MlflowClient(uri))
        except Exception as error:  # noqa: BLE001 - the spool stays for a later try
            logger.warning("Could not replay %s to %s: %s", spool.directory, uri, error)
    return replayed


def replay_uri(spec: dict[str, Any], current: str | None) -> str | None:
    """The URI to replay a spool to: the one it recorded; when its password was redacted, the
    ``current`` URI if it is the same one with its password (else the recorded one, which fails
    to authenticate and keeps the spool: ``--tracking-uri`` gives the URI by hand)."""
    recorded = spec.get("tracking_uri")
    if recorded and REDACTED in recorded and current and redact_url(current) == recorded:
        return current
    if recorded and REDACTED in recorded:
        logger.warning("Spool %s: its tracking URI's password is not stored; give the URI with --tracking-uri",
                       recorded)
    return recorded or current


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Send what a training kept in OUTPUT_DIR/mlflow_spool to MLflow.")
    parser.add_argument("output_dir")
    parser.add_argument("--tracking-uri", default=None, help="default: the URI each spooled run recorded")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    pending = [s for s in run_spools(args.output_dir) if s.has_pending() or not (s.read_spec() or {}).get("run_id")]
    replayed = replay_spool(args.output_dir, args.tracking_uri)
    for local_id, run_id in replayed.items():
        logger.info("%s -> run %s", local_id, run_id)
    return 0 if len(replayed) == len(pending) else 1


if __name__ == "__main__":
    raise SystemExit(main())
