"""Drive a steppable Python server inside the test: no threads, no sleeps.

Design note
-----------
A steppable server is a class constructed as ``cls(host, port)`` with
``.address``, ``.poll(timeout) -> int`` (one round of its event loop,
returning how many ready sockets it handled) and ``.close()``.  The driver
alternates "every client pumps" and "the server runs one round" until a round
in which nobody moved a byte.  On loopback with TCP_NODELAY, the kernel moves
every byte inside the send() that wrote it, so after such a quiet round
nothing more can happen until someone acts: the outcome of a step depends
only on the step program, never on timing.  That is what makes Hypothesis'
shrinking reliable here.

Except on the kernel's ACK timers: a bulk transfer can pause for a delayed
ACK (40-200 ms).  So when the system is quiet but echo is still owed, the
driver asks the kernel (SIOCOUTQ) whether any reading client's bytes are still
unacknowledged; only then does it wait, up to `stall` seconds, for them to
move.  Echo that a server has lost is recognised at once, without waiting.

And on its retransmission timer: a client that does not read can make its
kernel drop segments its window still had room for (its memory runs out first:
small segments carry much overhead), and while it goes on not reading, every
retransmission is dropped too and the sender backs its timer off (0.2 s, 0.4 s,
... up to two minutes).  How far it has backed off depends on how long the
client did not read, which a loaded machine stretches.  Once the client reads
again, the dropped bytes move only when that timer fires, possibly well after
`stall`: so before calling them lost the driver asks the kernel (sock_diag)
whether a retransmission the receiver will take is still pending
(`_resending`), and waits for it.

Two more things can take time: a server that never stops working (a busy
loop) and a server that blocks inside poll() (a blocking send to a client that
does not read).  The first is cut off after `busy_rounds` rounds without a
client making progress; the second by a SIGALRM watchdog (main thread only)
after `watchdog` seconds, reported through `blocked()`, and a server that
spins inside poll() (send() retried on EAGAIN) by a SIGPROF one after
`spin_cpu` seconds of CPU time.

The kernel's buffer autotuning runs on timers too, so the driver gives the
server's sockets fixed, smallish buffers (`_fix_buffers`): a flood then takes
the same course every run, and a server's send() is short under backpressure,
as on a real network, instead of vanishing into loopback's 4 MiB.

White-box cleanup (ECHO-6): after each settle the driver matches every new
client with the server's socket for it (by address, among the sockets in the
server's ``inputs``, ``outputs`` and ``message_queues``), keeps a weak
reference and notes the socket's inode.  A connection that has ended must
leave that socket closed (or garbage-collected), out of all three containers,
and no descriptor of this process open on that inode (a ``dup()``).
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import itertools
import os
import resource
import signal
import socket
import struct
import termios
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from spec.drivers import sock_diag, witness
from spec.drivers.base import HOST, Driver
from spec.drivers.clients import Client, connect
from spec.drivers.facts import ServerDied, StillHeld
from spec.drivers.server_process import socket_descriptors

#: The server sockets' kernel buffers (see `_fix_buffers`); the kernel doubles
#: them.  Not a multiple of common recv() sizes, so that a server's queue does
#: not happen to fit the free space exactly, send after send.
SERVER_SNDBUF = 50_000
SERVER_RCVBUF = 256 * 1024

#: The containers a white-box check looks in, as the seed names them.
CONTAINERS = ("inputs", "outputs", "message_queues")


def _listening(s: object) -> bool:
    try:
        return isinstance(s, socket.socket) and bool(
            s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        )
    except OSError:
        return False


def _fix_buffers(s: socket.socket) -> None:
    """Give a server socket fixed kernel buffers and no Nagle.

    Left alone, the kernel autotunes a connection's buffers on its own timers
    (from measured round trips), so how much a flood pushes before it backs
    up, and whether a server's send() is short, would vary from run to run.
    Fixed (and smallish, so send() *is* short under backpressure, as on a real
    network) they make a flood's course depend only on the program.  Nagle
    would hold small echo segments back until a delayed ACK (a 40 ms timer).
    All of this is invisible to the protocol.
    """
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SERVER_SNDBUF)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SERVER_RCVBUF)
        if not _listening(s):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _open_descriptors() -> set[int]:
    """This process's open descriptors (Linux /proc; empty elsewhere)."""
    try:
        return {int(fd) for fd in os.listdir("/proc/self/fd")}
    except OSError:
        return set()


