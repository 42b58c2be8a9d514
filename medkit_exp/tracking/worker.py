"""The tracking worker: a process of its own that does a training's MLflow work.

Importing MLflow, opening its store, creating the run, drawing the plots and logging the model
cost seconds of CPU; in the training process they add to its wall time. With
``MLflowCallback(worker=True)`` (the application's default, ``tracking.worker``) they run in a
worker process started with the training: while the training process imports torch and loads
its data on one core, the worker imports MLflow and opens the store on the other; during
training, the training process only writes each operation to a pipe (microseconds).

- :func:`prestart` starts a worker early and has it import what the run will need; the
  callback takes it (or starts one) at ``on_train_begin`` and gives it back at the end, so a
  process that trains several times (a sweep, a test session) reuses it.
- :class:`WorkerSession` is the training process's side of one run: the methods of
  :class:`~medkit_exp.tracking.session.RunSession`, which runs in the worker. Calls that return
  something wait for the answer (``open``, ``flush``, ``state``, ``close``); the others return at
  once. The worker handles them in order.
- The protocol is one JSON object per line: ``{"id"?, "call", "args"}`` to the worker on its
  stdin, ``{"id", "result"|"error"}`` and ``{"log": record}`` back on its stdout; the worker's
  log records are re-emitted by the training process's loggers (its handlers, its log file).
- The worker ignores SIGINT (Ctrl-C stops the training, which ends the run KILLED itself) and
  lives in its own session. If the training process dies without closing the run, the worker
  sees its stdin close, sends what it has, ends the run KILLED and exits.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

WARM_MODULES = ("mlflow", "mlflow.entities", "medkit_exp.tracking.session", "medkit_exp.tracking.context",
                "medkit_exp.tracking.datasets", "mlflow.data.meta_dataset")
PLOT_MODULES = ("medkit_exp.tracking.plots", "matplotlib.figure", "matplotlib.backends.backend_agg")
# GitPython: MLflow reads the code's git commit when it logs a model (0.14 s to import)
MODEL_MODULES = ("medkit_exp.tracking.ner_model", "git")
REPLY_TIMEOUT = 600.0  # seconds an answer may take (a close that sends a large spool)


class WorkerError(RuntimeError):
    """The worker failed a call, or is gone."""


# ---------------------------------------------------------------------- training process side
class WorkerProcess:
    """A running worker and the thread that reads its answers."""

    def __init__(self) -> None:
        package_root = str(Path(__file__).resolve().parents[2])
        code = f"import sys; sys.path.insert(0, {package_root!r}); from medkit_exp.tracking.worker import serve; serve()"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True,
        )
        self._lock = threading.Lock()
        self._next_id = 0
        self._waiting: dict[int, list[Any]] = {}  # id -> [event, reply]
        self._reader = threading.Thread(target=self._read, name="medkit-exp-tracking-worker", daemon=True)
        self._reader.start()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None and self._reader.is_alive()

    def cast(self, call: str, **args: Any) -> None:
        """Send a call without waiting."""
        self._write({"call": call, "args": args})

    def call(self, call: str, timeout: float | None = REPLY_TIMEOUT, **args: Any) -> Any:
        """Send a call and wait for its result; WorkerError if it failed or no answer came."""
        event = threading.Event()
        with self._lock:
            self._next_id += 1
            message_id = self._next_id
            self._waiting[message_id] = [event, None]
        self._write({"id": message_id, "call": call, "args": args})
        if not event.wait(timeout):
            self._waiting.pop(message_id, None)
            raise WorkerError(f"the MLflow tracking worker did not answer {call!r} within {timeout}s")
        reply = self._waiting.pop(message_id)[1]
        if "error" in reply:
            raise WorkerError(reply["error"]["message"])
        return reply.get("result")

    def _write(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message, default=str) + "\n").encode("utf-8")  # a stray type: its text, not a crash
        try:
            with self._lock:
                self.process.stdin.write(data)
                self.process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as error:
            raise WorkerError(f"the MLflow tracking worker is gone (exit code {self.process.poll()})") from error

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if "log" in message:
                _emit(message["log"])
            elif message.get("id") in self._waiting:
                slot = self._waiting[message["id"]]
                slot[1] = message
                slot[0].set()
        gone = {"error": {"message": f"the MLflow tracking worker ended (exit code {self.process.poll()})"}}
        for slot in list(self._waiting.values()):
            slot[1] = gone
            slot[0].set()

    def stop(self, timeout: float = 10.0) -> None:
        """Close its stdin (the worker exits) and wait a little for it."""
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _emit(fields: dict[str, Any]) -> None:
    record = logging.makeLogRecord(fields)
    target = logging.getLogger(record.name)
    if target.isEnabledFor(record.levelno):
        target.handle(record)


_idle: list[WorkerProcess] = []
_pool_lock = threading.Lock()


def acquire() -> WorkerProcess:
    """An idle worker (the one :func:`prestart` started, or one a finished run gave back), else a new one."""
    with _pool_lock:
        while _idle:
            worker = _idle.pop(0)
            if worker.alive:
                return worker
    return WorkerProcess()


def release(worker: WorkerProcess) -> None:
    """Give a worker back for the next run of this process."""
    if worker.alive:
        with _pool_lock:
            _idle.append(worker)


def prestart(tracking_uri: str | None = None, plots: bool = True, log_model: bool = False) -> None:
    """Have an idle worker ready and importing what a run needs (and opening its store), so that
    this happens while the training process does its own start. Returns at once."""
    modules = list(WARM_MODULES) + (list(PLOT_MODULES) if plots else []) + (list(MODEL_MODULES) if log_model else [])
    with _pool_lock:
        worker = next((w for w in _idle if w.alive), None)
    if worker is None:
        worker = WorkerProcess()
        release(worker)
    try:
        worker.cast("warm", tracking_uri=tracking_uri, modules=modules, env=dict(os.environ), cwd=os.getcwd())
    except WorkerError as error:
        logger.debug("MLflow tracking worker not warmed: %s", error)


@atexit.register
def _stop_idle_workers() -> None:
    with _pool_lock:
        workers, _idle[:] = list(_idle), []
    for worker in workers:
        worker.stop()


class WorkerSession:
    """One run's :class:`~medkit_exp.tracking.session.RunSession`, in a worker (see the module doc)."""

    remote = True

    def __init__(self, request: dict[str, Any]):
        self.request = request
        self.worker = acquire()
        self.tracking_uri: str | None = None
        self._state: dict[str, Any] = {"run_id": None, "online": False}
        self._failed = False

    def open(self) -> dict[str, Any]:
        try:
            result = self.worker.call("open", request=self.request, env=dict(os.environ), cwd=os.getcwd())
        except WorkerError as error:
            release(self.worker)  # still good for another run, unless it is gone
            from medkit_exp.errors import TrackingError

            raise TrackingError(f"MLflow could not open the run: {error}") from error
        self.tracking_uri = result["tracking_uri"]
        self._state = {"run_id": result["run_id"], "online": result["online"]}
        return result

    @property
    def run_id(self) -> str | None:
        if self._state["run_id"] is None:
            self.state()  # a run created late (the server was away at the start)
        return self._state["run_id"]

    @property
    def online(self) -> bool:
        return bool(self._state["online"])

    def state(self) -> dict[str, Any]:
        result = self._call("state", timeout=60)
        if result is not None:
            self._state = result
        return self._state

    def describe(self) -> None:
        self._cast("describe")

    def submit(self, op: dict[str, Any]) -> None:
        self._cast("submit", op=op)

    def wake(self) -> None:
        self._cast("wake")

    def run_task(self, function: Any, kwargs: dict[str, Any]) -> None:
        from medkit_exp.tracking.session import task_reference

        self._cast("run_task", function=task_reference(function), kwargs=kwargs)

    def stop_monitor(self) -> None:
        self._cast("stop_monitor")

    def flush(self, timeout: float | None = None) -> bool:
        result = self._call("flush", timeout=None if timeout is None else timeout + 60, flush_timeout=timeout)
        return bool(result)

    def close(self, timeout: float | None = None) -> dict[str, Any]:
        result = self._call("close", timeout=None if timeout is None else timeout + 60, close_timeout=timeout)
        if result is None:
            result = {"run_id": self._state["run_id"], "pending": 0, "spool_dir": None}
        self._state["run_id"] = result["run_id"]
        release(self.worker)
        return result

    def _cast(self, call: str, **args: Any) -> None:
        try:
            self.worker.cast(call, **args)
        except WorkerError as error:
            self._lost(error)

    def _call(self, call: str, timeout: float | None, **args: Any) -> Any:
        try:
            return self.worker.call(call, timeout=timeout, **args)
        except WorkerError as error:
            self._lost(error)
            return None

    def _lost(self, error: WorkerError) -> None:
        if not self._failed:
            self._failed = True
            logger.error("MLflow tracking of run %s stopped: %s", self._state["run_id"], error)


