"""ECHO-5 defects: one connection's error takes the server down."""

from __future__ import annotations

import logging
import socket

from impl.select_server import SelectEchoServer

log = logging.getLogger("impl.zoo.resilience")


class UncaughtResetServer(SelectEchoServer):
    """Wraps recv() for EAGAIN only, as in most tutorials: the first client that
    resets (RST) raises ConnectionResetError out of the loop and the server dies.
    Breaks ECHO-5."""

    def _receive(self, s: socket.socket) -> None:
        try:
            data = s.recv(self.recv_size)
        except (BlockingIOError, InterruptedError):  # the defect: no `except OSError`
            return
        queue = self.message_queues[s]
        if not data:
            self.finished.add(s)
            self.inputs.remove(s)
            if not queue:
                self._close(s)
            return
        queue += data.upper()
        if s not in self.outputs:
            self.outputs.append(s)
        if len(queue) >= self.backlog_limit:
            self.inputs.remove(s)


class UncaughtSendErrorServer(SelectEchoServer):
    """Handles errors on recv() but not on send(): a client that resets or closes
    while echo is still queued for it makes send() raise BrokenPipeError or
    ConnectionResetError, and the server dies. Breaks ECHO-5."""

    #: The seed's way, where this bug lives: every echo waits in the queue.
    send_at_once = False

    def _send(self, s: socket.socket) -> None:
        queue = self.message_queues[s]
        try:
            sent = s.send(queue)
        except (BlockingIOError, InterruptedError):  # the defect: no `except OSError`
            return
        del queue[:sent]
        if queue:
            return
        self.outputs.remove(s)
        if s in self.finished:
            self._close(s)
        elif s not in self.inputs:
            self.inputs.append(s)


class PeerNameOnCloseServer(SelectEchoServer):
    """Logs ``log.info("closing %s:%d", *s.getpeername())`` when closing: after a reset the
    socket is no longer connected, getpeername() raises ENOTCONN inside the error
    handler, and the server dies; orderly closes work. Breaks ECHO-5."""

    def _close(self, s: socket.socket) -> None:
        log.info("closing %s:%d", *s.getpeername())  # the defect: ENOTCONN after a reset
        super()._close(s)

    def close(self) -> None:
        for s in list(self.message_queues):  # shutting down: close without logging
            SelectEchoServer._close(self, s)
        super().close()


class RemoveTwiceAfterFlushServer(SelectEchoServer):
    """Cleans up a finished connection the way its error path does, with
    ``inputs.remove(s)``, once the echo queued at EOF is flushed: the EOF branch has
    already taken the socket out of ``inputs``, so remove() raises ValueError and the
    server dies, but only when the client's data and EOF arrived together (``printf
    ... | nc -N``) or it half-closed with echo still queued. Breaks ECHO-5."""

    #: The seed's way, where this bug lives: every echo waits in the queue.
    send_at_once = False

    def _send(self, s: socket.socket) -> None:
        queue = self.message_queues[s]
        sent = self._send_some(s, queue)
        if not sent:
            return
        del queue[:sent]
        if queue:
            return
        self.outputs.remove(s)
        if s in self.finished:
            self.inputs.remove(s)  # the defect: the EOF branch already removed it
            self._close(s)
        elif s not in self.inputs:
            self.inputs.append(s)


class RemoveTwiceAfterFlushSendAtOnceServer(RemoveTwiceAfterFlushServer):
    """The same bug in a server that sends straight after recv(), as the reference
    does: echo is queued at EOF only when its sends came up short, after a flood
    to a client that reads little. Not a separate defect of the zoo: the
    self-suite's proof that the checker's sips at the end of a program reach
    that path. Breaks ECHO-5."""

    send_at_once = True
