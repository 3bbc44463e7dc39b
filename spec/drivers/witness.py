"""What the kernel can witness here, probed once with real calls, and what that means for verdicts.

Design note
-----------
The drivers judge a step by what the kernel says: every thread of the
server asleep, and the system call it sleeps in (/proc); the connections'
queues, bytes in flight and inodes (sock_diag netlink); the descriptors that
still hold a socket (/proc/PID/fd); acknowledgements at once (TCP_QUICKACK).
Each of these can be missing: a seccomp filter refuses ``socket(AF_NETLINK)``,
a container mounts an empty /proc, macOS has neither.  What is missing is
found out here, **once, by asking**: open a sock_diag socket and make one
request; start a child and read its threads, its system call and its
descriptors; look for the socket constants.  Never by uid or platform name.

The drivers ask `capabilities()` which witnesses they may use.  Where one is
missing, the driver judges "at rest" by the clock instead and says so
(`environment()`).  A witness lost in the middle of a run (`lost()`) makes
the driver fall back the same way: it is never taken for a dead server (the
server's liveness is asked of waitpid, not of /proc).

Some verdicts the clock cannot give surely: `spec.judge.overrule()` turns
them into "not judged, because ..." after a check, from what this module
says is missing, so that a weaker mode says less, never something false.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from spec.drivers import sock_diag


@dataclass(frozen=True)
class Capabilities:
    """What the kernel answers here.  Each reason is None where the witness works."""

    #: Why sock_diag cannot be asked (None: it answers).
    netlink: str | None
    #: Why another process's threads, system calls and descriptors cannot be read.
    proc: str | None
    #: The socket module has TCP_QUICKACK (Linux).
    quickack: bool

    @property
    def complete(self) -> bool:
        """Both witnesses answer: verdicts at rest, as the kernel reports it."""
        return self.netlink is None and self.proc is None

    def unwitnessed(self) -> list[str]:
        """The witnesses missing (sock_diag, /proc), in words."""
        found = []
        if self.netlink is not None:
            found.append(f"no sock_diag ({self.netlink})")
        if self.proc is not None:
            found.append(f"no /proc of other processes ({self.proc})")
        return found

    def missing(self) -> list[str]:
        """Everything missing, in words, one item per witness."""
        found = self.unwitnessed()
        if not self.quickack:
            found.append("no TCP_QUICKACK (delayed ACKs are waited out)")
        return found

    def describe(self) -> dict[str, object]:
        return {
            "sock_diag": self.netlink or "answers",
            "proc": self.proc or "answers",
            "quickack": self.quickack,
        }


_lock = threading.Lock()
_probed: Capabilities | None = None
#: Set by tests to simulate a mode; None: probe the real kernel.
_forced: Capabilities | None = None


def capabilities() -> Capabilities:
    """What this machine's kernel answers, probed on first use (cached)."""
    global _probed
    if _forced is not None:
        return _forced
    with _lock:
        if _probed is None:
            _probed = Capabilities(_probe_netlink(), _probe_proc(), hasattr(socket, "TCP_QUICKACK"))
        return _probed


def force(caps: Capabilities | None) -> None:
    """Simulate a mode (tests): `capabilities()` returns `caps` (None: the real probe)."""
    global _forced
    _forced = caps


def _probe_netlink() -> str | None:
    """Open a sock_diag socket and make one request; why not, if it fails."""
    if not hasattr(socket, "AF_NETLINK"):
        return "the socket module has no AF_NETLINK (not Linux)"
    try:
        sock_diag.dump(frozenset({sock_diag.TcpState.LISTEN}))
    except (OSError, ValueError) as e:
        return f"socket(AF_NETLINK) or its request refused: {e}"
    return None


def _probe_proc() -> str | None:
    """Start a child and read what the process driver reads of a server; why not, if it fails."""
    program = shutil.which("sleep")
    argv = [program, "5"] if program else [sys.executable, "-c", "import time; time.sleep(5)"]
    try:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    except OSError as e:
        return f"cannot start a child to read: {e}"
    try:
        base = f"/proc/{child.pid}"
        tids = os.listdir(f"{base}/task")
        for tid in tids:
            with open(f"{base}/task/{tid}/stat") as f:
                f.read()
            with open(f"{base}/task/{tid}/syscall") as f:
                f.read()
        os.listdir(f"{base}/fd")
        with open(f"{base}/statm") as f:
            f.read()
    except OSError as e:
        return f"reading /proc of a child refused: {e}"
    finally:
        child.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)
    return None


