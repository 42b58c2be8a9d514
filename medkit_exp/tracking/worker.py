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
- :class:`WorkerSession` is the training process's side of one run: the session calls of
  :class:`~medkit_exp.tracking.session.MessageSession`, whose messages the worker hands to a
  :class:`~medkit_exp.tracking.tracker.RunTracker`. Those that return something wait for the
  answer (``open``, ``flush``, ``state``, ``close``); the others return at once. The worker
  handles them in order.
- The protocol: the messages of :mod:`medkit_exp.tracking.messages`, pickled, each in a frame
  (its length and its request number, -1 when no answer is awaited) on the worker's stdin;
  :class:`~medkit_exp.tracking.messages.Reply` and
  :class:`~medkit_exp.tracking.messages.ForwardedLog` frames back on its stdout; the worker's log
  records are re-emitted by the training process's loggers (its handlers, its log file). A task
  travels as its function, which pickle sends by module and name.
- The environment: the worker inherits the training process's when it starts; each run's
  :class:`~medkit_exp.tracking.messages.Open` carries the variables MLflow's work reads
  (:func:`~medkit_exp.tracking.uris.tracking_environment`) and the working directory, as they are
  when the run starts (a pooled worker serves several runs).
- The worker ignores SIGINT (Ctrl-C stops the training, which ends the run KILLED itself) and
  lives in its own session. If the training process dies without closing the run, the worker
  sees its stdin close, sends what it has, ends the run KILLED and exits.
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from medkit_exp.tracking.messages import Close, ForwardedLog, Open, Reply, SessionRequest, SetStatus, SetTags, Warm
from medkit_exp.tracking.session import MessageSession
from medkit_exp.tracking.uris import tracking_environment

logger = logging.getLogger(__name__)

WARM_MODULES = ("mlflow", "mlflow.entities", "medkit_exp.tracking.tracker", "medkit_exp.tracking.context",
                "medkit_exp.tracking.datasets")
PLOT_MODULES = ("medkit_exp.tracking.plots", "matplotlib.figure", "matplotlib.backends.backend_agg")
# GitPython: MLflow reads the code's git commit when it logs a model (0.14 s to import)
MODEL_MODULES = ("git",)
REPLY_TIMEOUT = 600.0  # seconds an answer may take (a close that sends a large spool)
NO_REPLY = -1
_FRAME = struct.Struct(">Iq")  # payload length, request number (NO_REPLY: none awaited)


class WorkerError(RuntimeError):
    """The worker failed a call, or is gone."""


def write_frame(stream: IO[bytes], request_id: int, message: Any) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_FRAME.pack(len(payload), request_id) + payload)
    stream.flush()


