"""The reference select() server's own tests (impl/select_server.py, impl/_cli.py).

These are not the property-based conformance checker: they pin down, one case
at a time and deterministically, that the reference server does what
spec/requirements.py asks (ECHO-1..ECHO-10) and what its command line promises.

Two ways in:

* In-process: a `SelectEchoServer` on 127.0.0.1 port 0, real client sockets,
  and the server stepped with ``server.poll(0.01)`` in bounded loops (`pump`).
  No threads, and no sleeps used as synchronisation: every wait is a loop that
  polls the server until a condition holds or a deadline passes.
* As a command: ``python -m impl.select_server`` run by `ServerProcess` (its own
  process group, always ended), driven by sockets, nc and socat, and watched
  with psutil (RSS, descriptors, CPU time, TCP states).

Every process a test starts is ended in a ``finally``/context manager, every
socket is closed, and every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import re
import resource
import select
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import psutil
import pytest

from impl.select_server import FD_SETSIZE, SelectEchoServer
from spec.drivers.server_process import ServerProcess

HOST = "127.0.0.1"
PYTHON = shlex.quote(sys.executable)
SERVER_CMD = f"{PYTHON} -m impl.select_server --port {{port}} --log-level WARNING"
SERVER_CMD_INFO = f"{PYTHON} -m impl.select_server --port {{port}} --log-level INFO"
CHUNK = 64 * 1024
MiB = 1024 * 1024

T = TypeVar("T")


def upper_by_hand(data: bytes) -> bytes:
    """ECHO-1 written out: a-z become A-Z, every other byte value is unchanged."""
    return bytes(b - 32 if 0x61 <= b <= 0x7A else b for b in data)


# ---------------------------------------------------------------------------
# In-process helpers: a stepped server and non-blocking client sockets
# ---------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[SelectEchoServer]:
    srv = SelectEchoServer(HOST, 0)
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def opened() -> Iterator[list[socket.socket]]:
    """Client sockets a test opens; all closed at the end, whatever happened."""
    socks: list[socket.socket] = []
    try:
        yield socks
    finally:
        for s in socks:
            s.close()


def pump(
    server: SelectEchoServer,
    until: Callable[[], T],
    *,
    what: str,
    timeout: float = 10.0,
    each: Callable[[], object] | None = None,
) -> T:
    """Step the server with poll(0.01) until `until()` is truthy; return its value.

    `each` runs before every check (clients sending and reading).  Bounded by
    `timeout` seconds; raises AssertionError naming `what` when it runs out.
    """
    deadline = time.monotonic() + timeout
    while True:
        if each is not None:
            each()
        result = until()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        server.poll(0.01)


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


def connect(
    server: SelectEchoServer, opened: list[socket.socket], *, rcvbuf: int | None = None
) -> Peer:
    """Connect a client, step the server until it has accepted it, return the pair."""
    before = set(server.message_queues)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    opened.append(sock)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(5.0)
    sock.connect(server.address)  # completes in the kernel's backlog, before accept()
    sock.setblocking(False)
    new = pump(server, lambda: set(server.message_queues) - before, what="accept()")
    assert len(new) == 1, new
    return Peer(sock, new.pop())


def exchange(server: SelectEchoServer, peer: Peer, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Send `data`, step the server until as many bytes came back; return them."""
    start = len(peer.received)
    peer.write(data)
    pump(server, lambda: len(peer.received) - start >= len(data) or peer.eof or peer.error,
         each=peer.step, what=f"the echo of {len(data)} bytes", timeout=timeout)
    assert peer.error is None and not peer.eof, (peer.error, peer.eof)
    return bytes(peer.received[start:])


def assert_released(server: SelectEchoServer, conn: socket.socket) -> None:
    """ECHO-6: the server holds nothing for this connection any more."""
    assert conn not in server.inputs
    assert conn not in server.outputs
    assert conn not in server.message_queues
    assert conn not in server.finished
    assert conn.fileno() == -1, "the server's socket for the connection is still open"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# ---------------------------------------------------------------------------
# In-process: transform, stream integrity, isolation (ECHO-1, -2, -3)
# ---------------------------------------------------------------------------


def test_poll_with_nothing_ready_handles_nothing(server: SelectEchoServer) -> None:
    assert server.poll(0) == 0
    assert server.poll(0.01) == 0
    assert server.inputs == [server.server]
    assert server.outputs == []
    assert server.message_queues == {}
    assert server.finished == set()


