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


class RequeueTailAtEofServer(SelectEchoServer):
    """On EOF with echo still queued, "makes sure the tail goes out" by queueing
    the last echo chunk again before the flush-then-close: a client that shuts
    down its sending side while its echo is still queued reads that chunk
    twice, then EOF.  Clients that read everything before half-closing never
    see it. Breaks ECHO-4."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self._last_chunk: dict[socket.socket, bytes] = {}

    def queue_echo(self, s: socket.socket, echo: bytes) -> None:
        self._last_chunk[s] = echo
        super().queue_echo(s, echo)

    def on_eof(self, s: socket.socket) -> None:
        queue = self.message_queues[s]
        if queue:
            queue += self._last_chunk.get(s, b"")  # the defect: a chunk sent twice
        super().on_eof(s)

    def close_connection(self, s: socket.socket) -> None:
        self._last_chunk.pop(s, None)
        super().close_connection(s)
