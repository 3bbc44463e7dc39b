"""What the self-suite's server tests share: the address, server commands, a stepping rig.

Servers are tested two ways.  In-process, a steppable server (the reference, a
seed reproduction, a zoo defect) listens on 127.0.0.1 port 0 and is stepped with
``server.poll(...)`` in bounded loops (`step_until`, `step_read`) between real
client sockets' operations; a `Rig` makes the servers and clients of one test
and closes them all at its end.  As a command, ``python -m MODULE --port {port}``
(`server_command`) is run by `ServerProcess`, and plain blocking sockets drive
it (`roundtrip`, `recv_exactly`, ...).  Every wait is bounded: by rounds of
polling, by a deadline, or by a SIGALRM guard (`alarm_after`).

Test modules import this as ``from harness import ...``: pytest's default
(``prepend``) import mode puts ``tests/`` on ``sys.path`` before it imports
``tests/conftest.py`` or any test module (``tests/`` has no ``__init__.py``), from
whichever directory pytest is run and in every xdist worker; under
``--import-mode=importlib`` ``tests/conftest.py``, always imported first, puts it
there.  The fixtures built on this module are in ``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from spec.drivers.base import HOST

#: The self-suite's own test servers (C sources, scripts).
SERVERS = Path(__file__).resolve().parent / "servers"
#: Bytes a client sends or reads at once.
CHUNK = 64 * 1024
MiB = 1024 * 1024
#: Rounds of polling a rounds-bounded wait may take before a test gives up.
ROUNDS = 200
#: Seconds a deadline-bounded wait (a client's echo, accept()) may take.
WAIT = 10.0

T = TypeVar("T")


def server_command(module: str, *args: str) -> str:
    """``python -m MODULE --port {port} ARGS...``, for `ServerProcess` to fill in the port."""
    words = [sys.executable, "-m", module, "--port"]
    return " ".join([*map(shlex.quote, words), "{port}", *map(shlex.quote, args)])


#: The reference server as a command, logging only warnings.
REFERENCE_CMD = server_command("impl.select_server", "--log-level", "WARNING")


# -- guards ------------------------------------------------------------------------------


class Hung(Exception):
    """Raised by the SIGALRM guard in whatever call was blocking."""


@contextlib.contextmanager
def alarm_after(seconds: float) -> Iterator[None]:
    """Raise Hung in the main thread if the block has not finished within `seconds`.

    Nests: an outer guard's remaining time is restored afterwards.
    """

    def on_alarm(signum: int, frame: object) -> None:
        raise Hung(f"still running after {seconds} s")

    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    old_delay, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay:
            left = old_delay - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.001))


# -- stepping a server in this process ---------------------------------------------------


def step_until(
    server: Any,
    done: Callable[[], T],
    *,
    rounds: int = ROUNDS,
    seconds: float | None = None,
    poll: float = 0.01,
    each: Callable[[], object] | None = None,
    what: str = "the condition",
) -> T:
    """Step `server` with ``poll(poll)`` until `done()` is truthy; return its value.

    `each` runs before every check (clients sending and reading).  Bounded by
    `rounds` polls or, when `seconds` is given, by that deadline instead; raises
    AssertionError naming `what` when the bound is reached.
    """
    deadline = None if seconds is None else time.monotonic() + seconds
    taken = 0
    while True:
        if each is not None:
            each()
        result = done()
        if result:
            return result
        if deadline is None and taken >= rounds:
            raise AssertionError(f"{what} not reached in {rounds} rounds")
        if deadline is not None and time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:g} s waiting for {what}")
        server.poll(poll)
        taken += 1


def read_now(client: socket.socket) -> bytes | None:
    """What `client` can read right now: bytes (maybe b''), or None at EOF."""
    got = bytearray()
    timeout = client.gettimeout()
    client.setblocking(False)
    try:
        while True:
            try:
                chunk = client.recv(CHUNK)
            except BlockingIOError:
                return bytes(got)
            if not chunk:
                return None if not got else bytes(got)
            got += chunk
    finally:
        client.settimeout(timeout)


def step_read(server: Any, client: socket.socket, n: int, rounds: int = ROUNDS) -> bytes:
    """Poll `server` until `client` has read `n` bytes (or EOF); return them."""
    got = bytearray()
    for _ in range(rounds):
        server.poll(0.01)
        chunk = read_now(client)
        if chunk is None:
            break
        got += chunk
        if len(got) >= n:
            break
    return bytes(got)


def server_side(server: Any, client: socket.socket) -> socket.socket | None:
    """The server's socket for `client`, from its select lists or queues (None if not there)."""
    for s in [*server.inputs, *server.message_queues]:
        if s is server.server:
            continue
        with contextlib.suppress(OSError):
            if s.fileno() != -1 and s.getpeername() == client.getsockname():
                found: socket.socket = s
                return found
    return None


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER on and a zero timeout: the kernel sends an RST, not a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def open_fds() -> int:
    """How many descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


class Rig:
    """Stepped servers, client sockets and spare descriptors made by one test, all
    closed when it ends (the `rig` fixture)."""

    def __init__(self) -> None:
        self.servers: list[Any] = []
        self.sockets: list[socket.socket] = []
        self.fds: list[int] = []

    def server(self, cls: type) -> Any:
        """A `cls` listening on 127.0.0.1, on a port of the kernel's choosing."""
        server = cls(HOST, 0)
        self.servers.append(server)
        return server

    def client(
        self,
        server: Any,
        *,
        rcvbuf: int | None = None,
        sndbuf: int | None = None,
        timeout: float = 2.0,
    ) -> socket.socket:
        """A client connected to `server` (buffer sizes set before connecting), not yet
        accepted: the connection completes in the kernel's backlog."""
        c = self.track(socket.socket())
        if rcvbuf is not None:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf is not None:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        c.settimeout(timeout)
        c.connect(server.address)
        return c

    def accepted(self, server: Any, client: socket.socket, *, poll: float = 0.01) -> socket.socket:
        """Step `server` until it has accepted `client`; return the server's socket for it."""
        accepted = step_until(
            server, lambda: server_side(server, client), poll=poll, what="accept()"
        )
        assert accepted is not None  # step_until returns only a truthy value
        return accepted

    def connect(
        self, server: Any, *, rcvbuf: int | None = None, poll: float = 0.01
    ) -> socket.socket:
        """A non-blocking client that `server` has accepted."""
        c = self.client(server, rcvbuf=rcvbuf)
        c.setblocking(False)
        self.accepted(server, c, poll=poll)
        return c

    def peer(self, server: Any, *, rcvbuf: int | None = None) -> Peer:
        """Connect a `Peer`, step `server` until it has accepted it (and only it)."""
        before = set(server.message_queues)
        sock = self.client(server, rcvbuf=rcvbuf, timeout=5.0)
        sock.setblocking(False)
        new = step_until(
            server, lambda: set(server.message_queues) - before, seconds=WAIT, what="accept()"
        )
        assert len(new) == 1, new
        return Peer(sock, new.pop())

    def track(self, s: socket.socket) -> socket.socket:
        """Close `s` with the rest."""
        self.sockets.append(s)
        return s

    def close(self) -> None:
        for s in self.sockets:
            s.close()
        for server in self.servers:
            server.close()
        for fd in self.fds:
            os.close(fd)