def read_frame(stream: IO[bytes]) -> tuple[int, bytes] | None:
    """The next frame's request number and payload; None at the end of the stream (or a frame cut
    short: the writer died while writing it)."""
    header = stream.read(_FRAME.size)
    if len(header) < _FRAME.size:
        return None
    length, request_id = _FRAME.unpack(header)
    payload = stream.read(length)
    return (request_id, payload) if len(payload) == length else None


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
        self._waiting: dict[int, tuple[threading.Event, list[Reply]]] = {}
        self._reader = threading.Thread(target=self._read, name="medkit-exp-tracking-worker", daemon=True)
        self._reader.start()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None and self._reader.is_alive()

    def tell(self, message: SessionRequest) -> None:
        """Send a message without waiting."""
        self._write(NO_REPLY, message)

    def ask(self, message: SessionRequest, timeout: float | None = REPLY_TIMEOUT) -> Any:
        """Send a message and wait for its result; WorkerError if it failed or no answer came."""
        event, slot = threading.Event(), []
        with self._lock:
            self._next_id += 1
            request_id = self._next_id
            self._waiting[request_id] = (event, slot)
        self._write(request_id, message)
        if not event.wait(timeout):
            self._waiting.pop(request_id, None)
            raise WorkerError(f"the MLflow tracking worker did not answer {type(message).__name__} within {timeout}s")
        self._waiting.pop(request_id, None)
        reply = slot[0]
        if reply.error is not None:
            raise WorkerError(reply.error)
        return reply.result

    def _write(self, request_id: int, message: SessionRequest) -> None:
        try:
            with self._lock:
                write_frame(self.process.stdin, request_id, message)  # type: ignore[arg-type]
        except (BrokenPipeError, OSError, ValueError) as error:
            raise WorkerError(f"the MLflow tracking worker is gone (exit code {self.process.poll()})") from error

    def _read(self) -> None:
        while (frame := read_frame(self.process.stdout)) is not None:  # type: ignore[arg-type]
            message = pickle.loads(frame[1])
            if isinstance(message, ForwardedLog):
                _emit(message.fields)
            elif isinstance(message, Reply) and message.request_id in self._waiting:
                event, slot = self._waiting[message.request_id]
                slot.append(message)
                event.set()
        gone = f"the MLflow tracking worker ended (exit code {self.process.poll()})"
        for request_id, (event, slot) in list(self._waiting.items()):
            slot.append(Reply(request_id, error=gone))
            event.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Close its stdin (the worker exits) and wait a little for it."""
        try:
            self.process.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _emit(fields: Any) -> None:
    record = logging.makeLogRecord(dict(fields))
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


def prestart(tracking_uri: str | None = None, plots: bool = True, log_model: bool = False,
             modules: Sequence[str] = ()) -> None:
    """Have an idle worker ready and importing what a run needs (and opening its store), so that
    this happens while the training process does its own start. Returns at once.

    ``modules``: more modules the run's tasks will import there (a component's model logging)."""
    names = [*WARM_MODULES, *(PLOT_MODULES if plots else ()), *(MODEL_MODULES if log_model else ()), *modules]
    with _pool_lock:
        worker = next((w for w in _idle if w.alive), None)
    if worker is None:
        worker = WorkerProcess()
        release(worker)
    try:
        worker.tell(Warm(tracking_uri, tuple(names), tracking_environment(), os.getcwd()))
    except WorkerError as error:
        logger.debug("MLflow tracking worker not warmed: %s", error)


@atexit.register
def _stop_idle_workers() -> None:
    with _pool_lock:
        workers, _idle[:] = list(_idle), []
    for worker in workers:
        worker.stop()


class WorkerSession(MessageSession):
    """One run's session, its messages handled in a worker (see the module doc)."""

    remote = True

    def __init__(self, request: dict[str, Any]):
        super().__init__(request)
        self.worker = acquire()
        self._failed = False

    def _open_message(self) -> Open:
        return Open(self.request, tracking_environment(), os.getcwd())

    def open(self) -> dict[str, Any]:
        try:
            return super().open()
        except WorkerError as error:
            release(self.worker)  # still good for another run, unless it is gone
            from medkit_exp.errors import TrackingError

            raise TrackingError(f"MLflow could not open the run: {error}") from error

    def close(self, timeout: float | None = None) -> dict[str, Any]:
        result = super().close(timeout)
        release(self.worker)
        return result

    def _tell(self, message: SessionRequest) -> None:
        try:
            self.worker.tell(message)
        except WorkerError as error:
            self._lost(error)

    def _ask(self, message: SessionRequest, timeout: float | None = REPLY_TIMEOUT) -> Any:
        if isinstance(message, Open):  # its failure is the caller's (the run cannot start)
            return self.worker.ask(message, timeout)
        try:
            return self.worker.ask(message, timeout)
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
            self.send(ForwardedLog({"name": record.name, "levelno": record.levelno, "levelname": record.levelname,
                                    "msg": message, "created": record.created, "threadName": record.threadName}))
        except Exception:  # noqa: BLE001 - logging must not fail
            self.handleError(record)