# ---------------------------------------------------------------------- worker process side
class _Forward(logging.Handler):
    """Send log records to the training process: ours from DEBUG, other libraries' from WARNING."""

    def __init__(self, send: Any):
        super().__init__(logging.DEBUG)
        self.send = send

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.WARNING and not record.name.startswith("medkit_exp"):
            return
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            self.send({"log": {"name": record.name, "levelno": record.levelno, "levelname": record.levelname,
                               "msg": message, "created": record.created, "threadName": record.threadName}})
        except Exception:  # noqa: BLE001 - logging must not fail
            self.handleError(record)


def _sync(env: dict[str, str] | None, cwd: str | None) -> None:
    """The training process's environment and working directory (MLflow reads both)."""
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    if cwd:
        os.chdir(cwd)


def _warm(tracking_uri: str | None, modules: list[str], env: dict[str, str], cwd: str) -> None:
    import importlib
    import time

    started = time.perf_counter()
    _sync(env, cwd)
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as error:  # noqa: BLE001 - whatever fails here fails again, reported, at its use
            logger.debug("Worker warm-up: cannot import %s: %s", name, error)
    try:
        from medkit_exp.tracking.runs import is_remote, resolve_tracking_uri
        from medkit_exp.tracking.store import prepare_store

        uri = resolve_tracking_uri(tracking_uri)
        if not is_remote(uri):  # a local store: create it once, under its lock; a server may be away
            prepare_store(uri)
    except Exception as error:  # noqa: BLE001
        logger.debug("Worker warm-up: store not opened: %s", error)
    logger.debug("Worker warm-up took %.2fs", time.perf_counter() - started)