def test_all_256_byte_values_come_back_as_bytes_upper(
    server: SelectEchoServer, opened: list[socket.socket]
) -> None:
    peer = connect(server, opened)
    data = bytes(range(256))
    echo = exchange(server, peer, data)
    assert echo == data.upper() == upper_by_hand(data)
    # Non-ASCII letters in any encoding are left alone: no decoding happens.
    text = "ÿéßçñ µ ı ǆ".encode() + "ÿéß".encode("latin-1")
    assert exchange(server, peer, text) == text
    assert exchange(server, peer, b"abc xyz ABC @[`{") == b"ABC XYZ ABC @[`{"


def test_empty_connection_is_closed_and_released(
    server: SelectEchoServer, opened: list[socket.socket]
) -> None:
    """A client that sends nothing and closes: no echo, EOF, nothing held."""
    peer = connect(server, opened)
    peer.sock.shutdown(socket.SHUT_WR)
    pump(server, lambda: peer.eof or peer.error, each=peer.read_some, what="EOF")
    assert peer.received == b"" and peer.error is None
    assert_released(server, peer.conn)
    assert server.inputs == [server.server]


def test_partial_writes_and_reads(server: SelectEchoServer, opened: list[socket.socket]) -> None:
    """Byte-at-a-time writes and reads, and a poll with no data, lose nothing."""
    peer = connect(server, opened)
    # Nothing sent yet: a round has nothing to do for this connection.
    assert server.poll(0) == 0
    peer.read_some()
    assert peer.received == b"" and not peer.eof
    message = b"partial reads: abcdefghijklmnopqrstuvwxyz"
    for i in range(len(message)):
        assert exchange(server, peer, message[i:i + 1]) == message[i:i + 1].upper()
    # One write, read back one byte at a time.
    peer.write(b"one write, many reads")
    peer.send_some()
    got = bytearray()

    def read_one() -> None:
        with contextlib.suppress(BlockingIOError):
            got.extend(peer.sock.recv(1))

    pump(server, lambda: len(got) == 21, each=read_one, what="21 one-byte reads")
    assert bytes(got) == b"ONE WRITE, MANY READS"
    assert bytes(peer.received) == message.upper()


def test_urgent_data_is_delivered_inline(
    server: SelectEchoServer, opened: list[socket.socket]
) -> None:
    peer = connect(server, opened)
    peer.sock.send(b"ab")
    peer.sock.send(b"c", socket.MSG_OOB)
    peer.sock.send(b"d")
    pump(server, lambda: len(peer.received) >= 4, each=peer.read_some, what="the echo of abcd")
    assert bytes(peer.received) == b"ABCD"


def test_4_mib_echoed_in_order_while_the_client_reads(
    server: SelectEchoServer, opened: list[socket.socket]
) -> None:
    peer = connect(server, opened, rcvbuf=16 * 1024)
    # Small kernel buffers on the echo's way back: the server's send() then
    # often sends less than it was given, and the rest must stay queued.
    peer.conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
    payload = random.Random(4).randbytes(4 * MiB)
    peer.write(payload)
    pump(server, lambda: len(peer.received) >= len(payload) or peer.eof or peer.error,
         each=peer.step, what="the 4 MiB echo", timeout=30.0)
    assert peer.error is None and not peer.eof
    assert len(peer.received) == len(payload)
    assert bytes(peer.received) == payload.upper()
    assert peer.conn in server.inputs
    assert peer.conn not in server.outputs
    assert server.message_queues[peer.conn] == b""


def test_many_interleaved_clients_get_only_their_own_echo(
    server: SelectEchoServer, opened: list[socket.socket]
) -> None:
    peers = [connect(server, opened) for _ in range(20)]
    # Client i sends only letter i (and its own number), in 5 pieces, round robin.
    pieces = {
        i: [f"{chr(0x61 + i) * (7 + j * 13)}#{i:02d}.".encode() for j in range(5)]
        for i in range(len(peers))
    }
    for j in range(5):
        for i, peer in enumerate(peers):
            peer.write(pieces[i][j])
            peer.send_some()
        server.poll(0.01)
        for peer in reversed(peers):
            peer.read_some()
    expected = {i: b"".join(p).upper() for i, p in pieces.items()}

    def everyone_done() -> bool:
        for peer in peers:
            peer.step()
        return all(len(p.received) >= len(expected[i]) for i, p in enumerate(peers))

    pump(server, everyone_done, what="every client's echo")
    for i, peer in enumerate(peers):
        assert bytes(peer.received) == expected[i], f"client {i} got someone else's bytes"
        assert peer.eof is False and peer.error is None