def _is_open(fd: int) -> bool:
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
    except OSError:
        return False
    return True


def _queued(s: socket.socket, request: int) -> int:
    """A socket queue's length in bytes, by ioctl; 0 if the socket is closed."""
    try:
        queued: int = struct.unpack("i", fcntl.ioctl(s.fileno(), request, b"\0" * 4))[0]
        return queued
    except OSError:
        return 0


def _unacknowledged(s: socket.socket) -> int:
    """Bytes in the socket's send queue not yet acknowledged (SIOCOUTQ)."""
    return _queued(s, termios.TIOCOUTQ)


def _unread(s: socket.socket) -> int:
    """Bytes in the socket's receive queue not yet read (SIOCINQ)."""
    return _queued(s, termios.FIONREAD)


class ServerBlocked(Exception):
    """Raised by the watchdog inside a server's poll()."""


class InProcessDriver(Driver):
    """A steppable server run in this process: its loop stepped between the clients' actions.

    About 390 lines, in three parts the module's design note describes:
    stepping (settle, and what the kernel still holds in flight), the watchdog
    a blocking or spinning poll() is caught by, and the verdict facts read from
    the server's own objects (crash, leaks, close).
    """

    #: Quiet rounds (nobody moved a byte) that end a settle.
    quiet_rounds = 2
    #: Rounds without client progress after which a still-busy server is cut off.
    busy_rounds = 300
    #: Seconds one poll() may take before the server is called blocked.
    watchdog = 2.0
    #: CPU seconds one poll() may use before the server is called spinning
    #: (a round of a correct server here takes well under a millisecond).
    spin_cpu = 0.1
    #: Seconds to wait for bytes the kernel still holds in flight to move.
    #: Only spent while the kernel reports them in flight (they always move:
    #: a delayed ACK, or softirq work a loaded machine has deferred), so it is
    #: generous: a correct server is never judged before its bytes arrive.
    #: Bytes the kernel will retransmit on a (backed-off) timer are waited for
    #: beyond it, up to `sock_diag.RTO_MAX` more (`_resending`).
    stall = 5.0
    #: Seconds without a write after which a flooding client counts as backed up.
    flood_stall = 0.02
    #: The machine may run the server out of descriptors (`descriptors_exhausted`).
    can_exhaust_descriptors = True

    def __init__(self, server_class: type, target: str | None = None) -> None:
        self.server_class = server_class
        self.target = target or f"{server_class.__module__}:{server_class.__qualname__}"
        self.server: Any = None
        self._crash: tuple[BaseException, str] | None = None
        self._blocked: str | None = None
        self._server_sockets: dict[str, weakref.ref[socket.socket]] = {}
        #: The last settle was cut off while the server kept handling events
        #: that moved nothing: a busy loop.
        self.spinning = False
        self._descriptors_before: set[int] = set()
        #: The kernel's inode of each matched server socket: a dup() shares it.
        self._server_inodes: dict[str, int] = {}
        #: Every client of the program so far, ended ones too (see `_undelivered`).
        self._known: dict[str, Client] = {}
        self._netlink: socket.socket | None = None

    def start(self) -> None:
        self._descriptors_before = _open_descriptors()
        self.server = self.server_class(HOST, 0)
        self.address = tuple(self.server.address[:2])
        for _, container in self._containers():
            for s in list(container):
                if _listening(s):
                    _fix_buffers(s)  # accepted sockets inherit them

    def connect(self) -> socket.socket:
        return connect(self.address, self.watchdog)

    # -- stepping ------------------------------------------------------------------

    def settle(self, clients: Sequence[Client], done: Callable[[], bool]) -> None:
        self.spinning = False
        if self._crash or self._blocked:
            return
        self._known.update((c.name, c) for c in clients)
        quiet = idle = 0
        waiting_since: float | None = None
        with self._watchdog() as guarded:
            while True:
                if quiet >= self.quiet_rounds and done():
                    # Quiet, nothing owed: over, once the kernel has delivered
                    # what the clients sent (a loaded machine defers a reset
                    # or a FIN to a kernel thread, after send() returned).
                    if not self._undelivered():
                        break
                    waiting_since = waiting_since or time.monotonic()
                    waited = time.monotonic() - waiting_since
                    if waited > self.stall and not self._resending(self._known.values(), waited):
                        break
                moved = False
                for c in clients:
                    moved |= c.pump()
                try:
                    handled = guarded(self.server.poll, 0 if waiting_since is None else 0.002)
                except ServerBlocked as e:
                    self._blocked = str(e)
                    break
                except Exception as e:
                    self._crash = (e, "".join(traceback.format_exception(e, limit=-3)).strip())
                    break
                idle = 0 if moved else idle + 1
                quiet = 0 if moved or handled else quiet + 1
                if moved:
                    waiting_since = None
                stuck = quiet >= self.quiet_rounds or idle >= self.busy_rounds
                if stuck and not done():
                    # Nothing moves (or the server is busy while nothing
                    # arrives), yet something is still owed.  Lost, unless the
                    # kernel still holds bytes it will move on a timer.
                    if not self._in_flight(clients):
                        break
                    now = time.monotonic()
                    if waiting_since is None:
                        waiting_since = now
                    elif now - waiting_since > self.stall and not self._resending(
                        [c for c in clients if c.active and c.model.reading],
                        now - waiting_since,
                    ):
                        break
                elif idle >= self.busy_rounds:
                    break  # busy, but nothing is owed
        # Cut off while still handling events that moved nothing: a busy loop.
        self.spinning = idle >= self.busy_rounds and quiet < self.quiet_rounds
        self._match(clients)

    @contextlib.contextmanager
    def descriptors_exhausted(self) -> Iterator[None]:
        """Lower this process's descriptor limit so that exactly one more can be opened.

        A client connecting inside takes that one; the server's accept() then
        fails with EMFILE, as it would once a busy server has used them all.
        The limit bounds descriptor *numbers*, and a new descriptor takes the
        lowest free number, so the limit is the second free number.
        """
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        used = {fd for fd in _open_descriptors() if _is_open(fd)}
        free = (n for n in itertools.count() if n not in used)
        next(free)
        resource.setrlimit(resource.RLIMIT_NOFILE, (next(free), hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    def _in_flight(self, clients: Sequence[Client]) -> bool:
        """Do reading clients, or the server towards them, have unacknowledged bytes?

        Loopback is synchronous except for the kernel's ACK and window-update
        timers (delayed ACK: 40-200 ms), which can hold a bulk transfer back.
        Bytes held for a client that does not read are not in flight: they
        wait for that client.  Nor is loopback synchronous on a loaded machine,
        where a kernel thread may deliver (and acknowledge) echo after the
        client's pump and before this question: echo that has arrived unread
        is in flight too (`_arrived`).
        """
        if self._arrived(clients):
            return True
        for c in clients:
            if not (c.active and c.model.reading):
                continue
            ref = self._server_sockets.get(c.name)
            for s in (c.sock, ref() if ref is not None else None):
                if s is not None and s.fileno() != -1 and _unacknowledged(s):
                    return True
        return False

    def _undelivered(self) -> bool:
        """Does the kernel still owe a connection of the program something (sock_diag)?"""
        try:
            # Delayed ACKs (host loopback) are waited out by `_in_flight` where it matters.
            known = list(self._known.values())
            for c, (client_end, server_end) in zip(known, self._all_ends(known), strict=True):
                if sock_diag.in_flight(client_end, server_end, acks=False):
                    return True
                if (
                    not c.active
                    and server_end is None
                    and (client_end is None or client_end.state is sock_diag.TcpState.TIME_WAIT)
                ):
                    del self._known[c.name]  # ended for good: it will not change again
            return False
        except (OSError, struct.error):  # not Linux, or netlink refused: trust quiet rounds
            return False

    def _resending(self, clients: Iterable[Client], waited: float) -> bool:
        """Will the kernel retransmit bytes of these clients' connections that will land?

        Asked once `stall` has passed with bytes still in flight: a segment the
        receiver dropped while its owner did not read is sent again only when
        the sender's backed-off retransmission timer fires, and the receiver,
        its queue empty now, takes it then (`sock_diag.will_resend`).  Either
        direction: echo to a client, or a client's bytes to the server.  That
        timer runs at most `sock_diag.RTO_MAX`, so the wait is bounded.
        """
        if waited > self.stall + sock_diag.RTO_MAX:
            return False
        if self._arrived(clients):  # a retransmission has just landed
            return True
        try:
            clients = list(clients)
            for client, server in self._all_ends(clients):
                if sock_diag.will_resend(server, client) or sock_diag.will_resend(client, server):
                    return True
        except (OSError, struct.error):  # not Linux, or netlink refused: nothing to wait for
            return False
        return False

    @staticmethod
    def _arrived(clients: Iterable[Client]) -> bool:
        """Has echo arrived for a client that is owed it, since its last pump (SIOCINQ)?"""
        return any(c.expects_more and _unread(c.sock) for c in clients)

    def _all_ends(
        self, clients: Sequence[Client]
    ) -> list[tuple[sock_diag.TcpSocket | None, sock_diag.TcpSocket | None]]:
        """The kernel's view (sock_diag) of each client's end and the server's end of its
        connection, asked in one request."""
        if not clients:
            return []
        if self._netlink is None:
            self._netlink = witness.open_netlink()
            if self._netlink is None:
                raise OSError("sock_diag cannot be asked")
        found = sock_diag.lookup_many(
            self._netlink,
            [(c.local_address, self.address) for c in clients]
            + [(self.address, c.local_address) for c in clients],
        )
        return list(zip(found[: len(clients)], found[len(clients) :], strict=True))

    @contextlib.contextmanager
    def _watchdog(self) -> Iterator[Callable[..., Any]]:
        """Yield `guarded(f, *args)`: f(*args), raising ServerBlocked if it blocks or spins.

        Two timers: `watchdog` seconds of wall-clock time (a blocking call,
        SIGALRM) and `spin_cpu` seconds of this process's CPU time (a busy
        loop inside one round, e.g. send() retried on EAGAIN, SIGPROF).  CPU
        time does not run while a loaded machine has the process descheduled,
        so the short spin bound stays fair there.  Only the server's own call
        is timed; an outer ITIMER_REAL (e.g. pytest-timeout's) is restored
        afterwards.
        """
        if threading.current_thread() is not threading.main_thread():
            yield lambda f, *args: f(*args)
            return

        def blocked(signum: int, frame: Any) -> None:
            raise ServerBlocked(
                f"the server's poll() did not return within {self.watchdog:g} s "
                "(a blocking call inside the event loop)"
            )

        def spinning(signum: int, frame: Any) -> None:
            raise ServerBlocked(
                f"the server's poll() used {self.spin_cpu:g} s of CPU without "
                "returning (a busy loop inside the event loop)"
            )

        def guarded(f: Callable[..., Any], *args: Any) -> Any:
            # No garbage collection inside the server's round: a full
            # collection of the checker's own (Hypothesis') objects can take
            # a tenth of a second, which would count as the server spinning.
            collecting = gc.isenabled()
            gc.disable()
            signal.setitimer(signal.ITIMER_REAL, self.watchdog)
            signal.setitimer(signal.ITIMER_PROF, self.spin_cpu)
            try:
                return f(*args)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.setitimer(signal.ITIMER_PROF, 0)
                if collecting:
                    gc.enable()

        outer = signal.getitimer(signal.ITIMER_REAL)
        old = signal.signal(signal.SIGALRM, blocked)
        old_prof = signal.signal(signal.SIGPROF, spinning)
        try:
            yield guarded
        finally:
            signal.signal(signal.SIGALRM, old)
            signal.signal(signal.SIGPROF, old_prof)
            if outer[0] > 0:
                signal.setitimer(signal.ITIMER_REAL, *outer)

    # -- verdicts ------------------------------------------------------------------

    def crash(self, wait: bool = False) -> ServerDied | None:
        if self._crash is None:
            return None
        e, tb = self._crash
        return ServerDied(
            f"the server's poll() raised {type(e).__name__}: {e}; the server is dead\n{tb}",
        )

    def blocked(self) -> str | None:
        return self._blocked

    def _containers(self) -> Iterator[tuple[str, Any]]:
        for name in CONTAINERS:
            container = getattr(self.server, name, None)
            if container is not None:
                yield name, container

    def _match(self, clients: Sequence[Client]) -> None:
        unmatched = {
            c.local_address: c.name
            for c in clients
            if c.active and c.name not in self._server_sockets
        }
        if not unmatched:
            return
        for _, container in self._containers():
            for s in list(container):
                if not isinstance(s, socket.socket) or s.fileno() == -1:
                    continue
                try:
                    name = unmatched.pop(s.getpeername(), None)
                except OSError:
                    continue
                if name is not None:
                    self._server_sockets[name] = weakref.ref(s)
                    self._server_inodes[name] = os.fstat(s.fileno()).st_ino
                    _fix_buffers(s)

    def leaks(self, ended: Sequence[Client], live: int) -> StillHeld | None:
        for c in ended:
            ref = self._server_sockets.get(c.name)
            s = ref() if ref is not None else None
            if s is None:
                continue  # closed and collected, or never seen
            held = [name for name, container in self._containers() if s in container]
            if s.fileno() != -1 or held:
                what = [f"socket fd {s.fileno()} still open"] if s.fileno() != -1 else []
                what += [f"still in {name}" for name in held]
                return StillHeld(
                    f"after the connection ended ({c.model.state.value}) "
                    f"the server still holds it: {', '.join(what)}",
                    connection=c.name,
                )
        # The socket object is closed, but a dup()ed descriptor (or one kept
        # by fileno() alone) holds the connection open just the same.
        open_sockets = socket_descriptors()
        for c in ended:
            fd = open_sockets.get(self._server_inodes.get(c.name, -1))
            if fd is not None:
                return StillHeld(
                    f"after the connection ended ({c.model.state.value}) "
                    f"the server still holds it: descriptor {fd} is open on its "
                    "socket (a dup() or a bare fileno never closed)",
                    connection=c.name,
                )
        # Closed, yet kept: a socket object the server still refers to is
        # memory held for a connection that has ended (it adds up).
        kept = [c for c in ended if (ref := self._server_sockets.get(c.name)) and ref()]
        if kept:
            gc.collect()  # what only a reference cycle keeps is not the server's doing
            for c in kept:
                s = self._server_sockets[c.name]()
                where = s is not None and self._holder(s)
                if where:
                    return StillHeld(
                        f"after the connection ended "
                        f"({c.model.state.value}) the server still keeps its "
                        f"closed socket object in {where}",
                        connection=c.name,
                    )
        return None

    def _holder(self, s: socket.socket) -> str | None:
        """The attribute of the server that still refers to `s`, if any."""
        for name, value in vars(self.server).items():
            if value is s:
                return f"`{name}`"
            with contextlib.suppress(TypeError):
                if isinstance(value, dict) and (s in value or s in value.values()):
                    return f"`{name}`"
                if isinstance(value, (list, set, frozenset, tuple)) and s in value:
                    return f"`{name}`"
        return None

    def close(self) -> StillHeld | None:
        """Close the server; what it left held if that raised or left descriptors open."""
        if self._netlink is not None:  # the checker's own, not the server's
            self._netlink.close()
            self._netlink = None
        if self.server is None:
            return None
        server, self.server = self.server, None
        try:
            server.close()
        except Exception as e:
            return StillHeld(
                f"the server's close() raised {type(e).__name__}: {e}; "
                "whatever it had not closed yet stays open",
            )
        del server
        left = _open_descriptors() - self._descriptors_before
        if left:
            return StillHeld(
                f"the server's close() left {len(left)} descriptor(s) "
                f"open that were not open before it started: {sorted(left)}",
            )
        return None