# -- a client that sends and reads at once, for a stepped server ------------------------


class Peer:
    """A non-blocking client socket: bytes still to send, and everything received."""

    def __init__(self, sock: socket.socket, conn: socket.socket) -> None:
        self.sock = sock
        self.conn = conn  # the server's socket for this client
        self.out = bytearray()
        self.sent = 0
        self.received = bytearray()
        self.eof = False
        self.error: OSError | None = None
        self.shutdown_when_sent = False
        self.shut = False

    def write(self, data: bytes, *, then_shutdown: bool = False) -> None:
        self.out += data
        self.shutdown_when_sent = then_shutdown

    def send_some(self) -> int:
        """Send what the socket takes now; return how many bytes that was."""
        n = 0
        if self.out:
            try:
                n = self.sock.send(bytes(self.out[:CHUNK]))
            except BlockingIOError:
                n = 0
            del self.out[:n]
            self.sent += n
        if not self.out and self.shutdown_when_sent and not self.shut:
            self.sock.shutdown(socket.SHUT_WR)
            self.shut = True
        return n

    def read_some(self) -> None:
        while not self.eof and self.error is None:
            try:
                chunk = self.sock.recv(CHUNK)
            except BlockingIOError:
                return
            except OSError as e:
                self.error = e
                return
            if not chunk:
                self.eof = True
                return
            self.received += chunk

    def step(self) -> None:
        self.send_some()
        self.read_some()


