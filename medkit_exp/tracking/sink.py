"""Asynchronous, batched sending of tracking operations, with a local spool when MLflow is away.

The training thread only puts operations on a queue (microseconds). A background thread wakes
every ``flush_interval`` seconds (or on :meth:`AsyncRunLogger.flush`), merges the metric
operations into ``log_batch`` calls of up to 1000 points, and sends them in order.

When a send fails for a reason other than a rejected value (connection refused, timeout,
server error), the logger goes offline: it warns once, appends the operation and every later
one to the spool (``ops.jsonl``), and every ``retry_interval`` seconds tries to replay the
spool; when that works it is online again. Nothing is dropped, nothing is sent twice (see
:mod:`medkit_exp.tracking.spool`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from medkit_exp.tracking.messages import Operation
from medkit_exp.tracking.ops import MetricDeduper, merge_metric_ops, send_op
from medkit_exp.tracking.spool import RunSpool, replay

logger = logging.getLogger(__name__)

_STOP = object()


class AsyncRunLogger:
    """Sends operations for one run from a background thread; see the module docstring.

    ``run_id`` is None when the run could not be created yet (MLflow unreachable at start): the
    spool's replay creates it once the server answers.
    """

    def __init__(
        self,
        client: Any,
        run_id: str | None,
        spool: RunSpool,
        online: bool = True,
        flush_interval: float = 5.0,
        retry_interval: float = 10.0,
        deduper: MetricDeduper | None = None,
    ):
        self.client = client
        self.run_id = run_id
        self.spool = spool
        self.online = online and run_id is not None
        self.flush_interval = flush_interval
        self.retry_interval = retry_interval
        self.deduper = deduper or MetricDeduper()
        self.spooled = 0  # operations written to the spool by this logger
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._wake = threading.Event()
        self._last_try = time.monotonic()
        self._warned = not online  # the caller warned already when it starts offline
        self._thread = threading.Thread(target=self._loop, name="mlflow-async-logger", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ training thread side
    def submit(self, op: Operation) -> None:
        """Queue an operation (returns at once)."""
        self._queue.put(op)

    def wake(self) -> None:
        """Send what is queued now rather than at the next interval (returns at once)."""
        self._wake.set()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far was sent or spooled; False on timeout."""
        done = threading.Event()
        self._queue.put(done)
        self._wake.set()
        return done.wait(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Send what is queued, try once more to replay the spool if offline, stop the thread."""
        self._queue.put(_STOP)
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("MLflow logging did not finish within %ss: the last operations may be missing", timeout)
            return False
        return True

    # ------------------------------------------------------------------ background thread
    def _loop(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            items = []
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                stop = self._process(items)
            except Exception:  # noqa: BLE001 - the logger must never take training down
                logger.exception("MLflow logging failed unexpectedly")
                stop = any(item is _STOP for item in items)
                for item in items:
                    if isinstance(item, threading.Event):
                        item.set()
            if stop:
                return

    def _process(self, items: list[Any]) -> bool:
        ops: list[Operation] = []
        for item in items:
            if isinstance(item, threading.Event) or item is _STOP:
                self._send(ops)
                ops = []
                if item is _STOP:
                    if not self.online or self.spool.has_pending():
                        self._reconnect()
                    return True
                item.set()
            else:
                ops.append(item)
        self._send(ops)
        if not self.online and time.monotonic() - self._last_try >= self.retry_interval:
            self._reconnect()
        return False

    def _send(self, ops: list[Operation]) -> None:
        if not ops:
            return
        if not self.online and time.monotonic() - self._last_try >= self.retry_interval:
            self._reconnect()
        batches = merge_metric_ops(ops)
        for index, op in enumerate(batches):
            if not self.online:
                self._to_spool(batches[index:])
                return
            try:
                send_op(self.client, self.run_id, op, self.deduper)
            except Exception as error:  # noqa: BLE001 - connection errors come in many types
                self._go_offline(error)
                self._to_spool(batches[index:])
                return

    def _to_spool(self, ops: list[Operation]) -> None:
        self.spool.append(ops)
        self.spooled += len(ops)

    def _go_offline(self, error: BaseException) -> None:
        self.online = False
        self._last_try = time.monotonic()
        if not self._warned:
            self._warned = True
            logger.warning(
                "MLflow tracking server unreachable (%s): training goes on; tracking data is kept in %s "
                "and sent when the server answers again",
                _short(error), self.spool.directory,
            )

    def _reconnect(self) -> None:
        """Replay the spool; online again if it all went through."""
        self._last_try = time.monotonic()
        try:
            self.run_id = replay(self.spool, self.client)
        except Exception as error:  # noqa: BLE001
            logger.debug("MLflow still unreachable: %s", _short(error))
            return
        if not self.online:
            logger.warning("MLflow tracking server reachable again: spooled data sent to run %s", self.run_id)
        self.online = True
        self._warned = False


def _short(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:300]
