"""Model work in worker processes, so that face analysis keeps both cores busy.

dlib's network holds the GIL, and the detector's runtime barely gains from a second thread
(measured: 99 → 76 ms per 1080p frame), so threads cannot overlap them with decoding and
tracking. A :class:`Worker` is one process that loads its model once (``setup``) and runs
calls in the background; the pipeline hands it frames or face chips and collects the
answers later. The process dies with its parent, and where no process can be started (a
restricted environment) the calls run inline — the same results, only slower.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

from momentry.processes import die_with_parent

logger = logging.getLogger("media_api.faces")


def _start(parent_pid: int, setup: Callable[[], object] | None) -> None:
    die_with_parent(parent_pid)
    if setup is not None:
        setup()


class Worker:
    """One background process for one kind of model work. Use as a context manager."""

    def __init__(self, name: str, setup: Callable[[], object] | None = None, processes: int = 1) -> None:
        self.name = name
        self._executor: ProcessPoolExecutor | None = None
        if processes > 0:
            try:
                # fork: no re-import of Django or the caller's modules. Workers are made before the
                # pipeline starts any thread (decoder, detector runtime), so forking is safe.
                self._executor = ProcessPoolExecutor(max_workers=processes, mp_context=get_context("fork"),
                                                     initializer=_start, initargs=(os.getpid(), setup))
            except (OSError, AssertionError, ValueError) as exc:  # e.g. inside a daemonic process
                logger.warning("no %s worker process (%s); running inline", name, exc)

    @property
    def in_process(self) -> bool:
        """True when calls run in a separate process."""
        return self._executor is not None

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        if self._executor is not None:
            try:
                return self._executor.submit(fn, *args)
            except (RuntimeError, AssertionError) as exc:
                logger.warning("%s worker unavailable (%s); running inline", self.name, exc)
                self._executor = None
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:  # noqa: BLE001 - delivered to whoever waits, as from a process
            future.set_exception(exc)
        return future

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
