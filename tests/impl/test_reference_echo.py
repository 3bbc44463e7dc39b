"""The reference server, stepped in this process: the transform, the stream, isolation.

ECHO-1 (a-z become A-Z, every other byte is unchanged), ECHO-2 (every byte comes
back once, in order, whatever the reads and writes are cut into, urgent data
included) and ECHO-3 (each client gets only its own echo), one case at a time:
a `SelectEchoServer` on 127.0.0.1 (the `server` fixture) is stepped with
``poll(0.01)`` in deadline-bounded loops (`step_until`) while non-blocking
clients (`Peer`, from `rig.peer`) send and read; no threads, no sleeps.
"""

from __future__ import annotations

import contextlib
import random
import socket

from harness import WAIT, MiB, Rig, assert_released, exchange, step_until

from impl.select_server import SelectEchoServer


def upper_by_hand(data: bytes) -> bytes:
    """ECHO-1 written out: a-z become A-Z, every other byte value is unchanged."""
    return bytes(b - 32 if 0x61 <= b <= 0x7A else b for b in data)


def test_poll_with_nothing_ready_handles_nothing(server: SelectEchoServer) -> None:
    assert server.poll(0) == 0
    assert server.poll(0.01) == 0
    assert server.inputs == [server.server]
    assert server.outputs == []
    assert server.message_queues == {}
    assert server.finished == set()


def test_all_256_byte_values_come_back_as_bytes_upper(server: SelectEchoServer, rig: Rig) -> None:
    peer = rig.peer(server)
    data = bytes(range(256))
    echo = exchange(server, peer, data)
    assert echo == data.upper() == upper_by_hand(data)
    # Non-ASCII letters in any encoding are left alone: no decoding happens.
    text = "ÿéßçñ µ ı ǆ".encode() + "ÿéß".encode("latin-1")
    assert exchange(server, peer, text) == text
    assert exchange(server, peer, b"abc xyz ABC @[`{") == b"ABC XYZ ABC @[`{"


def test_empty_connection_is_closed_and_released(server: SelectEchoServer, rig: Rig) -> None:
    """A client that sends nothing and closes: no echo, EOF, nothing held."""
    peer = rig.peer(server)
    peer.sock.shutdown(socket.SHUT_WR)
    step_until(
        server, lambda: peer.eof or peer.error, each=peer.read_some, seconds=WAIT, what="EOF"
    )
    assert peer.received == b"" and peer.error is None
    assert_released(server, peer.conn)
    assert server.inputs == [server.server]


def test_partial_writes_and_reads(server: SelectEchoServer, rig: Rig) -> None:
    """Byte-at-a-time writes and reads, and a poll with no data, lose nothing."""
    peer = rig.peer(server)
    # Nothing sent yet: a round has nothing to do for this connection.
    assert server.poll(0) == 0
    peer.read_some()
    assert peer.received == b"" and not peer.eof
    message = b"partial reads: abcdefghijklmnopqrstuvwxyz"
    for i in range(len(message)):
        assert exchange(server, peer, message[i : i + 1]) == message[i : i + 1].upper()
    # One write, read back one byte at a time.
    peer.write(b"one write, many reads")
    peer.send_some()
    got = bytearray()

    def read_one() -> None:
        with contextlib.suppress(BlockingIOError):
            got.extend(peer.sock.recv(1))

    step_until(
        server, lambda: len(got) == 21, each=read_one, seconds=WAIT, what="21 one-byte reads"
    )
    assert bytes(got) == b"ONE WRITE, MANY READS"
    assert bytes(peer.received) == message.upper()


def test_urgent_data_is_delivered_inline(server: SelectEchoServer, rig: Rig) -> None:
    peer = rig.peer(server)
    peer.sock.send(b"ab")
    peer.sock.send(b"c", socket.MSG_OOB)
    peer.sock.send(b"d")
    step_until(
        server,
        lambda: len(peer.received) >= 4,
        each=peer.read_some,
        seconds=WAIT,
        what="the echo of abcd",
    )
    assert bytes(peer.received) == b"ABCD"


def test_4_mib_echoed_in_order_while_the_client_reads(server: SelectEchoServer, rig: Rig) -> None:
    peer = rig.peer(server, rcvbuf=16 * 1024)
    # Small kernel buffers on the echo's way back: the server's send() then
    # often sends less than it was given, and the rest must stay queued.
    peer.conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
    payload = random.Random(4).randbytes(4 * MiB)
    peer.write(payload)
    step_until(
        server,
        lambda: len(peer.received) >= len(payload) or peer.eof or peer.error,
        each=peer.step,
        what="the 4 MiB echo",
        seconds=30.0,
    )
    assert peer.error is None and not peer.eof
    assert len(peer.received) == len(payload)
    assert bytes(peer.received) == payload.upper()
    assert peer.conn in server.inputs
    assert peer.conn not in server.outputs
    assert server.message_queues[peer.conn] == b""


def test_many_interleaved_clients_get_only_their_own_echo(
    server: SelectEchoServer, rig: Rig
) -> None:
    peers = [rig.peer(server) for _ in range(20)]
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

    step_until(server, everyone_done, seconds=WAIT, what="every client's echo")
    for i, peer in enumerate(peers):
        assert bytes(peer.received) == expected[i], f"client {i} got someone else's bytes"
        assert peer.eof is False and peer.error is None
