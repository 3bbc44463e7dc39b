"""ECHO-4 defects: a client's half-close (EOF) is mishandled.

Each overrides `SelectEchoServer.on_eof` (in the reference: stop reading,
close at once if nothing is queued, else once the queue is flushed).
"""

from __future__ import annotations

import socket

from impl.select_server import SelectEchoServer


class CloseAtEofServer(SelectEchoServer):
    """Treats recv() == b'' as "the client is gone" and closes at once, discarding
    the echo still queued for a client that only shut down its sending side
    (``nc -N``, ``shutdown(SHUT_WR)``): shows only if echo is queued at EOF.
    Breaks ECHO-4."""

    def on_eof(self, s: socket.socket) -> None:
        self.close_connection(s)  # the defect: should flush self.message_queues[s] first


class CloseOnlyAfterFlushServer(SelectEchoServer):
    """Defers the close on EOF to the send path ("close once the queue is flushed"),
    but a connection with nothing queued is not in ``outputs``, so the send path
    never runs: the client never reads EOF and the socket sits in CLOSE_WAIT.
    Breaks ECHO-4 (and ECHO-6)."""

    def on_eof(self, s: socket.socket) -> None:
        self.finished.add(s)
        self.inputs.remove(s)  # the defect: no `if not queue: self.close_connection(s)`
