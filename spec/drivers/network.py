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

Needs Linux and CAP_SYS_ADMIN.  A user who is not root gets it inside a
user namespace of their own, where that is allowed: a helper process
(`_userns.py`) makes the user namespace with the network namespace inside
it, and makes the checker's sockets there on request, passing them back
over a Unix socket (this process cannot setns into a namespace its user
namespace does not own); a server joins both namespaces between fork and
exec.  Where both are refused, `PrivateNetwork.shared()` returns None,
`refused()` says which refusals, and the checker runs on the host's loopback
and says so in its report.
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
import sys
import threading
from collections.abc import Callable, Iterator

_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000
_USERNS_HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_userns.py")
#: Seconds the user-namespace helper has to make and configure its namespaces.
_HELPER_TIMEOUT = 10.0
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

    def __init__(
        self,
        fd: int,
        host_fd: int | None,
        *,
        user_fd: int | None = None,
        helper: tuple[subprocess.Popen[bytes], socket.socket] | None = None,
    ) -> None:
        self._fd = fd
        #: The checker's own network (root: a thread switches in and out).
        self._host_fd = host_fd
        #: The user namespace that owns the network (not root), and the helper
        #: process inside both that makes sockets there.
        self._user_fd = user_fd
        self._helper = helper
        self._helper_lock = threading.Lock()
        self._libc = _libc()

    @property
    def in_user_namespace(self) -> bool:
        """Made inside a user namespace of the checker's user (the checker is not root)."""
        return self._user_fd is not None

    @classmethod
    def shared(cls) -> PrivateNetwork | None:
        """This process's private network, made on first use; None if not allowed here."""
        with cls._lock:
            if cls._shared is None and cls._refused is None:
                try:
                    cls._shared = cls._create()
                except (OSError, AttributeError) as e:
                    try:
                        cls._shared = cls._create_in_user_namespace()
                    except (OSError, AttributeError) as in_user_namespace:
                        cls._refused = (
                            f"{e}; and in a user namespace of its own: {in_user_namespace}"
                        )
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
    def _create_in_user_namespace(cls) -> PrivateNetwork:
        """The network inside a user namespace, held by a helper process (see `_userns.py`)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            helper = subprocess.Popen(
                [sys.executable, "-I", "-S", _USERNS_HELPER, str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=[theirs.fileno()],
                start_new_session=True,
            )
        finally:
            theirs.close()
        try:
            ours.settimeout(_HELPER_TIMEOUT)
            line = b""
            while not line.endswith(b"\n"):
                got = ours.recv(256)
                if not got:
                    raise OSError("the user-namespace helper exited before it was ready")
                line += got
            words = line.decode().strip()
            if not words.startswith("ready "):
                raise OSError(words.removeprefix("refused "))
            ours.settimeout(None)
            user_fd = os.open(f"/proc/{helper.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
            net_fd = os.open(f"/proc/{helper.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except BaseException:
            ours.close()
            helper.kill()
            helper.wait(timeout=_HELPER_TIMEOUT)
            raise
        cls.quickack = words.endswith("1")
        return cls(net_fd, None, user_fd=user_fd, helper=(helper, ours))

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
        """Run the body with the calling thread in this namespace (root only)."""
        if self._host_fd is None:
            raise OSError("a private network in a user namespace cannot be entered by a thread")
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
        if self._helper is None:
            with self.inside():
                return socket.socket(*args)
        defaults = (socket.AF_INET, socket.SOCK_STREAM, 0)
        family, kind, proto = (*args, *defaults[len(args) :])[:3]
        channel = self._helper[1]
        with self._helper_lock:
            channel.send(struct.pack("=iii", family, kind, proto))
            message, fds, _, _ = socket.recv_fds(channel, 64, 1)
        if not fds:
            if not message:
                raise OSError("the user-namespace helper has exited")
            code = int(message[1:] or 0)
            raise OSError(code, f"socket() in the private network: {os.strerror(code)}")
        return socket.socket(fileno=fds[0])

    def enter_in_child(self) -> None:
        """For a forked child before exec: move the whole (single-threaded) child inside."""
        self.enter_user_namespace()
        _check(self._libc.setns(self._fd, _CLONE_NEWNET), "cannot enter the private network")

    def enter_user_namespace(self) -> None:
        """For a forked child before exec: join the user namespace that owns the network.

        There the checker's user is root: the child may then enter the
        network and make a PID namespace (spec.drivers.pid_init).  Nothing for root.
        """
        if self._user_fd is not None:
            _check(
                self._libc.setns(self._user_fd, _CLONE_NEWUSER), "cannot enter the user namespace"
            )

    @property
    def fd(self) -> int:
        """The namespace's descriptor (a child that enters it must inherit it)."""
        return self._fd

    def close(self) -> None:
        """Let the namespace go: its descriptors, and the helper (it exits when its socket closes).

        Servers still running in it keep it alive until they end.
        """
        for fd in (self._fd, self._host_fd, self._user_fd):
            if fd is not None:
                os.close(fd)
        if self._helper is not None:
            helper, channel = self._helper
            channel.close()
            try:
                helper.wait(timeout=_HELPER_TIMEOUT)
            except subprocess.TimeoutExpired:
                helper.kill()
                helper.wait()

    def describe(self) -> dict[str, object]:
        """The network the servers ran in, for the report."""
        return {
            "namespace": "private (loopback only)"
            + (", in a user namespace (not root)" if self.in_user_namespace else ""),
            "tcp_rmem": list(self.tcp_rmem),
            "tcp_wmem": list(self.tcp_wmem),
            "delayed_acks": not self.quickack,
        }


