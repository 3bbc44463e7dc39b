"""ECHO-2 defects: the echo stream loses, reorders or ends early."""

from __future__ import annotations

import socket

from impl.select_server import SelectEchoServer


class IgnoreSendResultServer(SelectEchoServer):
    """Ignores send()'s return value (``s.send(queue)``, then all of it counted as
    sent): the unsent tail of every short send is dropped, which only happens once
    the client's receive window is full (backpressure). Breaks ECHO-2."""

    def send(self, s: socket.socket, data: bytes | bytearray) -> int:
        s.send(data)  # the defect: the count of bytes actually sent is ignored
        return len(data)


class ChunkStack(bytearray):
    """A connection's echo as a list of chunks, the next one taken with ``pop()``.

    Its own bytes are the chunk being sent (what send() reads and ``del
    queue[:sent]`` trims); the chunks behind it wait in `chunks`, oldest first.
    `len()` counts them all, so the server's backlog and "queue empty" see them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[bytes] = []

    def __len__(self) -> int:
        return bytearray.__len__(self) + sum(map(len, self.chunks))

    # Narrower than bytearray's signatures: the server only adds bytes and deletes slices.
    def __iadd__(self, echo: bytes) -> ChunkStack:  # type: ignore[override,misc]
        if bytearray.__len__(self):
            self.chunks.append(bytes(self))
        self.chunks.append(bytes(echo))
        self[:] = self.chunks.pop()  # the defect: the newest, should be pop(0)
        return self

    def __delitem__(self, index: int | slice) -> None:  # type: ignore[override]
        bytearray.__delitem__(self, index)
        if not bytearray.__len__(self) and self.chunks:
            self[:] = self.chunks.pop()  # the defect: the newest, should be pop(0)


class LifoQueueServer(SelectEchoServer):
    """Keeps each connection's echo as a list of chunks and takes the next one
    with ``queue.pop()`` (the newest) instead of ``queue.pop(0)``: in order while
    one chunk is queued at a time, reordered as soon as two recv()s land before
    the next send (two quick writes, or a client slow to read). Breaks ECHO-2."""

    #: The seed's way, where this bug lives: every echo waits in the queue.
    send_at_once = False

    def new_queue(self) -> bytearray:
        return ChunkStack()


class CloseAfterReplyServer(SelectEchoServer):
    """A request/response habit: closes the connection as soon as its queue has
    been sent once ("reply, then hang up"), though the client has not closed.
    Breaks ECHO-2."""

    #: The seed's way, where this bug lives: every echo waits in the queue.
    send_at_once = False

    def after_flush(self, s: socket.socket) -> None:
        self.close_connection(s)  # the defect: the client did not ask for this


class EagerSendServer(SelectEchoServer):
    """Echoes straight from the read branch with ``s.send(data.upper())`` and
    treats EAGAIN as "try again later" without keeping the data: fine while the
    client reads, but once its window and the server's send buffer are full
    (a client that sends without reading) the echo is silently dropped.
    Breaks ECHO-2."""

    def queue_echo(self, s: socket.socket, echo: bytes) -> None:
        pass  # the defect: what send() did not take is dropped, not queued


class EagainDropsEchoServer(SelectEchoServer):
    """Takes send()'s BlockingIOError for "all sent" (``except BlockingIOError:
    pass``): what it was sending is dropped. Sending echo at once, send() raises
    it when the socket's buffer is already full while nothing is queued, i.e.
    for a client that goes on sending without reading, the moment its echo
    backs up. Breaks ECHO-2."""

    def send(self, s: socket.socket, data: bytes | bytearray) -> int:
        try:
            return s.send(data)
        except BlockingIOError:
            return len(data)  # the defect: as if it had all been sent