# ---------------------------------------------------------------------------
# In-process: half-close, reset, backpressure, cleanup (ECHO-4..ECHO-8)
# ---------------------------------------------------------------------------


def test_half_close_with_echo_still_queued_delivers_all_then_eof(
    server: SelectEchoServer, opened: list[socket.socket]
) -> None:
    peer = connect(server, opened, rcvbuf=4096)
    # Keep the kernel from absorbing the whole echo, so some of it is still
    # queued in the server when the client's EOF arrives.
    peer.conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    payload = random.Random(44).randbytes(200 * 1024)
    assert len(payload) < SelectEchoServer.backlog_limit
    peer.write(payload, then_shutdown=True)
    pump(server, lambda: peer.conn in server.finished, each=peer.send_some,
         what="the server to see the client's EOF")
    assert peer.shut
    # The state ECHO-4 is about: EOF seen, echo still owed.
    assert peer.conn not in server.inputs
    assert peer.conn in server.outputs
    assert len(server.message_queues[peer.conn]) > 0
    pump(server, lambda: peer.eof or peer.error, each=peer.read_some,
         what="the rest of the echo and EOF")
    assert peer.error is None
    assert bytes(peer.received) == payload.upper()
    assert_released(server, peer.conn)
    assert server.inputs == [server.server]
    assert server.outputs == []
    assert server.message_queues == {}
    assert server.finished == set()


def test_half_close_without_backlog_closes_at_once(
    server: SelectEchoServer, opened: list[socket.socket]
) -> None:
    peer = connect(server, opened)
    assert exchange(server, peer, b"last words") == b"LAST WORDS"
    peer.sock.shutdown(socket.SHUT_WR)
    pump(server, lambda: peer.eof or peer.error, each=peer.read_some, what="EOF")
    assert peer.error is None
    assert_released(server, peer.conn)


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER on and a zero timeout: the kernel sends RST."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_client_reset_mid_stream_affects_no_one_else(
    server: SelectEchoServer, opened: list[socket.socket]
) -> None:
    a = connect(server, opened, rcvbuf=4096)
    a.conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # a send soon comes up short
    b = connect(server, opened)
    assert exchange(server, b, b"before") == b"BEFORE"
    # A streams without reading, so the server has echo queued for it...
    a.write(random.Random(5).randbytes(512 * 1024))
    pump(server, lambda: len(server.message_queues.get(a.conn, b"")) > 0, each=a.send_some,
         what="echo queued for the client about to reset")
    b.write(b"during")
    b.send_some()
    # ...and then resets, with data in flight both ways.
    _reset(a.sock)
    pump(server, lambda: a.conn not in server.message_queues,
         what="the server to drop the reset connection")
    assert_released(server, a.conn)
    # The other client is still served, and the server still accepts.
    pump(server, lambda: len(b.received) >= len(b"BEFOREDURING"), each=b.step,
         what="the other client's echo")
    assert bytes(b.received) == b"BEFOREDURING"
    assert exchange(server, b, b"after") == b"AFTER"
    c = connect(server, opened)
    assert exchange(server, c, b"new client") == b"NEW CLIENT"
    assert b.conn in server.inputs and c.conn in server.inputs


def test_reset_of_an_idle_connection_is_released(
    server: SelectEchoServer, opened: list[socket.socket]
) -> None:
    peer = connect(server, opened)
    assert exchange(server, peer, b"x") == b"X"
    _reset(peer.sock)
    pump(server, lambda: peer.conn not in server.message_queues,
         what="the server to drop the reset connection")
    assert_released(server, peer.conn)
    assert server.inputs == [server.server]


def test_reset_after_half_close_with_echo_owed_is_released(
    server: SelectEchoServer, opened: list[socket.socket]
) -> None:
    peer = connect(server, opened, rcvbuf=4096)
    peer.conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    peer.write(b"owed " * 40_000, then_shutdown=True)
    pump(server, lambda: peer.conn in server.finished, each=peer.send_some,
         what="a half-closed connection with echo owed")
    assert len(server.message_queues[peer.conn]) > 0
    _reset(peer.sock)
    pump(server, lambda: peer.conn not in server.message_queues,
         what="the server to drop the reset connection")
    assert_released(server, peer.conn)
    assert server.inputs == [server.server] and server.outputs == []


