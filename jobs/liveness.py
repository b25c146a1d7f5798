"""Is the process that claimed a job still alive? Answered without waiting, on the same host.

A claim records the claiming process as (host, pid, start time). On the same host — same kernel
boot and same PID namespace, so that a pid means the same process — ``/proc`` tells at once
whether that process still exists; the start time tells a recycled pid from the original one.
Elsewhere nothing can be known from here, and only the job's heartbeat says whether it lives.
"""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Process:
    host: str
    pid: int
    started: int  # clock ticks after boot (/proc/<pid>/stat, field 22); 0 when unknown


@functools.cache
def host_id() -> str:
    """This host as seen by ``/proc``: host name, kernel boot id and PID namespace (containers differ)."""
    name = socket.gethostname()
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return f"{name}/no-proc"  # no /proc: pids cannot be checked (is_alive answers None)
    return f"{name}/{boot[:8]}/{namespace}"


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks after boot), or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state is fields[0]
    if fields[0] in ("Z", "X"):
        return None  # a zombie has finished; only its exit status is left
    return int(fields[19])


def this_process() -> Process:
    pid = os.getpid()
    return Process(host_id(), pid, start_time(pid) or 0)


def is_alive(process: Process) -> bool | None:
    """True/False for a process of this host; None when it ran elsewhere (or this host has no /proc)."""
    if process.host != host_id() or process.host.endswith("/no-proc") or not process.pid:
        return None
    started = start_time(process.pid)
    return started is not None and (not process.started or started == process.started)
