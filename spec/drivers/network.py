"""A private network the checker owns: a namespace with loopback only and fixed TCP buffers.

Design note
-----------
On the host's loopback the kernel autotunes every connection's buffers, on
its own timers, up to megabytes: a server's send() is almost never short,
and how far a flood gets before it backs up changes from run to run.  The
in-process driver fixes the server's buffers itself; a server in another
process (any language) cannot be reached that way.  Buffer limits are per
network namespace (``net.ipv4.tcp_rmem``/``tcp_wmem``), so the checker makes
one of its own and runs every server it starts inside it, with small fixed
buffers: short sends, EAGAIN with echo queued and backpressure then happen
within tens of KiB, for every server, the same way every run.

The namespace is made by one thread of this process (``unshare``), which at
once returns to the host's namespace; a descriptor keeps the namespace alive.
Sockets are made inside it by switching the calling thread in and out
(``setns``, a system call each way); a socket stays in the namespace it was
made in, wherever it is used.  A server is put inside by its own process,
between fork and exec.  Nothing in the namespace is reachable from outside:
it has its own loopback, its own ports, and only the checker's clients.

Needs Linux and CAP_SYS_ADMIN (root, or a user namespace where that is
allowed); `PrivateNetwork.create()` returns None with the reason otherwise,
and the checker runs on the host's loopback and says so in its report.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator

_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS = 0x8913, 0x8914
_IFF_UP = 0x1
_IFREQ = struct.Struct("16sH14x")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


class PrivateNetwork:
    """A network namespace with loopback up and fixed TCP buffer sizes."""

    #: net.ipv4.tcp_rmem and tcp_wmem (min, default, max): the default is the
    #: size every socket gets, and max = default leaves autotuning no room.
    tcp_rmem = (4096, 32768, 32768)
    tcp_wmem = (4096, 32768, 32768)
    #: A flood of this many bytes backs up whatever a server buffers in the
    #: kernel here (both directions hold about 4 x 32 KiB).
    flood_limit = 1024 * 1024

    #: Loopback acknowledges at once: no delayed ACKs (set when it is made).
    quickack = False

    _lock = threading.Lock()
    _shared: PrivateNetwork | None = None
    _refused: str | None = None

    def __init__(self, fd: int, host_fd: int) -> None:
        self._fd = fd
        self._host_fd = host_fd
        self._libc = _libc()

    @classmethod
    def shared(cls) -> PrivateNetwork | None:
        """This process's private network, made on first use; None if not allowed here."""
        with cls._lock:
            if cls._shared is None and cls._refused is None:
                try:
                    cls._shared = cls._create()
                except (OSError, AttributeError) as e:
                    cls._refused = str(e)
            return cls._shared

    @classmethod
    def refused(cls) -> str | None:
        """Why no private network could be made (after `shared()` returned None)."""
        return cls._refused

    @classmethod
    def _create(cls) -> PrivateNetwork:
        libc = _libc()
        host = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _check(libc.unshare(_CLONE_NEWNET), "cannot make a network namespace (unshare)")
            try:
                fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
                cls._configure()
            finally:
                _check(libc.setns(host, _CLONE_NEWNET), "cannot return to the host's network")
        except BaseException:
            os.close(host)
            raise
        return cls(fd, host)

    @classmethod
    def _configure(cls) -> None:
        """In the new namespace: loopback up, fixed buffers, no receive autotuning."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            request = _IFREQ.pack(b"lo", 0)
            flags = _IFREQ.unpack(fcntl.ioctl(s, _SIOCGIFFLAGS, request))[1]
            fcntl.ioctl(s, _SIOCSIFFLAGS, _IFREQ.pack(b"lo", flags | _IFF_UP))
        for name, value in (
            ("tcp_rmem", cls.tcp_rmem),
            ("tcp_wmem", cls.tcp_wmem),
            ("tcp_moderate_rcvbuf", (0,)),
        ):
            with open(f"/proc/sys/net/ipv4/{name}", "w") as f:
                f.write(" ".join(map(str, value)))
        cls.quickack = cls._no_delayed_acks()

    @staticmethod
    def _no_delayed_acks() -> bool:
        """Acknowledge every segment at once on loopback (the route's quickack metric).

        A delayed ACK (up to 40 ms, on a timer) would hold a sender's buffer
        full after the receiver has taken the bytes; with none, a connection
        comes to rest as soon as both ends have run.  Needs iproute2's `ip`;
        without it the driver waits such timers out.  A child process made
        here runs in this thread's namespace.
        """
        ip = shutil.which("ip")
        if ip is None:
            return False
        for destination in ("127.0.0.0/8", "127.0.0.1"):
            done = subprocess.run(
                [
                    ip,
                    "route",
                    "change",
                    "local",
                    destination,
                    "dev",
                    "lo",
                    "table",
                    "local",
                    "proto",
                    "kernel",
                    "scope",
                    "host",
                    "src",
                    "127.0.0.1",
                    "quickack",
                    "1",
                ],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=10,
            )
            if done.returncode != 0:
                return False
        return True

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        """Run the body with the calling thread in this namespace."""
        _check(self._libc.setns(self._fd, _CLONE_NEWNET), "cannot enter the private network")
        try:
            yield
        finally:
            _check(
                self._libc.setns(self._host_fd, _CLONE_NEWNET),
                "cannot return to the host's network",
            )

    def socket(self, *args: int) -> socket.socket:
        """A new socket in this namespace (same arguments as socket.socket)."""
        with self.inside():
            return socket.socket(*args)

    def enter_in_child(self) -> None:
        """For a forked child before exec: move the whole (single-threaded) child inside."""
        _check(self._libc.setns(self._fd, _CLONE_NEWNET), "cannot enter the private network")

    @property
    def fd(self) -> int:
        """The namespace's descriptor (a child that enters it must inherit it)."""
        return self._fd

    def describe(self) -> dict[str, object]:
        """The network the servers ran in, for the report."""
        return {
            "namespace": "private (loopback only)",
            "tcp_rmem": list(self.tcp_rmem),
            "tcp_wmem": list(self.tcp_wmem),
            "delayed_acks": not self.quickack,
        }


def host_description(reason: str | None) -> dict[str, object]:
    """The report's entry when servers run on the host's loopback."""
    return {
        "namespace": "host",
        "why": reason or "not asked for",
        "note": "buffer sizes autotuned by the kernel; short sends are rare",
    }


#: Makes a socket in the network the checker uses (the host's, or a private one).
SocketFactory = Callable[..., socket.socket]