def test_backpressure_stops_reading_past_the_limit_and_resumes_after_drain(
    server: SelectEchoServer, opened: list[socket.socket]
) -> None:
    limit = server.backlog_limit
    flooder = connect(server, opened, rcvbuf=4096)
    other = connect(server, opened)
    pattern = b"backpressure! 0123456789 abcdefghijklmnopqrstuvwxyz\n"
    payload = pattern * (64 * MiB // len(pattern))
    flooder.write(payload)
    # Send without reading until the server takes the connection out of inputs.
    pump(server, lambda: flooder.conn not in server.inputs, each=flooder.send_some,
         what="the server to stop reading from a client that does not read")
    queue = server.message_queues[flooder.conn]
    assert len(queue) >= limit
    assert flooder.conn in server.outputs
    # Keep pushing: the server does not read more, so its queue stays bounded
    # and the client's sends stall once the kernel buffers are full.
    high_water = 0
    stalled_since = None
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        progressed = flooder.send_some()
        server.poll(0.01)
        high_water = max(high_water, len(server.message_queues[flooder.conn]))
        assert flooder.conn not in server.inputs
        if progressed:
            stalled_since = None
        elif stalled_since is None:
            stalled_since = time.monotonic()
        elif time.monotonic() - stalled_since > 0.3:
            break
    else:
        raise AssertionError("the client's sends never stalled: the server kept reading")
    assert limit <= high_water <= limit + server.recv_size
    assert flooder.sent < len(payload)
    # ECHO-7: another client is served meanwhile.
    assert exchange(server, other, b"not blocked") == b"NOT BLOCKED"
    # Stop sending, read everything: the backlog drains and reading resumes.
    sent = flooder.sent
    flooder.out.clear()
    readded = []

    def drain() -> None:
        flooder.read_some()
        if flooder.conn in server.inputs:
            readded.append(len(flooder.received))

    pump(server, lambda: len(flooder.received) >= sent or flooder.eof or flooder.error,
         each=drain, what="the whole backlog to be echoed", timeout=30.0)
    assert readded, "the connection was never put back in inputs"
    assert flooder.error is None and not flooder.eof
    assert bytes(flooder.received) == payload[:sent].upper()
    pump(server, lambda: flooder.conn in server.inputs and flooder.conn not in server.outputs,
         what="the drained connection to be read again")
    assert server.message_queues[flooder.conn] == b""
    assert exchange(server, flooder, b"and on") == b"AND ON"


def test_close_releases_every_socket(opened: list[socket.socket]) -> None:
    baseline = open_fds()
    server = SelectEchoServer(HOST, 0)
    try:
        idle = connect(server, opened)
        busy = connect(server, opened, rcvbuf=4096)
        busy.conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        half = connect(server, opened, rcvbuf=4096)
        half.conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        assert exchange(server, idle, b"idle") == b"IDLE"
        busy.write(b"q" * 100_000)
        pump(server, lambda: len(server.message_queues[busy.conn]) > 0, each=busy.send_some,
             what="echo queued")
        half.write(b"h" * 100_000, then_shutdown=True)
        pump(server, lambda: half.conn in server.finished, each=half.send_some,
             what="a half-closed connection with echo owed")
        # One more client still waiting in the listen backlog, never accepted.
        waiting = socket.create_connection(server.address, timeout=5.0)
        opened.append(waiting)
        conns = [idle.conn, busy.conn, half.conn]
        listener = server.server
    finally:
        server.close()
    assert listener.fileno() == -1
    for conn in conns:
        assert_released(server, conn)
    assert server.inputs == [] and server.outputs == []
    assert server.message_queues == {} and server.finished == set()
    assert server._spare.fd is None
    for peer in (idle, busy, half):
        peer.sock.close()
    waiting.close()
    assert open_fds() == baseline
    server.close()  # a second close is harmless
    assert open_fds() == baseline


class _FlakyListener:
    """The listening socket, but accept() first fails with the given errors."""

    def __init__(self, sock: socket.socket, errors: list[int]) -> None:
        self._sock = sock
        self._errors = errors

    def fileno(self) -> int:
        return self._sock.fileno()

    def accept(self) -> tuple[socket.socket, object]:
        if self._errors:
            code = self._errors.pop(0)
            raise OSError(code, os.strerror(code))
        return self._sock.accept()

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


@pytest.mark.parametrize("code", [errno.EPROTO, errno.ENOBUFS], ids=["EPROTO", "ENOBUFS"])
def test_accept_errors_of_one_connection_do_not_stop_the_server(
    server: SelectEchoServer, opened: list[socket.socket], code: int
) -> None:
    flaky = _FlakyListener(server.server, [code])
    server.server = flaky  # type: ignore[assignment]
    server.inputs[0] = flaky  # type: ignore[call-overload]
    peer = connect(server, opened)
    assert exchange(server, peer, b"still accepting") == b"STILL ACCEPTING"


# ---------------------------------------------------------------------------
# EMFILE: the server in a subprocess with a small descriptor limit
# ---------------------------------------------------------------------------

EMFILE_SCRIPT = textwrap.dedent("""
    import resource, signal, sys, time
    from impl.select_server import SelectEchoServer

    limit = int(sys.argv[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    server = SelectEchoServer("127.0.0.1", 0)
    print(server.address[1], flush=True)
    deadline = time.monotonic() + float(sys.argv[2])
    try:
        while time.monotonic() < deadline:
            server.poll(0.2)
    finally:
        server.close()
    """)


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"no line from the subprocess within {timeout} s")
    return proc.stdout.readline()


