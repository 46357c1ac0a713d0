"""The agent's own threads, supervised: a thread that dies silently is a gauge that lies.

Every long-lived loop (outputs, outbox writer, uploader; the sampling loop on the main thread)
runs its steps through here. An unexpected exception is logged once per distinct reason with
its traceback, shows as the `internal` fault (status, heartbeat, an event upstream, the amber
lamp), and the loop carries on after a back-off; when a step succeeds again the fault clears.
A thread that is gone anyway is started again by `LoopThread.ensure_running`, which the
sampling loop calls every time round.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("gauge-agent")

BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 60.0


class ThreadHealth:
    """Which of the agent's threads are failing, and why (thread name -> reason)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failing: dict[str, str] = {}

    def failed(self, thread: str, error: BaseException) -> None:
        reason = f"{type(error).__name__}: {error}"[:300]
        with self._lock:
            first = self._failing.get(thread) != reason
            self._failing[thread] = reason
        if first:
            log.error(
                "%s: unexpected %s; carrying on with a back-off", thread, reason, exc_info=error
            )

    def recovered(self, thread: str) -> bool:
        """True if it had been failing."""
        with self._lock:
            if self._failing.pop(thread, None) is None:
                return False
        log.info("%s works again", thread)
        return True

    def failing(self) -> dict[str, str]:
        with self._lock:
            return dict(self._failing)


class LoopThread:
    """`step()` over and over on a thread of its own until `stopping` is set, supervised.

    `step` returns normally when it did its work (waiting inside it is its own business); an
    exception is reported to `health` and the loop waits 1 s, 2 s, 4 s ... up to 60 s before
    the next step, so a fault that repeats does not spin or flood the journal."""

    def __init__(
        self,
        name: str,
        step: Callable[[], None],
        health: ThreadHealth,
        stopping: threading.Event,
        backoff_max_s: float = BACKOFF_MAX_S,
    ):
        self.name = name
        self.step = step
        self.health = health
        self.stopping = stopping
        self.backoff_max_s = backoff_max_s
        self.thread: threading.Thread | None = None
        self.restarts = 0

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self.thread.start()

    def ensure_running(self) -> bool:
        """Start the thread again if it is gone (True if it had to be)."""
        if self.stopping.is_set() or (self.thread is not None and self.thread.is_alive()):
            return False
        if self.thread is not None:
            self.restarts += 1
            log.error("%s thread had stopped; started again", self.name)
        self.start()
        return True

    def join(self, timeout: float | None = None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

    def is_alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def _run(self) -> None:
        backoff = BACKOFF_START_S
        while not self.stopping.is_set():
            try:
                self.step()
            except Exception as error:
                self.health.failed(self.name, error)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)
                continue
            self.health.recovered(self.name)
            backoff = BACKOFF_START_S