def host_description(reason: str | None, backs_up: int | None = None) -> dict[str, object]:
    """The report's entry when servers run on the host's loopback (`backs_up`:
    the flood size `host_flood` found, if any)."""
    described: dict[str, object] = {
        "namespace": "host",
        "why": reason or "not asked for",
        "note": "buffer sizes autotuned by the kernel; short sends are rare",
    }
    if backs_up is not None:
        described["floods_back_up"] = backs_up
    return described


#: The sysctls that bound a server's send buffer on the host: autotuning grows
#: it up to tcp_wmem's max; SO_SNDBUF sets it up to twice wmem_max.
_TCP_WMEM = "/proc/sys/net/ipv4/tcp_wmem"
_WMEM_MAX = "/proc/sys/net/core/wmem_max"
#: Room for what is in flight and one read of the server, above the buffers.
_FLOOD_MARGIN = 1024 * 1024


def host_buffers(client_receive_buffer: int) -> int | None:
    """The most echo the host's loopback buffers hold for a client that does not read, or None.

    Echo goes from the server's send buffer into the client's receive
    buffer; what neither holds waits in the server, and a server that writes
    with a blocking send() blocks there.  The client's buffer is the
    checker's (`client_receive_buffer`, as set; the kernel doubles it); the
    server's is at most the larger of tcp_wmem's max (autotuned) and twice
    wmem_max (set with SO_SNDBUF), sysctls every user can read.  None where
    they cannot be read.
    """
    try:
        with open(_TCP_WMEM) as f:
            autotuned = int(f.read().split()[2])
        with open(_WMEM_MAX) as f:
            settable = 2 * int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(autotuned, settable) + 2 * client_receive_buffer


def host_flood(client_receive_buffer: int, most: int) -> int | None:
    """A flood size that backs up any server on the host's loopback, or None.

    The buffers (`host_buffers`) and a margin, rounded up to a MiB: that
    fills them whatever the kernel autotunes.  None where they cannot be
    read, or where that is more than `most` (the largest payload a program
    may hold): then no flood is sure to.
    """
    held = host_buffers(client_receive_buffer)
    if held is None:
        return None
    mib = 1024 * 1024
    size = -(-(held + _FLOOD_MARGIN) // mib) * mib
    return size if size <= most else None


#: Makes a socket in the network the checker uses (the host's, or a private one).
SocketFactory = Callable[..., socket.socket]
