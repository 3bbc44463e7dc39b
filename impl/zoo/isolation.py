"""ECHO-3 defects: one connection's echo reaches another."""

from __future__ import annotations

import socket

from impl.select_server import SelectEchoServer


class SharedBufferServer(SelectEchoServer):
    """One output buffer for the whole server (a C tutorial's ``static char buf[]``,
    here one bytearray aliased as every connection's queue): when two clients' data
    arrive in the same select round, the first writable socket gets both echoes.
    Breaks ECHO-3 (and ECHO-2, ECHO-4 for the client robbed)."""

    #: The seed's way, where this bug lives: every echo waits in the queue.
    send_at_once = False

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.buffer = bytearray()
        super().__init__(host, port)

    def new_queue(self) -> bytearray:
        return self.buffer  # the defect: aliased, should be bytearray()


class LastAcceptedServer(SelectEchoServer):
    """The read branch queues echo on ``conn`` (the name the accept branch last
    bound) instead of ``s`` (the socket just read): with two clients connected,
    the first one's echo goes to the second. Breaks ECHO-3 (and ECHO-2:
    the first client's echo never comes)."""

    #: The seed's way, where this bug lives: every echo waits in the queue.
    send_at_once = False
    #: The connection accepted last (the accept branch's variable).
    conn: socket.socket | None = None

    def setup_connection(self, conn: socket.socket) -> None:
        super().setup_connection(conn)
        self.conn = conn

    def queue_echo(self, s: socket.socket, echo: bytes) -> None:
        conn = self.conn if self.conn in self.message_queues else s
        super().queue_echo(conn, echo)  # the defect: should be queue_echo(s, ...)
