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

    def receive_failed(self, s: socket.socket, error: OSError) -> None:
        raise error  # the defect: only EAGAIN is caught, not `except OSError`


class UncaughtSendErrorServer(SelectEchoServer):
    """Handles errors on recv() but not on send(): a client that resets or closes
    while echo is still queued for it makes send() raise BrokenPipeError or
    ConnectionResetError, and the server dies. Breaks ECHO-5."""

    #: The seed's way, where this bug lives: every echo waits in the queue.
    send_at_once = False

    def send_failed(self, s: socket.socket, error: OSError) -> None:
        raise error  # the defect: only EAGAIN is caught, not `except OSError`


class PeerNameOnCloseServer(SelectEchoServer):
    """Logs ``log.info("closing %s:%d", *s.getpeername())`` when closing: after a reset the
    socket is no longer connected, getpeername() raises ENOTCONN inside the error
    handler, and the server dies; orderly closes work. Breaks ECHO-5."""

    def close_connection(self, s: socket.socket) -> None:
        log.info("closing %s:%d", *s.getpeername())  # the defect: ENOTCONN after a reset
        super().close_connection(s)

    def close(self) -> None:
        for s in list(self.message_queues):  # shutting down: close without logging
            SelectEchoServer.close_connection(self, s)
        super().close()


class RemoveTwiceAfterFlushServer(SelectEchoServer):
    """Cleans up a finished connection the way its error path does, with
    ``inputs.remove(s)``, once the echo queued at EOF is flushed: the EOF branch has
    already taken the socket out of ``inputs``, so remove() raises ValueError and the
    server dies, but only when the client's data and EOF arrived together (``printf
    ... | nc -N``) or it half-closed with echo still queued. Breaks ECHO-5."""

    #: The seed's way, where this bug lives: every echo waits in the queue.
    send_at_once = False

    def after_flush(self, s: socket.socket) -> None:
        if s in self.finished:
            self.inputs.remove(s)  # the defect: the EOF branch already removed it
        super().after_flush(s)


class RemoveTwiceAfterFlushSendAtOnceServer(RemoveTwiceAfterFlushServer):
    """The same bug in a server that sends straight after recv(), as the reference
    does: echo is queued at EOF only when its sends came up short, after a flood
    to a client that reads little. Not a separate defect of the zoo: the
    self-suite's proof that the checker's sips at the end of a program reach
    that path. Breaks ECHO-5."""

    send_at_once = True


class CloseAllOnErrorServer(SelectEchoServer):
    """Cleans up after a connection error the way a shutdown would: every
    connection is closed, not just the one that failed ("on error, clean up
    everything").  One client's reset ends every other client's connection,
    while the server itself runs on and accepts new ones. Breaks ECHO-5."""

    def receive_failed(self, s: socket.socket, error: OSError) -> None:
        for conn in list(self.message_queues):  # the defect: should close `s` only
            self.close_connection(conn)

    send_failed = receive_failed
