"""ECHO-4 defects: a client's half-close (EOF) is mishandled."""

from __future__ import annotations

import socket

from impl.select_server import SelectEchoServer


class _EofServer(SelectEchoServer):
    """The reference, with the EOF branch pulled out into `on_eof()` (not a defect)."""

    def on_eof(self, s: socket.socket) -> None:
        self.finished.add(s)
        self.inputs.remove(s)
        if not self.message_queues[s]:
            self._close(s)

    def _receive(self, s: socket.socket) -> None:
        try:
            data = s.recv(self.recv_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(s)
            return
        if not data:
            self.on_eof(s)
            return
        queue = self.message_queues[s]
        queue += data.upper()
        if s not in self.outputs:
            self.outputs.append(s)
        if len(queue) >= self.backlog_limit:
            self.inputs.remove(s)


class CloseAtEofServer(_EofServer):
    """Treats recv() == b'' as "the client is gone" and closes at once, discarding
    the echo still queued for a client that only shut down its sending side
    (``nc -N``, ``shutdown(SHUT_WR)``): shows only if echo is queued at EOF.
    Breaks ECHO-4."""

    def on_eof(self, s: socket.socket) -> None:
        self._close(s)  # the defect: should flush self.message_queues[s] first


class CloseOnlyAfterFlushServer(_EofServer):
    """Defers the close on EOF to the send path ("close once the queue is flushed"),
    but a connection with nothing queued is not in ``outputs``, so the send path
    never runs: the client never reads EOF and the socket sits in CLOSE_WAIT.
    Breaks ECHO-4 (and ECHO-6)."""

    def on_eof(self, s: socket.socket) -> None:
        self.finished.add(s)
        self.inputs.remove(s)  # the defect: no `if not queue: self._close(s)`
