"""One timer thread that hands due work to bounded thread pools."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

logger = logging.getLogger(__name__)


class Scheduler:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Executor, Callable[..., Any], tuple[Any, ...]]] = []
        self._counter = itertools.count()
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="sandbox-timer", daemon=True)
        self._thread.start()

    def call_later(self, delay: float, pool: Executor, fn: Callable[..., Any], *args: Any) -> None:
        with self._wake:
            if self._stopping:
                return
            due = time.monotonic() + max(0.0, delay)
            heapq.heappush(self._heap, (due, next(self._counter), pool, fn, args))
            self._wake.notify()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._heap.clear()
            self._wake.notify()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and (
                    not self._heap or self._heap[0][0] > time.monotonic()
                ):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._wake.wait(timeout)
                if self._stopping:
                    return
                _, _, pool, fn, args = heapq.heappop(self._heap)
            try:
                pool.submit(_guarded, fn, *args)
            except RuntimeError:  # the pool is shutting down
                return


def _guarded(fn: Callable[..., Any], *args: Any) -> None:
    # One failing task must never take the timer or a pool thread down with it.
    try:
        fn(*args)
    except Exception:
        logger.exception("sandbox task %s failed", getattr(fn, "__name__", fn))
