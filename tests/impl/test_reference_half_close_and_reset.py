"""The reference server, stepped in this process: how connections end, and what is left.

ECHO-4 (a half-closed client still gets all its echo, then EOF), ECHO-5 (a
reset, or an accept() that fails, touches no other client) and ECHO-6 (an ended
connection, and `close()`, leave nothing held: no socket in the select lists or
queues, no open descriptor).  Small kernel buffers keep echo queued in the
server when the client's EOF or RST arrives, so those paths really run; every
wait is a deadline-bounded `step_until`.
"""

from __future__ import annotations

import errno
import os
import random
import socket

import pytest
from harness import HOST, WAIT, Rig, assert_released, exchange, open_fds, reset, step_until

from impl.select_server import SelectEchoServer


def test_half_close_with_echo_still_queued_delivers_all_then_eof(
    server: SelectEchoServer, rig: Rig
) -> None:
    peer = rig.peer(server, rcvbuf=4096)
    # Keep the kernel from absorbing the whole echo, so some of it is still
    # queued in the server when the client's EOF arrives.
    peer.conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    payload = random.Random(44).randbytes(200 * 1024)
    assert len(payload) < SelectEchoServer.backlog_limit
    peer.write(payload, then_shutdown=True)
    step_until(
        server,
        lambda: peer.conn in server.finished,
        each=peer.send_some,
        seconds=WAIT,
        what="the server to see the client's EOF",
    )
    assert peer.shut
    # The state ECHO-4 is about: EOF seen, echo still owed.
    assert peer.conn not in server.inputs
    assert peer.conn in server.outputs
    assert len(server.message_queues[peer.conn]) > 0
    step_until(
        server,
        lambda: peer.eof or peer.error,
        each=peer.read_some,
        seconds=WAIT,
        what="the rest of the echo and EOF",
    )
    assert peer.error is None
    assert bytes(peer.received) == payload.upper()
    assert_released(server, peer.conn)
    assert server.inputs == [server.server]
    assert server.outputs == []
    assert server.message_queues == {}
    assert server.finished == set()


def test_half_close_without_backlog_closes_at_once(server: SelectEchoServer, rig: Rig) -> None:
    peer = rig.peer(server)
    assert exchange(server, peer, b"last words") == b"LAST WORDS"
    peer.sock.shutdown(socket.SHUT_WR)
    step_until(
        server, lambda: peer.eof or peer.error, each=peer.read_some, seconds=WAIT, what="EOF"
    )
    assert peer.error is None
    assert_released(server, peer.conn)


def test_client_reset_mid_stream_affects_no_one_else(server: SelectEchoServer, rig: Rig) -> None:
    a = rig.peer(server, rcvbuf=4096)
    a.conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # a send soon comes up short
    b = rig.peer(server)
    assert exchange(server, b, b"before") == b"BEFORE"
    # A streams without reading, so the server has echo queued for it...
    a.write(random.Random(5).randbytes(512 * 1024))
    step_until(
        server,
        lambda: len(server.message_queues.get(a.conn, b"")) > 0,
        each=a.send_some,
        seconds=WAIT,
        what="echo queued for the client about to reset",
    )
    b.write(b"during")
    b.send_some()
    # ...and then resets, with data in flight both ways.
    reset(a.sock)
    step_until(
        server,
        lambda: a.conn not in server.message_queues,
        seconds=WAIT,
        what="the server to drop the reset connection",
    )
    assert_released(server, a.conn)
    # The other client is still served, and the server still accepts.
    step_until(
        server,
        lambda: len(b.received) >= len(b"BEFOREDURING"),
        each=b.step,
        seconds=WAIT,
        what="the other client's echo",
    )
    assert bytes(b.received) == b"BEFOREDURING"
    assert exchange(server, b, b"after") == b"AFTER"
    c = rig.peer(server)
    assert exchange(server, c, b"new client") == b"NEW CLIENT"
    assert b.conn in server.inputs and c.conn in server.inputs


def test_reset_of_an_idle_connection_is_released(server: SelectEchoServer, rig: Rig) -> None:
    peer = rig.peer(server)
    assert exchange(server, peer, b"x") == b"X"
    reset(peer.sock)
    step_until(
        server,
        lambda: peer.conn not in server.message_queues,
        seconds=WAIT,
        what="the server to drop the reset connection",
    )
    assert_released(server, peer.conn)
    assert server.inputs == [server.server]


def test_reset_after_half_close_with_echo_owed_is_released(
    server: SelectEchoServer, rig: Rig
) -> None:
    peer = rig.peer(server, rcvbuf=4096)
    peer.conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    peer.write(b"owed " * 40_000, then_shutdown=True)
    step_until(
        server,
        lambda: peer.conn in server.finished,
        each=peer.send_some,
        seconds=WAIT,
        what="a half-closed connection with echo owed",
    )
    assert len(server.message_queues[peer.conn]) > 0
    reset(peer.sock)
    step_until(
        server,
        lambda: peer.conn not in server.message_queues,
        seconds=WAIT,
        what="the server to drop the reset connection",
    )
    assert_released(server, peer.conn)
    assert server.inputs == [server.server] and server.outputs == []


def test_close_releases_every_socket(rig: Rig) -> None:
    baseline = open_fds()
    server = SelectEchoServer(HOST, 0)
    try:
        idle = rig.peer(server)
        busy = rig.peer(server, rcvbuf=4096)
        busy.conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        half = rig.peer(server, rcvbuf=4096)
        half.conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        assert exchange(server, idle, b"idle") == b"IDLE"
        busy.write(b"q" * 100_000)
        step_until(
            server,
            lambda: len(server.message_queues[busy.conn]) > 0,
            each=busy.send_some,
            seconds=WAIT,
            what="echo queued",
        )
        half.write(b"h" * 100_000, then_shutdown=True)
        step_until(
            server,
            lambda: half.conn in server.finished,
            each=half.send_some,
            seconds=WAIT,
            what="a half-closed connection with echo owed",
        )
        # One more client still waiting in the listen backlog, never accepted.
        waiting = rig.track(socket.create_connection(server.address, timeout=5.0))
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
    server: SelectEchoServer, rig: Rig, code: int
) -> None:
    flaky = _FlakyListener(server.server, [code])
    server.server = flaky  # type: ignore[assignment]
    server.inputs[0] = flaky  # type: ignore[call-overload]
    peer = rig.peer(server)
    assert exchange(server, peer, b"still accepting") == b"STILL ACCEPTING"