def _echo_or_refusal(sock: socket.socket, message: bytes, deadline: float) -> str:
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


def test_out_of_descriptors_refuses_cleanly_and_keeps_serving() -> None:
    limit, first_count, extra_count = 64, 20, 60
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-c", EMFILE_SCRIPT, str(limit), "60"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
            start_new_session=True)
        socks: list[socket.socket] = []
        try:
            port = int(_read_line(proc, 10.0))
            address = (HOST, port)
            first = [socket.create_connection(address, timeout=5.0) for _ in range(first_count)]
            socks += first
            deadline = time.monotonic() + 10.0
            for i, s in enumerate(first):
                assert _echo_or_refusal(s, b"first %d" % i, deadline) == "served"
            extras = [socket.create_connection(address, timeout=5.0)
                      for _ in range(extra_count)]
            socks += extras
            deadline = time.monotonic() + 10.0
            outcomes = [_echo_or_refusal(s, b"extra %d" % i, deadline)
                        for i, s in enumerate(extras)]
            assert "hung" not in outcomes, outcomes
            refused = outcomes.count("refused")
            # 0, 1, 2, the listener and the spare descriptor are taken.
            assert refused >= first_count + extra_count - (limit - 5), outcomes
            assert proc.poll() is None, "the server died when it ran out of descriptors"
            # Not a busy loop: idle once the extra connections are refused.
            p = psutil.Process(proc.pid)
            before = sum(p.cpu_times()[:2])
            time.sleep(1.0)  # a measuring window, not synchronisation
            cpu = sum(p.cpu_times()[:2]) - before
            print(f"\nout of descriptors: {refused} of {extra_count} extra connections "
                  f"refused; server CPU over the next 1 s: {cpu:.3f} s")
            assert cpu < 0.1, f"{cpu:.3f} s of CPU in 1 s while out of descriptors"
            # The first clients are still served.
            deadline = time.monotonic() + 10.0
            for i, s in enumerate(first):
                assert _echo_or_refusal(s, b"again %d" % i, deadline) == "served"
            # Once descriptors are free again, new connections are served again.
            for s in extras:
                s.close()
            deadline = time.monotonic() + 10.0
            while True:
                with socket.create_connection(address, timeout=5.0) as late:
                    if _echo_or_refusal(late, b"late", deadline) == "served":
                        break
                assert time.monotonic() < deadline, "no new connection served after recovery"
            assert proc.poll() is None
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
        finally:
            for s in socks:
                s.close()
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            assert proc.stdout is not None
            proc.stdout.close()
            stderr.seek(0)
            log = stderr.read().decode(errors="replace")
    assert "out of file descriptors: refusing" in log
    assert "Traceback" not in log, log


# ---------------------------------------------------------------------------
# As a command: real clients (nc, socat) and raw sockets
# ---------------------------------------------------------------------------


def ensure_nofile(needed: int) -> None:
    """Raise this process's soft RLIMIT_NOFILE to `needed` if it is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below the {needed} this test needs")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


@pytest.fixture
def command() -> Iterator[ServerProcess]:
    with ServerProcess(SERVER_CMD) as sp:
        yield sp


@pytest.fixture
def roomy_command() -> Iterator[ServerProcess]:
    """The command with a descriptor limit well past FD_SETSIZE (so is the test's)."""
    ensure_nofile(2 * FD_SETSIZE + 512)
    with ServerProcess(SERVER_CMD) as sp:
        yield sp


def wait_until_only_listening(sp: ServerProcess, *, timeout: float = 10.0) -> None:
    """Poll (bounded) until the server holds no TCP socket but its listener."""
    deadline = time.monotonic() + timeout
    while True:
        states = [c.status for c in sp.connections()]
        if states == [psutil.CONN_LISTEN]:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout:g} s the server still holds TCP sockets in "
                                 f"states {sorted(set(states))} ({len(states)} sockets)")
        time.sleep(0.05)  # polling interval of a bounded wait