# -- the witnesses, as the drivers use them -----------------------------------------


def open_netlink(new_socket: Callable[..., socket.socket] = socket.socket) -> socket.socket | None:
    """A sock_diag socket in `new_socket`'s network; None where sock_diag cannot be asked."""
    if capabilities().netlink is not None:
        return None
    try:
        return sock_diag.open_netlink(new_socket)
    except OSError as e:
        lost(f"sock_diag: {e}")
        return None


def quickack(sock: socket.socket) -> None:
    """Acknowledge what `sock` has received at once, where the kernel can (TCP_QUICKACK)."""
    option = getattr(socket, "TCP_QUICKACK", None)
    if option is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, option, 1)


def proc_listeners(pid: int, port: int) -> set[int]:
    """Inodes of sockets listening on TCP `port` in process `pid`'s network, from /proc.

    The fallback where sock_diag is refused: /proc/PID/net/tcp lists the
    sockets of that process's network namespace (not the caller's, as
    psutil reads it).  Empty if it cannot be read.
    """
    found: set[int] = set()
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if (
                len(fields) > 9
                and fields[3] == "0A"
                and int(fields[1].rsplit(":", 1)[1], 16) == port
            ):
                found.add(int(fields[9]))
    return found


# -- losing a witness mid-run -----------------------------------------------------------

_losses: list[str] = []


def lost(reason: str) -> None:
    """A witness that answered at start stopped answering (the drivers fall back to the clock)."""
    with _lock:
        _losses.append(reason)


def mark() -> int:
    """A point in time for `losses_since` (before a check)."""
    return len(_losses)


def losses_since(point: int) -> list[str]:
    return _losses[point:]


# -- the mode, in words ---------------------------------------------------------------


def describe_mode(
    *,
    private_refused: str | None,
    private: bool,
    contained: bool,
    floods_back_up: int | None = None,
) -> dict[str, str]:
    """The mode a process-driven check runs in, what it weakens, and how to do better.

    `floods_back_up`: on the host, the flood size found to fill any server's
    buffers there (`network.host_flood`), if one was.
    """
    caps = capabilities()
    parts = [
        "private network (32 KiB buffers)" if private else "host network (autotuned buffers)",
        "PID namespace" if contained else "process group",
        "at rest by the kernel" if caps.complete else "at rest by the clock",
    ]
    weakens: list[str] = []
    better: list[str] = []
    if not private:
        weakens.append(
            "no private network"
            + (f" ({private_refused})" if private_refused else "")
            + (
                f": floods are {floods_back_up // (1024 * 1024)} MiB (what fills any server's "
                "buffers under this host's sysctls), so programs are slower; short sends are rare"
                if floods_back_up
                else ": ECHO-7 cannot PASS surely (a flood may never fill a blocking server's "
                "buffers: the sysctls that bound them could not be read), floods are larger "
                "and slower"
            )
            + "; ECHO-4 cannot PASS surely (whether an EOF meets echo the server has yet to "
            "send depends on how far the kernel grew its buffers)"
        )
        better.append(
            "run as root, or allow unprivileged user namespaces "
            "(sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0; on "
            "Ubuntu 24.04 kernel.apparmor_restrict_unprivileged_userns=0; in Docker "
            "--cap-add SYS_ADMIN or a seccomp profile that allows unshare)"
        )
    if not contained:
        weakens.append("process group: a server that leaves its session can outlive the check")
    if not caps.complete:
        weakens.append(
            "; ".join(caps.unwitnessed())
            + ": steps are judged when no byte moved for --echo-settle seconds; ECHO-6 is not "
            "judged, a PASS of ECHO-7 is not judged"
        )
        if caps.netlink is not None:
            better.append("allow socket(AF_NETLINK, NETLINK_SOCK_DIAG) (seccomp)")
        if caps.proc is not None:
            better.append("mount /proc (with the servers' processes visible, not hidepid)")
    return {
        "mode": ", ".join(parts),
        "weakens": "; ".join(weakens) or "nothing: every verdict as the kernel reports it",
        "better": "; ".join(better) or "nothing to do",
    }
