"""What every thread of a process tree is doing, as /proc tells it.

The process driver asks this to know, without a clock, that a server has done
everything the last step caused: every thread is asleep, none has run since
the last look.  And, when a client is still owed echo, *where* the server
sleeps: in its event loop's readiness wait (select, poll, epoll), or inside
one socket call (a blocking send() to a client that does not read), which
starves everyone else.

Linux only: `look()` returns None where /proc cannot be read.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

# System call numbers by architecture: the calls that wait for readiness, and
# those that block on one descriptor (their first argument).
_WAITS = {
    "x86_64": {
        7: "poll",
        23: "select",
        270: "pselect6",
        271: "ppoll",
        232: "epoll_wait",
        281: "epoll_pwait",
        441: "epoll_pwait2",
    },
    "aarch64": {72: "pselect6", 73: "ppoll", 22: "epoll_pwait", 441: "epoll_pwait2"},
}
_ON_DESCRIPTOR = {
    "x86_64": {
        0: "read",
        1: "write",
        19: "readv",
        20: "writev",
        40: "sendfile",
        43: "accept",
        44: "sendto",
        45: "recvfrom",
        46: "sendmsg",
        47: "recvmsg",
        288: "accept4",
        299: "recvmmsg",
        307: "sendmmsg",
    },
    "aarch64": {
        63: "read",
        64: "write",
        65: "readv",
        66: "writev",
        71: "sendfile",
        202: "accept",
        206: "sendto",
        207: "recvfrom",
        211: "sendmsg",
        212: "recvmsg",
        242: "accept4",
        243: "recvmmsg",
        269: "sendmmsg",
    },
}
_ARCH = platform.machine()
WAITS = _WAITS.get(_ARCH, {})
ON_DESCRIPTOR = _ON_DESCRIPTOR.get(_ARCH, {})


@dataclass(frozen=True)
class Thread:
    pid: int
    tid: int
    #: /proc state: R running, S sleeping, D disk sleep, T stopped, Z zombie, ...
    state: str
    #: Times the thread has been scheduled in: changes whenever it ran.
    runs: int
    #: The system call it sleeps in, by name ("" if unknown or not in one).
    syscall: str = ""
    #: For a call on one descriptor: that descriptor.
    fd: int | None = None

    @property
    def asleep(self) -> bool:
        return self.state in "STtZX"

    @property
    def in_readiness_wait(self) -> bool:
        return self.syscall in WAITS.values()

    def socket_inode(self) -> int | None:
        """The inode of the socket this thread's blocking call is on, if it is one."""
        if self.fd is None:
            return None
        try:
            link = os.readlink(f"/proc/{self.pid}/fd/{self.fd}")
        except OSError:
            return None
        return int(link[8:-1]) if link.startswith("socket:[") else None


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it, through /proc/PID/task/TID/children."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
            except OSError:
                continue
    return found


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _thread(pid: int, tid: str) -> Thread | None:
    base = f"/proc/{pid}/task/{tid}"
    stat = _read(f"{base}/stat")
    if stat is None:
        return None
    state = stat[stat.rindex(")") + 2]
    schedstat = _read(f"{base}/schedstat")
    runs = int(schedstat.split()[2]) if schedstat else 0
    syscall, fd = "", None
    if state == "S" and (WAITS or ON_DESCRIPTOR):
        words = (_read(f"{base}/syscall") or "").split()
        if words and words[0].isdigit():
            number = int(words[0])
            if number in WAITS:
                syscall = WAITS[number]
            elif number in ON_DESCRIPTOR:
                syscall = ON_DESCRIPTOR[number]
                fd = int(words[1], 16)
    return Thread(pid, int(tid), state, runs, syscall, fd)


def look(pids: list[int]) -> tuple[Thread, ...] | None:
    """Every thread of `pids` now; None if /proc cannot be read."""
    threads = []
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue  # exited meanwhile
        except OSError:
            return None
        for tid in tids:
            t = _thread(pid, tid)
            if t is not None:
                threads.append(t)
    return tuple(threads)
