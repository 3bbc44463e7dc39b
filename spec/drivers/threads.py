"""What every thread of a process tree is doing, as /proc tells it.

The process driver asks this to know, without a clock, that a server has done
everything the last step caused: every thread is asleep, none has run since
the last look.  And, when a client is still owed echo, *where* the server
sleeps: in its event loop's readiness wait (select, poll, epoll), or inside
one socket call (a blocking send() to a client that does not read), which
starves everyone else.

A look happens after nearly every step, so `Watcher` keeps a tree's /proc
files open and re-reads them with pread() (about 20 microseconds a thread)
instead of walking /proc again (`descendants()` and `look()`, several times
that).

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
#: The calls that wait for a child process to change state (an init, a launcher
#: shell): only a process of the tree itself, by running, can end that wait.
_CHILD_WAITS = {
    "x86_64": {61: "wait4", 247: "waitid"},
    "aarch64": {260: "wait4", 95: "waitid"},
}
#: The calls that sleep until a time: the thread wakes on its own, with no
#: step of the checker's (a server that sleeps between writes).
_TIMERS = {
    "x86_64": {35: "nanosleep", 230: "clock_nanosleep"},
    "aarch64": {101: "nanosleep", 115: "clock_nanosleep"},
}
_ARCH = platform.machine()
TIMERS = _TIMERS.get(_ARCH, {})
WAITS = _WAITS.get(_ARCH, {})
ON_DESCRIPTOR = _ON_DESCRIPTOR.get(_ARCH, {})
CHILD_WAITS = _CHILD_WAITS.get(_ARCH, {})


@dataclass(frozen=True)
class Thread:
    pid: int
    tid: int
    #: /proc state: R running, S sleeping, D disk sleep, T stopped, Z zombie, ...
    state: str
    #: Times the thread has been scheduled in: changes whenever it ran (-1: not
    #: known, no schedstat; `Watcher` only).
    runs: int
    #: The system call it sleeps in, by name ("" if unknown or not in one).
    syscall: str = ""
    #: For a call on one descriptor: that descriptor.
    fd: int | None = None
    #: How many threads its process has (0 where not read).
    threads_in_process: int = 0

    @property
    def asleep(self) -> bool:
        return self.state in "STtZX"

    @property
    def in_readiness_wait(self) -> bool:
        return self.syscall in WAITS.values()

    @property
    def on_a_timer(self) -> bool:
        """Asleep until a time (nanosleep): it will run again by itself."""
        return self.state == "S" and self.syscall in TIMERS.values()

    @property
    def waits_for_events(self) -> bool:
        """Asleep where only an event can wake it: a socket's readiness, a child's exit.

        A thread asleep in select, poll or epoll (or wait4) is woken by a
        descriptor becoming ready (a packet processed, another process acting),
        by a child changing state, by a signal or by its own timeout; never by
        nothing.  A dead thread (zombie) does nothing more.  A thread asleep
        anywhere else (a blocking recv, a futex, a sleep) is not counted here.
        """
        if self.state in "ZX":
            return True
        return self.state == "S" and (
            self.syscall in WAITS.values() or self.syscall in CHILD_WAITS.values()
        )

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


def _syscall(text: str | None) -> tuple[str, int | None]:
    """The name of the call a sleeping thread is in, from /proc's ``syscall``
    ("" for one this module does not name), and its descriptor if it is on one."""
    words = (text or "").split()
    if not words or not words[0].isdigit():
        return "", None
    number = int(words[0])
    if number in ON_DESCRIPTOR:
        return ON_DESCRIPTOR[number], int(words[1], 16)
    for names in (WAITS, CHILD_WAITS, TIMERS):
        if number in names:
            return names[number], None
    return "", None


def _thread(pid: int, tid: str) -> Thread | None:
    base = f"/proc/{pid}/task/{tid}"
    stat = _read(f"{base}/stat")
    if stat is None:
        return None
    state = stat[stat.rindex(")") + 2]
    schedstat = _read(f"{base}/schedstat")
    runs = int(schedstat.split()[2]) if schedstat else 0
    syscall, fd = _syscall(_read(f"{base}/syscall") if state == "S" else None)
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


class Watcher:
    """`look()` at one process tree again and again, cheaply: its /proc files kept open.

    Each look re-reads, with one pread() each, the files it read the last time
    (a thread's stat, schedstat and syscall; its list of children) instead of
    opening them again, and lists a process's threads again only when their
    number changes or one of them has gone.  What it returns is what
    `descendants()` and `look()` together return.
    """

    def __init__(self, root: int) -> None:
        self.root = root
        #: pid -> its threads' ids as last listed.
        self._tids: dict[int, list[int]] = {}
        #: (pid, tid, name) -> an open descriptor on /proc/pid/task/tid/name.
        self._files: dict[tuple[int, int, str], int] = {}

    def pids(self) -> list[int]:
        """The processes of the tree as the last look found them."""
        return list(self._tids)

    def close(self) -> None:
        for fd in self._files.values():
            os.close(fd)
        self._files.clear()
        self._tids.clear()

    def _pread(self, pid: int, tid: int, name: str) -> str | None:
        key = (pid, tid, name)
        fd = self._files.get(key)
        if fd is None:
            try:
                fd = os.open(f"/proc/{pid}/task/{tid}/{name}", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
            self._files[key] = fd
        try:
            data = os.pread(fd, 4096, 0)
        except OSError:
            data = b""
        if not data:  # the thread has gone (ESRCH, or nothing to read)
            os.close(self._files.pop(key))
            return None
        return data.decode("ascii", "replace")

    def _forget(self, pid: int) -> None:
        self._tids.pop(pid, None)
        for key in [k for k in self._files if k[0] == pid]:
            os.close(self._files.pop(key))

    def _list(self, pid: int) -> list[int] | None:
        try:
            tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
        except FileNotFoundError:
            return []
        except OSError:
            return None
        self._tids[pid] = tids
        return tids

    def look(self) -> tuple[Thread, ...] | None:
        """Every thread of the tree below `root` now; None if /proc cannot be read."""
        found: list[Thread] = []
        todo, seen = [self.root], set()
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            threads = self._threads(pid, todo)
            if threads is None:
                return None
            found.extend(threads)
        for pid in [p for p in self._tids if p not in seen]:
            self._forget(pid)
        return tuple(found)

    def _threads(self, pid: int, children: list[int]) -> list[Thread] | None:
        """The threads of `pid` (their children added to `children`); None if unreadable."""
        tids = self._tids.get(pid)
        last = tids is None
        while True:
            if tids is None:
                tids = self._list(pid)
                if tids is None:
                    return None
            found: list[Thread] = []
            kids: list[int] = []
            gone = False
            for tid in tids:
                t = self._thread(pid, tid)
                if t is None:
                    gone = True  # exited meanwhile
                    continue
                found.append(t)
                if t.state not in "ZX":
                    kids.extend(int(c) for c in (self._pread(pid, tid, "children") or "").split())
            # A thread gone, or started (the thread count the kernel keeps, in
            # stat, differs from the list): list them again, once.
            if last or not (gone or (found and found[0].threads_in_process != len(tids))):
                children.extend(kids)
                return found
            tids, last = None, True

    def _thread(self, pid: int, tid: int) -> Thread | None:
        stat = self._pread(pid, tid, "stat")
        if stat is None:
            return None
        fields = stat[stat.rindex(")") + 2 :].split()
        state = fields[0]
        schedstat = self._pread(pid, tid, "schedstat")
        runs = int(schedstat.split()[2]) if schedstat else -1  # -1: not known
        known = state == "S" and (WAITS or ON_DESCRIPTOR or CHILD_WAITS or TIMERS)
        syscall, fd = _syscall(self._pread(pid, tid, "syscall") if known else None)
        return Thread(pid, tid, state, runs, syscall, fd, int(fields[17]))