def _enter(env: Any, cwd: str | None) -> None:
    """The training process's tracking variables and working directory (MLflow reads both)."""
    from medkit_exp.tracking.uris import apply_tracking_environment

    apply_tracking_environment(env)
    if cwd:
        os.chdir(cwd)


def _warm(message: Warm) -> None:
    import importlib
    import time

    started = time.perf_counter()
    _enter(message.env, message.cwd)
    for name in message.modules:
        try:
            importlib.import_module(name)
        except Exception as error:  # noqa: BLE001 - whatever fails here fails again, reported, at its use
            logger.debug("Worker warm-up: cannot import %s: %s", name, error)
    try:
        from medkit_exp.tracking.store import prepare_store
        from medkit_exp.tracking.uris import is_remote, resolve_tracking_uri

        uri = resolve_tracking_uri(message.tracking_uri)
        if not is_remote(uri):  # a local store: create it once, under its lock; a server may be away
            prepare_store(uri)
    except Exception as error:  # noqa: BLE001
        logger.debug("Worker warm-up: store not opened: %s", error)
    logger.debug("Worker warm-up took %.2fs", time.perf_counter() - started)


class _Server:
    """The worker's side: one :class:`~medkit_exp.tracking.tracker.RunTracker` per run, fed the
    messages in order."""

    def __init__(self, send: Any):
        self.send = send
        self.tracker: Any = None  # a RunTracker between Open and Close

    def serve_one(self, request_id: int, payload: bytes) -> None:
        message: Any = None
        try:
            message = pickle.loads(payload)  # a task whose module cannot be imported fails here
            result = self._handle(message)
            if request_id != NO_REPLY:
                self.send(Reply(request_id, result))
        except Exception as error:  # noqa: BLE001 - answered, or logged
            if isinstance(message, Open):
                self.tracker = None
            if request_id != NO_REPLY:
                self.send(Reply(request_id, error=f"{type(error).__name__}: {error}"))
            else:
                logger.exception("MLflow tracking worker: %s failed", type(message).__name__ if message else "a message")

    def _handle(self, message: SessionRequest) -> Any:
        from medkit_exp.tracking.session import RunSession

        if isinstance(message, Warm):
            return _warm(message)
        if isinstance(message, Open):
            _enter(message.env, message.cwd)
            # The tasks' run handles get this in-worker session: their uploads join the run's queue.
            self.tracker = RunSession(message.request).tracker
        if self.tracker is None:
            raise RuntimeError(f"{type(message).__name__} before Open")
        result = self.tracker.handle(message)
        if isinstance(message, Close):
            self.tracker = None
        return result

    def end_orphan_run(self) -> None:
        """The training process is gone without closing its run: end it KILLED."""
        if self.tracker is None:
            return
        logger.warning("The training process ended without closing MLflow run %s: ended KILLED", self.tracker.run_id)
        from medkit_exp.tracking.messages import now_ms

        self.tracker.handle(SetTags({"error": "the training process ended without closing the run"}))
        self.tracker.handle(SetStatus("KILLED", now_ms()))
        self.tracker.handle(Close(timeout=120))


def serve() -> None:
    """The worker's main loop (see the module docstring)."""
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # what libraries print goes to stderr, not into the protocol
    write_lock = threading.Lock()

    def send(message: Reply | ForwardedLog) -> None:
        with write_lock:
            write_frame(channel, NO_REPLY, message)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from medkit_exp.redaction import install_log_redaction

    install_log_redaction()  # what MLflow and our code log here is forwarded to the run's logs
    root = logging.getLogger()
    root.handlers[:] = [_Forward(send)]
    root.setLevel(logging.DEBUG)
    server = _Server(send)
    while (frame := read_frame(sys.stdin.buffer)) is not None:
        server.serve_one(*frame)
    server.end_orphan_run()
    channel.flush()
    sys.stderr.flush()
    os._exit(0)  # everything is sent and committed: no interpreter teardown to wait for
