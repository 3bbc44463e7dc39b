"""ECHO-6 defects: an ended connection is not fully released."""

from __future__ import annotations

import contextlib
import socket

from impl.select_server import SelectEchoServer


class KeepsQueueEntryServer(SelectEchoServer):
    """Closes the socket and drops it from the select lists but forgets
    ``del message_queues[s]``: the dict keeps every closed socket object (and its
    queue) for ever, a slow memory leak. Breaks ECHO-6."""

    def close_connection(self, s: socket.socket) -> None:
        self.unwatch(s)
        s.close()  # the defect: no `del self.message_queues[s]`


class ShutdownWithoutCloseServer(SelectEchoServer):
    """Ends a connection with ``s.shutdown(SHUT_RDWR)`` instead of ``s.close()``:
    the client reads EOF, but the descriptor stays open, kept alive by the
    server's ``clients`` registry (address per socket, for logging), which is
    never pruned either. Breaks ECHO-6."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.clients: dict[socket.socket, object] = {}

    def setup_connection(self, conn: socket.socket) -> None:
        super().setup_connection(conn)
        self.clients[conn] = conn.getpeername()

    def close_socket(self, s: socket.socket) -> None:
        with contextlib.suppress(OSError):  # ENOTCONN after a reset
            s.shutdown(socket.SHUT_RDWR)  # the defect: shutdown() is not close()

    def close(self) -> None:
        super().close()
        for s in self.clients:
            s.close()
        self.clients.clear()


class DupLeakServer(SelectEchoServer):
    """Wraps each connection with ``socket.fromfd(conn.fileno(), ...)`` for a helper
    (here: to read TCP_INFO) and keeps the wrapper; fromfd() dup()s the
    descriptor, and the duplicate is never closed. The server shuts down and
    closes its own socket, so the client reads EOF, and its select lists are
    clean: only the descriptor count shows the leak. Breaks ECHO-6."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.helpers: list[socket.socket] = []

    def setup_connection(self, conn: socket.socket) -> None:
        super().setup_connection(conn)
        # the defect: fromfd() returns a *duplicate* descriptor, never closed
        helper = socket.fromfd(conn.fileno(), conn.family, conn.type)
        if hasattr(socket, "TCP_INFO"):
            self.tcp_info = helper.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        self.helpers.append(helper)

    def close_socket(self, s: socket.socket) -> None:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)  # so the client sees EOF despite the duplicate
        super().close_socket(s)

    def close(self) -> None:
        super().close()
        for h in self.helpers:
            h.close()
        self.helpers.clear()