def exchange(server: Any, peer: Peer, data: bytes, *, timeout: float = WAIT) -> bytes:
    """Send `data`, step the server until as many bytes came back; return them."""
    start = len(peer.received)
    peer.write(data)
    step_until(
        server,
        lambda: len(peer.received) - start >= len(data) or peer.eof or peer.error,
        each=peer.step,
        what=f"the echo of {len(data)} bytes",
        seconds=timeout,
    )
    assert peer.error is None and not peer.eof, (peer.error, peer.eof)
    return bytes(peer.received[start:])


def assert_released(server: Any, conn: socket.socket) -> None:
    """ECHO-6: the server holds nothing for this connection any more."""
    assert conn not in server.inputs
    assert conn not in server.outputs
    assert conn not in server.message_queues
    assert conn not in server.finished
    assert conn.fileno() == -1, "the server's socket for the connection is still open"


# -- a server run as a command: blocking clients with deadlines --------------------------


def read_to_eof(s: socket.socket, deadline: float) -> bytes:
    """Read until EOF; a recv() past `deadline` raises TimeoutError."""
    got = bytearray()
    while True:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = s.recv(CHUNK)
        if not chunk:
            return bytes(got)
        got += chunk


def recv_exactly(s: socket.socket, n: int, deadline: float) -> bytes:
    """Read `n` bytes; AssertionError at an earlier EOF, TimeoutError past `deadline`."""
    got = bytearray()
    while len(got) < n:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = s.recv(n - len(got))
        if not chunk:
            raise AssertionError(f"EOF after {len(got)} of {n} bytes")
        got += chunk
    return bytes(got)


def roundtrip(address: tuple[str, int], data: bytes, *, timeout: float = 10.0) -> bytes:
    """Connect, send, half-close, read to EOF; all within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    with socket.create_connection(address, timeout=timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        return read_to_eof(s, deadline)


def echo_or_refusal(sock: socket.socket, message: bytes, deadline: float) -> str:
    """Send `message` and read: 'served' (exact echo), 'refused' (EOF/reset), or 'hung'."""
    try:
        sock.sendall(message)
    except (BrokenPipeError, ConnectionResetError):
        return "refused"
    got = b""
    while len(got) < len(message):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "hung"
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(CHUNK)
        except ConnectionResetError:
            return "refused"
        except TimeoutError:
            return "hung"
        if not chunk:
            assert got == b"", f"a connection was closed mid-echo after {got!r}"
            return "refused"
        got += chunk
    assert got == message.upper(), (got, message)
    return "served"


@contextlib.contextmanager
def running(argv: list[str], stderr: BinaryIO) -> Iterator[subprocess.Popen[bytes]]:
    """Run `argv` in its own session, standard output piped (`read_line`), standard error
    to `stderr`; on the way out kill it if it still runs, reap it and close the pipe."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    """A line of the subprocess's standard output, waited for at most `timeout` seconds."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"no line from the subprocess within {timeout} s")
    return proc.stdout.readline()


def make_the_client_drop_echo(driver: Any, client: Any, size: int) -> None:
    """Leave `size` bytes of `client`'s echo dropped by its own kernel, to be resent on a timer.

    The client stops reading and takes `size` bytes of echo; its receive
    buffer is then shrunk below what it holds, so its kernel drops the next
    `size` bytes of echo (and every retransmission while it does not read),
    though its window had room.  Returns 0.9 s later: resent at about 0.2 s
    and 0.6 s, the next retransmission is due at about 1.4 s.
    """
    driver.settle([client], lambda: not client.expects_more)  # accepted, buffers fixed
    client.model.reading = False
    client.queue(b"x" * size)
    driver.settle([client], lambda: not client.pending)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
    client.queue(b"y" * size)
    driver.settle([client], lambda: not client.pending)
    time.sleep(0.9)
