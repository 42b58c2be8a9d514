"""SIGTERM/SIGINT during training: note the signal, let the loop save a checkpoint and stop."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger(__name__)


class StopSignals:
    """While ``installed()``, a first SIGTERM/SIGINT sets ``received`` (its name); the loop
    checks it after each optimizer step. A second one raises KeyboardInterrupt at once.
    Outside the main thread (where Python cannot install handlers) it does nothing."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.received: str | None = None

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.received:
            raise KeyboardInterrupt(name)
        logger.warning("%s received: saving a checkpoint and stopping after this step", name)
        self.received = name

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if not self.enabled or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
