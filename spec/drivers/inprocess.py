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

Two more things can take time: a server that never stops working (a busy
loop) and a server that blocks inside poll() (a blocking send to a client that
does not read).  The first is cut off after `busy_rounds` rounds without a
client making progress; the second by a SIGALRM watchdog (main thread only)
after `watchdog` seconds, reported through `blocked()`.

White-box cleanup (ECHO-6): after each settle the driver matches every new
client with the server's socket for it (and turns Nagle off on it, see
`_match`) (by address, among the sockets in the
server's ``inputs``, ``outputs`` and ``message_queues``) and keeps a weak
reference.  A connection that has ended must leave that socket closed (or
garbage-collected) and out of all three containers.
"""

from __future__ import annotations

import contextlib
import fcntl
import signal
import socket
import struct
import termios
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from spec.drivers.base import HOST, Driver
from spec.drivers.clients import Client, connect
from spec.model import Violation

#: The containers a white-box check looks in, as the seed names them.
CONTAINERS = ("inputs", "outputs", "message_queues")


def _unacknowledged(s: socket.socket) -> int:
    """Bytes in the socket's send queue not yet acknowledged (SIOCOUTQ)."""
    try:
        return struct.unpack("i", fcntl.ioctl(s.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
    except OSError:
        return 0


class ServerBlocked(Exception):
    """Raised by the watchdog inside a server's poll()."""


class InProcessDriver(Driver):
    #: Quiet rounds (nobody moved a byte) that end a settle.
    quiet_rounds = 2
    #: Rounds without client progress after which a still-busy server is cut off.
    busy_rounds = 300
    #: Seconds one poll() may take before the server is called blocked.
    watchdog = 2.0
    #: Seconds to wait for bytes the kernel still holds in flight to move.
    stall = 0.5
    #: Seconds without a write after which a flooding client counts as backed up.
    flood_stall = 0.02

    def __init__(self, server_class: type, target: str | None = None) -> None:
        self.server_class = server_class
        self.target = target or f"{server_class.__module__}:{server_class.__qualname__}"
        self.server: Any = None
        self._crash: tuple[BaseException, str] | None = None
        self._blocked: str | None = None
        self._server_sockets: dict[str, weakref.ref[socket.socket]] = {}

    def start(self) -> None:
        self.server = self.server_class(HOST, 0)
        self.address = tuple(self.server.address[:2])

    def connect(self) -> socket.socket:
        return connect(self.address, self.watchdog)

    # -- stepping ------------------------------------------------------------------

    def settle(self, clients: Sequence[Client], done: Callable[[], bool]) -> None:
        if self._crash or self._blocked:
            return
        quiet = idle = 0
        waiting_since: float | None = None
        with self._watchdog() as guarded:
            while quiet < self.quiet_rounds or not done():
                moved = False
                for c in clients:
                    moved |= c.pump()
                try:
                    handled = guarded(self.server.poll, 0 if waiting_since is None else 0.002)
                except ServerBlocked:
                    self._blocked = (f"the server's poll() did not return within "
                                     f"{self.watchdog:g} s (a blocking call inside the event loop)")
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
                    elif now - waiting_since > self.stall:
                        break
                elif idle >= self.busy_rounds:
                    break  # busy, but nothing is owed
        self._match(clients)

    def _in_flight(self, clients: Sequence[Client]) -> bool:
        """Do reading clients, or the server towards them, have unacknowledged bytes?

        Loopback is synchronous except for the kernel's ACK and window-update
        timers (delayed ACK: 40-200 ms), which can hold a bulk transfer back.
        Bytes held for a client that does not read are not in flight: they
        wait for that client.
        """
        for c in clients:
            if not (c.active and c.model.reading):
                continue
            ref = self._server_sockets.get(c.name)
            for s in (c.sock, ref() if ref is not None else None):
                if s is not None and s.fileno() != -1 and _unacknowledged(s):
                    return True
        return False

    @contextlib.contextmanager
    def _watchdog(self) -> Iterator[Callable[..., Any]]:
        """Yield `guarded(f, *args)`: f(*args), raising ServerBlocked after `watchdog` s.

        Only the server's own call is timed; an outer ITIMER_REAL (e.g.
        pytest-timeout's) is restored afterwards.
        """
        if threading.current_thread() is not threading.main_thread():
            yield lambda f, *args: f(*args)
            return

        def alarm(signum: int, frame: Any) -> None:
            raise ServerBlocked

        def guarded(f: Callable[..., Any], *args: Any) -> Any:
            signal.setitimer(signal.ITIMER_REAL, self.watchdog)
            try:
                return f(*args)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)

        outer = signal.getitimer(signal.ITIMER_REAL)
        old = signal.signal(signal.SIGALRM, alarm)
        try:
            yield guarded
        finally:
            signal.signal(signal.SIGALRM, old)
            if outer[0] > 0:
                signal.setitimer(signal.ITIMER_REAL, *outer)

    # -- verdicts ------------------------------------------------------------------

    def crash(self, wait: bool = False) -> Violation | None:
        if self._crash is None:
            return None
        e, tb = self._crash
        return Violation("ECHO-5", f"the server's poll() raised {type(e).__name__}: {e}; "
                         f"the server is dead\n{tb}")

    def blocked(self) -> str | None:
        return self._blocked

    def _containers(self) -> Iterator[tuple[str, Any]]:
        for name in CONTAINERS:
            container = getattr(self.server, name, None)
            if container is not None:
                yield name, container

    def _match(self, clients: Sequence[Client]) -> None:
        unmatched = {c.local_address: c.name for c in clients
                     if c.active and c.name not in self._server_sockets}
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
                    # Nagle would hold the server's small echo segments back
                    # until a delayed ACK (a 40 ms kernel timer): the one
                    # place loopback TCP is not synchronous.  Invisible to the
                    # protocol, so the driver switches it off.
                    with contextlib.suppress(OSError):
                        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def leaks(self, ended: Sequence[Client], live: int) -> Violation | None:
        for c in ended:
            ref = self._server_sockets.get(c.name)
            s = ref() if ref is not None else None
            if s is None:
                continue  # closed and collected, or never seen
            held = [name for name, container in self._containers() if s in container]
            if s.fileno() != -1 or held:
                what = [f"socket fd {s.fileno()} still open"] if s.fileno() != -1 else []
                what += [f"still in {name}" for name in held]
                return Violation("ECHO-6", f"after the connection ended ({c.model.state.value}) "
                                 f"the server still holds it: {', '.join(what)}",
                                 connection=c.name)
        return None

    def close(self) -> None:
        if self.server is not None:
            with contextlib.suppress(Exception):
                self.server.close()
            self.server = None