def serve() -> None:
    """The worker's main loop (see the module docstring)."""
    from medkit_exp.tracking.session import RunSession

    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # what libraries print goes to stderr, not into the protocol
    write_lock = threading.Lock()

    def send(message: dict[str, Any]) -> None:
        with write_lock:
            channel.write(json.dumps(message, default=str) + "\n")
            channel.flush()

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from medkit_exp.redaction import install_log_redaction

    install_log_redaction()  # what MLflow and our code log here is forwarded to the run's logs
    root = logging.getLogger()
    root.handlers[:] = [_Forward(send)]
    root.setLevel(logging.DEBUG)
    session: RunSession | None = None
    for line in sys.stdin.buffer:
        message = json.loads(line)
        call, args = message["call"], message.get("args", {})
        try:
            result: Any = None
            if call == "warm":
                _warm(**args)
            elif call == "open":
                _sync(args["env"], args["cwd"])
                session = RunSession(args["request"])
                result = session.open()
            elif session is None:
                raise RuntimeError(f"{call!r} before 'open'")
            elif call == "describe":
                session.describe()
            elif call == "submit":
                session.submit(args["op"])
            elif call == "wake":
                session.wake()
            elif call == "state":
                result = session.state()
            elif call == "run_task":
                session.run_task(args["function"], args["kwargs"])
            elif call == "stop_monitor":
                session.stop_monitor()
            elif call == "flush":
                result = session.flush(args.get("flush_timeout"))
            elif call == "close":
                result = session.close(args.get("close_timeout"))
                session = None
            else:
                raise ValueError(f"unknown call {call!r}")
            if "id" in message:
                send({"id": message["id"], "result": result})
        except Exception as error:  # noqa: BLE001 - answered, or logged
            if call == "open":
                session = None
            if "id" in message:
                send({"id": message["id"], "error": {"message": f"{type(error).__name__}: {error}"}})
            else:
                logger.exception("MLflow tracking worker: %r failed", call)
    if session is not None:  # the training process is gone without closing its run
        from medkit_exp.tracking.ops import now_ms

        logger.warning("The training process ended without closing MLflow run %s: ended KILLED", session.run_id)
        session.submit({"op": "tags", "tags": {"error": "the training process ended without closing the run"}})
        session.submit({"op": "status", "status": "KILLED", "end_time": now_ms()})
        session.close(timeout=120)
    channel.flush()
    sys.stderr.flush()
    os._exit(0)  # everything is sent and committed: no interpreter teardown to wait for
