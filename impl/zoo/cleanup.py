"""ECHO-6 defects: an ended connection is not fully released."""

from __future__ import annotations

import contextlib
import socket

from impl.select_server import SelectEchoServer


class KeepsQueueEntryServer(SelectEchoServer):
    """Closes the socket and drops it from the select lists but forgets
    ``del message_queues[s]``: the dict keeps every closed socket object (and its
    queue) for ever, a slow memory leak. Breaks ECHO-6."""

    def _close(self, s: socket.socket) -> None:
        if s in self.inputs:
            self.inputs.remove(s)
        if s in self.outputs:
            self.outputs.remove(s)
        self.finished.discard(s)
        s.close()  # the defect: no `del self.message_queues[s]`

    def close(self) -> None:
        for s in list(self.message_queues):
            self._close(s)
        self.message_queues.clear()
        super().close()


class ShutdownWithoutCloseServer(SelectEchoServer):
    """Ends a connection with ``s.shutdown(SHUT_RDWR)`` instead of ``s.close()``:
    the client reads EOF, but the descriptor stays open, kept alive by the
    server's ``clients`` registry (address per socket, for logging), which is
    never pruned either. Breaks ECHO-6."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.clients: dict[socket.socket, object] = {}

    def _accept(self) -> None:
        known = set(self.message_queues)
        super()._accept()
        for conn in self.message_queues.keys() - known:
            self.clients[conn] = conn.getpeername()

    def _close(self, s: socket.socket) -> None:
        if s in self.inputs:
            self.inputs.remove(s)
        if s in self.outputs:
            self.outputs.remove(s)
        self.finished.discard(s)
        del self.message_queues[s]
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

    def _accept(self) -> None:
        known = set(self.message_queues)
        super()._accept()
        for conn in self.message_queues.keys() - known:
            # the defect: fromfd() returns a *duplicate* descriptor, never closed
            helper = socket.fromfd(conn.fileno(), conn.family, conn.type)
            if hasattr(socket, "TCP_INFO"):
                self.tcp_info = helper.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
            self.helpers.append(helper)

    def _close(self, s: socket.socket) -> None:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)  # so the client sees EOF despite the duplicate
        super()._close(s)

    def close(self) -> None:
        super().close()
        for h in self.helpers:
            h.close()
        self.helpers.clear()