def roundtrip(address: tuple[str, int], data: bytes, *, timeout: float = 10.0) -> bytes:
    """Connect, send, half-close, read to EOF; all within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    with socket.create_connection(address, timeout=timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        return _read_to_eof(s, deadline)


def _read_to_eof(s: socket.socket, deadline: float) -> bytes:
    got = bytearray()
    while True:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = s.recv(CHUNK)
        if not chunk:
            return bytes(got)
        got += chunk


def _recv_exactly(s: socket.socket, n: int, deadline: float) -> bytes:
    got = bytearray()
    while len(got) < n:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = s.recv(n - len(got))
        if not chunk:
            raise AssertionError(f"EOF after {len(got)} of {n} bytes")
        got += chunk
    return bytes(got)


CLIENT_PAYLOAD = (b"hello, World! \x00\xff\r\n" + bytes(range(256))
                  + random.Random(7).randbytes(MiB))


def _nc_argv(port: int) -> list[str]:
    nc = shutil.which("nc") or shutil.which("netcat")
    if nc is None:
        pytest.skip("nc is not installed (Debian: apt-get install netcat-openbsd)")
    usage = subprocess.run([nc, "-h"], capture_output=True, timeout=10)
    text = (usage.stdout + usage.stderr).decode(errors="replace")
    if not re.search(r"^\s*-N\b", text, re.MULTILINE):
        pytest.skip(f"{nc} has no -N (shut down the socket after EOF on stdin); "
                    "only OpenBSD netcat's -N is supported here")
    return [nc, "-N", HOST, str(port)]


def test_nc_client(command: ServerProcess) -> None:
    argv = _nc_argv(command.port)
    done = subprocess.run(argv, input=CLIENT_PAYLOAD, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == CLIENT_PAYLOAD.upper()
    small = subprocess.run(argv, input=b"abc", capture_output=True, timeout=30)
    assert small.stdout == b"ABC"
    assert command.alive


def test_socat_client(command: ServerProcess) -> None:
    socat = shutil.which("socat")
    if socat is None:
        pytest.skip("socat is not installed (Debian: apt-get install socat)")
    # -t: after EOF on stdin, wait this long for the server's EOF.
    argv = [socat, "-t", "20", "-", f"TCP:{HOST}:{command.port},shut-down"]
    done = subprocess.run(argv, input=CLIENT_PAYLOAD, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == CLIENT_PAYLOAD.upper()
    small = subprocess.run(argv, input=b"abc", capture_output=True, timeout=30)
    assert small.stdout == b"ABC"
    assert command.alive


def test_flood_from_a_non_reading_client_keeps_memory_bounded(
    command: ServerProcess,
) -> None:
    """ECHO-8 and ECHO-7: 64 MiB pushed at a client that never reads."""
    address = command.address
    assert roundtrip(address, b"warm up " * 50_000) == b"WARM UP " * 50_000
    baseline = command.memory_rss()
    peak = baseline
    pushed = 0
    total = 64 * MiB
    block = random.Random(64).randbytes(256 * 1024)
    with socket.create_connection(address, timeout=5.0) as flooder, \
            socket.create_connection(address, timeout=5.0) as other:
        flooder.setblocking(False)
        deadline = time.monotonic() + 15.0
        last_progress = time.monotonic()
        next_sample = 0.0
        while pushed < total and time.monotonic() < deadline:
            try:
                pushed += flooder.send(block)
                last_progress = time.monotonic()
            except BlockingIOError:
                if time.monotonic() - last_progress > 1.0:
                    break  # the send buffer has stayed full: the server stopped reading
                select.select([], [flooder], [], 0.05)
            if time.monotonic() >= next_sample:
                peak = max(peak, command.memory_rss())
                next_sample = time.monotonic() + 0.1
        peak = max(peak, command.memory_rss())
        # While the flooder still holds its backlog, another client is served.
        other.sendall(b"still served?")
        assert _recv_exactly(other, 13, time.monotonic() + 5.0) == b"STILL SERVED?"
        growth = peak - baseline
        print(f"\n64 MiB flood: pushed {pushed / MiB:.1f} MiB before the send buffer stayed "
              f"full; RSS growth {growth / MiB:.2f} MiB (baseline {baseline / MiB:.1f} MiB)")
        assert growth < 32 * MiB, f"RSS grew by {growth / MiB:.1f} MiB"
        assert command.alive


def open_in_batches(
    address: tuple[str, int], n: int, socks: list[socket.socket], *, batch: int = 50,
    timeout: float = 30.0,
) -> list[str]:
    """Open `n` connections (appended to `socks`, which the caller closes), `batch` at a
    time, and after each batch send a message on each new one and read the outcome
    (`_echo_or_refusal`).

    Waiting for each batch's echoes keeps the listen queue short: connecting all
    at once would overflow it while the server is busy, and the kernel would drop
    SYNs that are retried only after 1 s, 3 s, 7 s...
    """
    deadline = time.monotonic() + timeout
    outcomes: list[str] = []
    while len(outcomes) < n:
        first = len(socks)
        for _ in range(min(batch, n - len(outcomes))):
            socks.append(socket.create_connection(address, timeout=10.0))
        for i in range(first, len(socks)):
            outcomes.append(_echo_or_refusal(socks[i], b"connection %04d: abc-xyz" % i,
                                             deadline))
    return outcomes


def test_1000_simultaneous_connections_each_echo_correctly(roomy_command: ServerProcess) -> None:
    command = roomy_command
    n = 1000
    started = time.monotonic()
    socks: list[socket.socket] = []
    try:
        outcomes = open_in_batches(command.address, n, socks)
        assert outcomes == ["served"] * n
        # With all 1,000 open: a second round on every connection, sent in
        # reverse order, then read.
        messages = [f"connection {i:04d} of many: abc-xyz-{i}".encode() for i in range(n)]
        deadline = time.monotonic() + 30.0
        for s, m in zip(reversed(socks), reversed(messages), strict=True):
            s.sendall(m[::-1])
        for s, m in zip(socks, messages, strict=True):
            assert _recv_exactly(s, len(m), deadline) == m[::-1].upper()
        established = sum(1 for c in command.connections()
                          if c.status == psutil.CONN_ESTABLISHED)
        assert established >= n
    finally:
        for s in socks:
            s.close()
    print(f"\n1,000 connections: connected and echoed twice in "
          f"{time.monotonic() - started:.2f} s")
    assert command.alive


def test_connections_beyond_fd_setsize_are_refused_cleanly(roomy_command: ServerProcess) -> None:
    command = roomy_command
    n = FD_SETSIZE + 76  # 1,100
    socks: list[socket.socket] = []
    try:
        outcomes = open_in_batches(command.address, n, socks)
        assert "hung" not in outcomes
        served = outcomes.count("served")
        assert 1000 <= served < FD_SETSIZE, served
        assert outcomes[:served] == ["served"] * served, "a connection refused out of order"
        assert command.alive, command.stderr_tail()
        # The earlier connections keep working.
        deadline = time.monotonic() + 30.0
        for i in range(served):
            assert _echo_or_refusal(socks[i], b"again %d" % i, deadline) == "served"
        # Free some descriptors: new connections are served again.
        for s in socks[served - 20:]:
            s.close()
        deadline = time.monotonic() + 10.0
        while True:
            with socket.create_connection(command.address, timeout=5.0) as late:
                if _echo_or_refusal(late, b"late", deadline) == "served":
                    break
            assert time.monotonic() < deadline, "no new connection served after freeing some"
    finally:
        for s in socks:
            s.close()
    assert command.alive
    tail = command.stderr_tail()
    # Its RLIMIT_NOFILE is past FD_SETSIZE: refused for select()'s sake, not EMFILE.
    assert "beyond select()'s limit" in tail, tail
    assert "Traceback" not in tail


def test_idle_connections_use_no_cpu(command: ServerProcess) -> None:
    socks = [socket.create_connection(command.address, timeout=5.0) for _ in range(10)]
    try:
        deadline = time.monotonic() + 10.0
        for i, s in enumerate(socks):
            s.sendall(b"idle %d" % i)
            assert _recv_exactly(s, len(b"idle %d" % i), deadline) == b"IDLE %d" % i
        before = command.cpu_seconds()
        time.sleep(1.0)  # a measuring window, not synchronisation
        cpu = command.cpu_seconds() - before
    finally:
        for s in socks:
            s.close()
    print(f"\nidle CPU with 10 open connections over 1 s: {cpu:.3f} s")
    assert cpu < 0.05


def test_fds_return_to_baseline_and_no_close_wait(command: ServerProcess) -> None:
    wait_until_only_listening(command)  # ServerProcess's start-up probe is gone
    baseline = command.num_fds()
    deadline = time.monotonic() + 10.0
    socks = [socket.create_connection(command.address, timeout=5.0) for _ in range(60)]
    try:
        for i, s in enumerate(socks):
            s.sendall(b"fd %d" % i)
            assert _recv_exactly(s, len(b"fd %d" % i), deadline) == b"FD %d" % i
        assert command.num_fds() >= baseline + 60
        # End them three ways: close, half-close then EOF, reset.
        for i, s in enumerate(socks):
            if i % 3 == 0:
                s.close()
            elif i % 3 == 1:
                s.sendall(b"bye")
                s.shutdown(socket.SHUT_WR)
                assert _read_to_eof(s, deadline) == b"BYE"
                s.close()
            else:
                s.sendall(b"unread echo")
                _reset(s)
    finally:
        for s in socks:
            s.close()
    wait_until_only_listening(command)  # no CLOSE_WAIT, nothing ESTABLISHED
    deadline = time.monotonic() + 10.0
    while command.num_fds() != baseline:
        assert time.monotonic() < deadline, (
            f"after 10 s: {command.num_fds()} descriptors, baseline {baseline}")
        time.sleep(0.05)  # polling interval of a bounded wait
    assert command.alive


# ---------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------


def run_command(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "impl.select_server", *args],
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_port_in_use_exits_2_with_one_line() -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_command("--host", HOST, "--port", str(port), "--log-level", "WARNING")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"{HOST}:{port}" in lines[0]
    assert "in use" in lines[0]
    assert "listening" not in done.stdout


def test_unresolvable_host_exits_2_with_one_line() -> None:
    done = run_command("--host", "no-such-host.invalid", "--port", "0")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "no-such-host.invalid" in lines[0]
    assert lines[0].startswith("error: ")


def test_unresolvable_host_says_it_cannot_resolve() -> None:
    done = run_command("--host", "no-such-host.invalid", "--port", "0")
    assert done.returncode == 2
    assert "cannot resolve host 'no-such-host.invalid'" in done.stderr
    assert "while attempting to bind" not in done.stderr


def test_port_0_prints_the_address_and_warning_level_is_quiet() -> None:
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "impl.select_server", "--port", "0", "--log-level", "warning"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
            start_new_session=True)
        try:
            line = _read_line(proc, 10.0).decode()
            match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", line)
            assert match, line
            port = int(match.group(1))
            assert port != 0
            assert roundtrip((HOST, port), b"port zero") == b"PORT ZERO"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            assert proc.stdout is not None
            proc.stdout.close()
        stderr.seek(0)
        assert stderr.read() == b"", "--log-level WARNING should log nothing here"


def test_help() -> None:
    done = run_command("--help")
    assert done.returncode == 0
    for word in ("usage:", "--host", "--port", "--log-level", "select()"):
        assert word in done.stdout


@pytest.mark.parametrize("args", [
    ("--port", "70000"),
    ("--port", "-1"),
    ("--port", "http"),
    ("--log-level", "LOUD"),
])
def test_invalid_arguments_exit_2(args: tuple[str, ...]) -> None:
    done = run_command(*args)
    assert done.returncode == 2
    assert "usage:" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_ends_the_server_cleanly(sig: signal.Signals) -> None:
    with ServerProcess(SERVER_CMD_INFO) as sp:
        assert sp.process is not None
        # An echo proves serve_forever() is running, so the handlers are installed.
        assert roundtrip(sp.address, b"ping") == b"PING"
        client = socket.create_connection(sp.address, timeout=5.0)
        with client:
            client.sendall(b"open")
            assert _recv_exactly(client, 4, time.monotonic() + 5.0) == b"OPEN"
            sp.process.send_signal(sig)
            assert sp.process.wait(10) == 0
            # The open connection was closed by the server on its way out.
            assert _read_to_eof(client, time.monotonic() + 5.0) == b""
        tail = sp.stderr_tail()
        assert f"received {sig.name}, shutting down" in tail
        assert "Traceback" not in tail
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(sp.address, timeout=5.0).close()
