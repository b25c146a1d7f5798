"""Model work in worker processes, so that face analysis keeps both cores busy.

dlib's network holds the GIL, and the detector's runtime barely gains from a second thread
(measured: 99 → 76 ms per 1080p frame), so threads cannot overlap them with decoding and
tracking. A :class:`Worker` is one process (or several, each taking the next call) that loads
its model once (``setup``) and runs calls in the background; the pipeline hands it frames or face
chips and collects the answers later. Frames go through :class:`SharedFrames`, memory the worker
processes share with their parent, rather than through a pipe. The processes die with their
parent, and where no process can be started (a restricted environment) the calls run inline — the
same results, only slower.
"""

from __future__ import annotations

import itertools
import logging
import mmap
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from multiprocessing import get_context
from typing import Any

import numpy as np

from momentry.processes import die_with_parent

logger = logging.getLogger("media_api.faces")


@contextmanager
def children_allowed() -> Iterator[None]:
    """Let a daemonic process fork workers (a job queue's pool process is one: Celery's prefork pool).

    multiprocessing refuses a daemonic process children because it could not stop them when it is
    killed. Ours stop themselves then (:func:`~momentry.processes.die_with_parent`), so the flag is
    lifted while they are forked and put back at once.
    """
    process = multiprocessing.current_process()
    daemonic = process.daemon
    if daemonic:
        process.daemon = False
    try:
        yield
    finally:
        if daemonic:
            process.daemon = True


def _start(parent_pid: int, setup: Callable[[], object] | None) -> None:
    die_with_parent(parent_pid)
    if setup is not None:
        setup()


class Worker:
    """One background process for one kind of model work. Use as a context manager."""

    def __init__(self, name: str, setup: Callable[[], object] | None = None, processes: int = 1) -> None:
        """``processes`` > 1: calls go to whichever of them is free (each has its own ``setup``)."""
        self.name = name
        self._count = processes
        self._executor: ProcessPoolExecutor | None = None
        if processes > 0:
            try:
                # fork: no re-import of Django or the caller's modules. The processes are forked on the
                # first call, possibly after other threads started (the decoder's, a job's heartbeat): a
                # child runs only the model calls and touches none of what those threads hold.
                self._executor = ProcessPoolExecutor(max_workers=processes, mp_context=get_context("fork"),
                                                     initializer=_start, initargs=(os.getpid(), setup))
            except (OSError, AssertionError, ValueError) as exc:  # e.g. inside a daemonic process
                logger.warning("no %s worker process (%s); running inline", name, exc)

    @property
    def in_process(self) -> bool:
        """True when calls run in a separate process."""
        return self._executor is not None

    @property
    def processes(self) -> int:
        """How many processes run the calls (0: inline)."""
        return self._count if self._executor is not None else 0

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        if self._executor is not None:
            try:
                with children_allowed():  # the first call forks the processes
                    return self._executor.submit(fn, *args)
            except (RuntimeError, AssertionError, OSError) as exc:  # OSError: fork failed (EAGAIN, ENOMEM)
                logger.warning("%s worker unavailable (%s); running inline", self.name, exc)
                _discard(self._executor)
                self._executor = None
        return run_here(fn, *args)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_here(fn: Callable[..., Any], *args: Any) -> Future:
    """``fn(*args)`` run in this process, as a done call: what a worker's call gives, without a worker."""
    future: Future = Future()
    try:
        future.set_result(fn(*args))
    except Exception as exc:  # noqa: BLE001 - delivered to whoever waits, as from a process
        future.set_exception(exc)
    return future


def _discard(executor: ProcessPoolExecutor) -> None:
    """Shut a pool down that cannot take calls, killing any process it forked before failing."""
    processes = list((getattr(executor, "_processes", None) or {}).values())  # no public way before Python 3.14
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join(5)


#: Every live :class:`SharedFrames` of this process by key; a worker forked later inherits the table.
_SHARED: dict[int, SharedFrames] = {}
_keys = itertools.count(1)


class SharedFrames:
    """A ring of frame-sized slots in memory shared with the worker processes forked after it is made.

    A 1920x1080 RGB frame sent as a call's argument is pickled, written through a pipe and unpickled:
    about 20 ms of CPU per frame across the two processes on this machine (measured), most of a
    half-size detection. Copied into a slot instead (one memcpy, about 1 ms) it is read in place by the
    worker (:func:`shared_frame`). A slot is written again only after the call that read it is done
    (:meth:`hold`), so ``slots`` bounds the calls in flight, not their correctness. Make it before the
    worker's first call (that is when the worker processes are forked); calls that run inline read
    the same memory.
    """

    def __init__(self, shape: tuple[int, ...], slots: int) -> None:
        self.shape = tuple(shape)
        self._size = int(np.prod(self.shape))
        self._memory = mmap.mmap(-1, self._size * slots)  # anonymous and shared: seen by forked children
        self._calls: list[Future | None] = [None] * slots
        self._next = 0
        self.key = next(_keys)
        _SHARED[self.key] = self

    def put(self, image: np.ndarray) -> int | None:
        """Copy ``image`` into the next slot and return it; None when it is not of the ring's shape."""
        if image.shape != self.shape or image.dtype != np.uint8:
            return None
        slot = self._next
        self._next = (slot + 1) % len(self._calls)
        previous = self._calls[slot]
        if previous is not None:
            wait([previous])
            self._calls[slot] = None
        self.view(slot)[...] = image
        return slot

    def hold(self, slot: int, call: Future) -> None:
        """The slot stays unwritten until ``call`` is done."""
        self._calls[slot] = call

    def view(self, slot: int) -> np.ndarray:
        return np.frombuffer(self._memory, np.uint8, self._size, slot * self._size).reshape(self.shape)

    def close(self) -> None:
        _SHARED.pop(self.key, None)
        try:
            self._memory.close()
        except BufferError:  # a view is still referenced somewhere: the mapping goes with it
            pass

    def __enter__(self) -> SharedFrames:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def shared_frame(key: int, slot: int) -> np.ndarray:
    """The frame in ``slot`` of this process's (or its parent's, when forked) :class:`SharedFrames` ``key``."""
    return _SHARED[key].view(slot)
