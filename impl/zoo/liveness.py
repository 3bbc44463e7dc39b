"""ECHO-7 defects: one client that does not read stalls the whole loop."""

from __future__ import annotations

import socket

from impl.select_server import SelectEchoServer


class BlockingConnectionsServer(SelectEchoServer):
    """Forgets ``conn.setblocking(False)`` on accepted sockets (they inherit no
    flag from the listener): select() says writable, then send() blocks until the
    whole queue fits, which never happens while that client does not read, and
    every other client waits. Breaks ECHO-7."""

    def setup_connection(self, conn: socket.socket) -> None:
        super().setup_connection(conn)
        conn.setblocking(True)  # the defect: as if `conn.setblocking(False)` were missing


class SendUntilDoneServer(SelectEchoServer):
    """ "Make sure the whole message goes out": retries send() in a loop until the
    queue is empty, spinning on EAGAIN, so a client that does not read keeps the
    loop inside one send forever. Breaks ECHO-7."""

    #: The seed's way, where this bug lives: every echo waits in the queue.
    send_at_once = False

    def send(self, s: socket.socket, data: bytes | bytearray) -> int:
        sent = 0
        with memoryview(data) as view:
            while sent < len(view):  # the defect: a blocking loop inside the event loop
                try:
                    sent += s.send(view[sent:])
                except (BlockingIOError, InterruptedError):
                    continue
        return sent


class SendallEchoServer(SelectEchoServer):
    """Uses select() for reading only and writes the echo with the blocking
    ``conn.sendall(data.upper())`` of the blocking tutorial it grew from: once a
    client that does not read has filled its window and the server's send
    buffer, sendall() blocks the whole loop. Breaks ECHO-7."""

    def send(self, s: socket.socket, data: bytes | bytearray) -> int:
        s.setblocking(True)  # sendall() needs a blocking socket
        s.sendall(data)  # the defect: blocks until the client reads
        return len(data)
