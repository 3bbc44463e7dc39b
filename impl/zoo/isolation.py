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
        super().__init__(host, port)
        self.buffer = bytearray()

    def _accept(self) -> None:
        known = set(self.message_queues)
        super()._accept()
        for conn in self.message_queues.keys() - known:
            self.message_queues[conn] = self.buffer  # the defect: aliased, not bytearray()


class LastAcceptedServer(SelectEchoServer):
    """The read branch queues echo on ``conn`` (the name the accept branch last
    bound) instead of ``s`` (the socket just read): with two clients connected,
    the first one's echo goes to the second. Breaks ECHO-3 (and ECHO-2:
    the first client's echo never comes)."""

    conn: socket.socket | None = None

    def _accept(self) -> None:
        known = set(self.message_queues)
        super()._accept()
        for conn in self.message_queues.keys() - known:
            self.conn = conn

    def _receive(self, s: socket.socket) -> None:
        try:
            data = s.recv(self.recv_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(s)
            return
        if not data:
            self.finished.add(s)
            self.inputs.remove(s)
            if not self.message_queues[s]:
                self._close(s)
            return
        conn = self.conn if self.conn in self.message_queues else s
        self.message_queues[conn] += data.upper()  # the defect: should be message_queues[s]
        if conn not in self.outputs:
            self.outputs.append(conn)
