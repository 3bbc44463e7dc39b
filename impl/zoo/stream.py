"""ECHO-2 defects: the echo stream loses, reorders or ends early."""

from __future__ import annotations

import socket

from impl.select_server import SelectEchoServer


class IgnoreSendResultServer(SelectEchoServer):
    """Ignores send()'s return value: ``s.send(queue); queue.clear()`` drops the
    unsent tail of every short send, which only happens once the client's receive
    window is full (backpressure). Breaks ECHO-2."""

    def _send(self, s: socket.socket) -> None:
        queue = self.message_queues[s]
        try:
            s.send(queue)  # the defect: the count of bytes actually sent is ignored
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(s)
            return
        queue.clear()
        self.outputs.remove(s)
        if s in self.finished:
            self._close(s)
        elif s not in self.inputs:
            self.inputs.append(s)


class LifoQueueServer(SelectEchoServer):
    """Keeps each connection's echo as a list of chunks and takes the next one
    with ``queue.pop()`` (the newest) instead of ``queue.pop(0)``: in order while
    one chunk is queued at a time, reordered as soon as two recv()s land before
    the next send (two quick writes, or a client slow to read). Breaks ECHO-2."""

    def _receive(self, s: socket.socket) -> None:
        try:
            data = s.recv(self.recv_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(s)
            return
        queue = self.message_queues[s]
        if not data:
            self.finished.add(s)
            self.inputs.remove(s)
            if not queue:
                self._close(s)
            return
        queue.append(data.upper())
        if s not in self.outputs:
            self.outputs.append(s)
        if sum(map(len, queue)) >= self.backlog_limit:
            self.inputs.remove(s)

    def _send(self, s: socket.socket) -> None:
        queue = self.message_queues[s]
        chunk = queue.pop()  # the defect: LIFO, should be queue.pop(0)
        try:
            sent = s.send(chunk)
        except (BlockingIOError, InterruptedError):
            queue.append(chunk)
            return
        except OSError:
            self._close(s)
            return
        if sent < len(chunk):
            queue.append(chunk[sent:])  # back where pop() takes it next
            return
        if queue:
            return
        self.outputs.remove(s)
        if s in self.finished:
            self._close(s)
        elif s not in self.inputs:
            self.inputs.append(s)

    def _accept(self) -> None:
        known = set(self.message_queues)
        super()._accept()
        for conn in self.message_queues.keys() - known:
            self.message_queues[conn] = []  # a list of chunks (not the defect)


class CloseAfterReplyServer(SelectEchoServer):
    """A request/response habit: closes the connection as soon as its queue has
    been sent once ("reply, then hang up"), though the client has not closed.
    Breaks ECHO-2."""

    #: The seed's way, where this bug lives: every echo waits in the queue.
    send_at_once = False

    def _send(self, s: socket.socket) -> None:
        super()._send(s)
        if s in self.message_queues and not self.message_queues[s]:
            self._close(s)  # the defect: the client did not ask for this


class EagerSendServer(SelectEchoServer):
    """Echoes straight from the read branch with ``s.send(data.upper())`` and
    treats EAGAIN as "try again later" without keeping the data: fine while the
    client reads, but once its window and the server's send buffer are full
    (a client that sends without reading) the echo is silently dropped.
    Breaks ECHO-2."""

    def _receive(self, s: socket.socket) -> None:
        try:
            data = s.recv(self.recv_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(s)
            return
        if not data:
            self._close(s)
            return
        try:
            s.send(data.upper())  # the defect: a short send or EAGAIN loses the rest
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._close(s)


class EagainDropsEchoServer(SelectEchoServer):
    """Takes send()'s BlockingIOError for "all sent" (``except BlockingIOError:
    pass``): what it was sending is dropped. Sending echo at once, send() raises
    it when the socket's buffer is already full while nothing is queued, i.e.
    for a client that goes on sending without reading, the moment its echo
    backs up. Breaks ECHO-2."""

    def _send_some(self, s: socket.socket, data: bytes | bytearray) -> int | None:
        try:
            return s.send(data)
        except (BlockingIOError, InterruptedError):
            return len(data)  # the defect: as if it had all been sent
        except OSError:
            self._close(s)
            return None
