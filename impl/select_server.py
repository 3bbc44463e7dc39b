"""The reference select() echo server: the seed's design, made correct.

A reader of the seed tutorial should recognise every line: one thread, one
``select.select(inputs, outputs, ...)`` loop, a list ``inputs`` of sockets to
read, a list ``outputs`` of sockets with echo to send, and ``message_queues``
mapping each connection to the bytes it is owed.  Every byte received is sent
back as ``bytes.upper()`` of it.

What the seed gets wrong and this server does instead (see spec/PROTOCOL.md):

* A reset on ``recv``/``send`` crashed the seed (ECHO-5): here it closes that
  one connection.
* ``send`` may send less than asked; the seed dropped the rest (ECHO-2): here
  the unsent tail stays queued.
* On EOF the seed dropped the queued echo and never closed the socket
  (ECHO-4, ECHO-6): here a half-closed connection is flushed, then closed.
* The seed queued every echo and sent it a select() round later: here echo
  is sent at once when nothing is queued ahead of it, and only what the
  socket does not take waits in ``message_queues`` (its socket in
  ``outputs``), so a round trip costs one select() call, not two.
* The seed read as fast as clients wrote, queueing without bound (ECHO-8):
  here a connection whose backlog passes `backlog_limit` is taken out of
  ``inputs`` until its backlog drains (backpressure).
* ``select`` cannot watch a descriptor >= FD_SETSIZE and raises ValueError
  for the whole loop; accept can fail with EMFILE: here such connections are
  refused (closed at once) and the server carries on (ECHO-10).

Urgent (TCP out-of-band) bytes are part of the stream and are delivered
inline (SO_OOBINLINE), so the seed's ``exceptional`` list has nothing left to
report and is not watched.

Each decision the loop takes is a small method, a *hook*, in the manner of
CPython's ``socketserver``: the transform, a new connection's queue, readying
an accepted socket, one send(), queueing what send() did not take, what
follows a flush, EOF, a failed recv() or send(), ending a connection and
releasing its socket, running out of descriptors.  The loop itself (`poll`,
`_accept`, `_receive`, `_send`) only calls them.  Each server of the defect
zoo (`impl.zoo`) overrides one of them with a classic bug.

The class can be driven two ways: `serve_forever()` (the command), or one
select round at a time with `poll(timeout)`, which is how the conformance
checker steps it deterministically inside a test.
"""

from __future__ import annotations

import errno
import logging
import select
import socket

from impl import _cli
from impl._spare_descriptor import SpareDescriptor

log = logging.getLogger("impl.select_server")

#: select() can only watch descriptors below this (glibc's FD_SETSIZE).
FD_SETSIZE = 1024


class SelectEchoServer:
    #: Stop reading from a connection once this many echo bytes wait for it.
    backlog_limit = 256 * 1024
    #: Bytes asked of each recv().
    recv_size = 64 * 1024
    #: Send echo straight after recv() when nothing is queued ahead of it.
    #: False is the seed's way: every echo waits for select() to report the
    #: socket writable in the next round (twice the select() calls).
    send_at_once = True
    #: The listen() backlog: connections the kernel may queue before accept().
    listen_backlog = 1024
    #: Connections whose descriptor select() cannot watch are refused.
    max_fd = FD_SETSIZE - 1

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = socket.create_server((host, port), backlog=self.listen_backlog)
        self.server.setblocking(False)
        self.address = self.server.getsockname()
        self.inputs: list[socket.socket] = [self.server]
        self.outputs: list[socket.socket] = []
        self.message_queues: dict[socket.socket, bytearray] = {}
        #: Connections whose client has shut down its sending side.
        self.finished: set[socket.socket] = set()
        # Held in reserve for accept() failing with EMFILE: the server frees
        # it to refuse the connection instead of spinning on the listener.
        self._spare = SpareDescriptor()

    # -- the select loop ---------------------------------------------------

    def serve_forever(self) -> None:
        while True:
            self.poll(None)

    def poll(self, timeout: float | None = 0.0) -> int:
        """Run exactly one select round; return how many ready sockets it handled."""
        readable, writable, _ = select.select(self.inputs, self.outputs, [], timeout)
        for s in readable:
            if s is self.server:
                self._accept()
            elif s in self.message_queues:
                self._receive(s)
        for s in writable:
            if s in self.message_queues:  # it may have been closed above
                self._send(s)
        return len(readable) + len(writable)

    def _accept(self) -> None:
        try:
            conn, client_address = self.server.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # the client gave up before we got to it
        except OSError as e:
            if e.errno in (errno.EMFILE, errno.ENFILE):
                self.out_of_descriptors()
            else:  # an error of one pending connection (see accept(2)), or transient
                log.warning("accept() failed: %s", e)
            return
        if conn.fileno() > self.max_fd:
            log.warning(
                "refusing %s: descriptor %d is beyond select()'s limit",
                client_address,
                conn.fileno(),
            )
            conn.close()
            return
        log.debug("new connection from %s", client_address)
        self.setup_connection(conn)

    def _receive(self, s: socket.socket) -> None:
        try:
            data = s.recv(self.recv_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:  # reset, timeout, ...: this connection only
            self.receive_failed(s, e)
            return
        if not data:
            self.on_eof(s)
            return
        queue = self.message_queues[s]
        echo = self.transform(data)
        if not queue and self.send_at_once:
            # Nothing waits ahead of this echo: send it now rather than in the
            # next round, which halves the select() calls per round trip.
            sent = self._send_some(s, echo)
            if sent is None or sent == len(echo):
                return
            echo = echo[sent:]
        self.queue_echo(s, echo)
        if len(queue) >= self.backlog_limit:
            self.inputs.remove(s)  # backpressure: read again once drained

    def _send(self, s: socket.socket) -> None:
        queue = self.message_queues[s]
        sent = self._send_some(s, queue)
        if not sent:
            return
        del queue[:sent]
        if not queue:
            self.after_flush(s)

    def _send_some(self, s: socket.socket, data: bytes | bytearray) -> int | None:
        """send() what the socket takes of `data` now; None if that closed it."""
        try:
            return self.send(s, data)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as e:  # reset, broken pipe: this connection only
            self.send_failed(s, e)
            return None

    # -- the hooks: one decision each, for a subclass to override ------------

    def transform(self, data: bytes) -> bytes:
        """The echo of received bytes: bytes.upper(), a-z to A-Z, all else as is."""
        return data.upper()

    def new_queue(self) -> bytearray:
        """A new connection's echo queue: an empty bytearray of its own."""
        return bytearray()

    def setup_connection(self, conn: socket.socket) -> None:
        """Ready an accepted socket: non-blocking, urgent bytes inline, read from."""
        conn.setblocking(False)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
        self.inputs.append(conn)
        self.message_queues[conn] = self.new_queue()

    def send(self, s: socket.socket, data: bytes | bytearray) -> int:
        """One send() of `data`: the count taken; raises BlockingIOError when full."""
        return s.send(data)

    def queue_echo(self, s: socket.socket, echo: bytes) -> None:
        """Echo not sent at once waits behind `s`'s queue; `s` is watched for writing."""
        queue = self.message_queues[s]
        if not queue:
            self.outputs.append(s)  # the queue was empty, so s was not in outputs
        queue += echo  # behind what is already queued: order is kept

    def after_flush(self, s: socket.socket) -> None:
        """`s`'s queue is empty: unwatch writing; close it if finished, else read again."""
        self.outputs.remove(s)
        if s in self.finished:
            self.close_connection(s)
        elif s not in self.inputs:
            self.inputs.append(s)  # backlog drained: resume reading

    def on_eof(self, s: socket.socket) -> None:
        """The client shut down its sending side: stop reading; flush, then close."""
        self.finished.add(s)
        self.inputs.remove(s)
        if not self.message_queues[s]:
            self.close_connection(s)

    def receive_failed(self, s: socket.socket, error: OSError) -> None:
        """recv() on `s` failed (a reset, ...): close this connection only."""
        log.info("closing %s after receive error: %s", _peer(s), error)
        self.close_connection(s)

    def send_failed(self, s: socket.socket, error: OSError) -> None:
        """send() on `s` failed (a reset, a broken pipe): close this connection only."""
        log.info("closing %s after send error: %s", _peer(s), error)
        self.close_connection(s)

    def close_connection(self, s: socket.socket) -> None:
        """End a connection: unwatch it, drop its queue, release its socket."""
        log.debug("closing %s", _peer(s))
        self.unwatch(s)
        del self.message_queues[s]
        self.close_socket(s)

    def unwatch(self, s: socket.socket) -> None:
        """Take `s` out of the select lists and the finished set."""
        if s in self.inputs:
            self.inputs.remove(s)
        if s in self.outputs:
            self.outputs.remove(s)
        self.finished.discard(s)

    def close_socket(self, s: socket.socket) -> None:
        """Release an ended connection's socket: close() it (the client reads EOF)."""
        s.close()

    def out_of_descriptors(self) -> None:
        """accept() failed with EMFILE/ENFILE: refuse the pending connection on the spare."""
        self._spare.refuse(self.server, log)

    def close(self) -> None:
        """Close every connection and the listening socket."""
        for s in list(self.message_queues):
            self.close_connection(s)
        self.server.close()
        self.inputs.clear()
        self._spare.close()


def _peer(s: socket.socket) -> str:
    try:
        host, port = s.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return f"fd {s.fileno()}"


def main(argv: list[str] | None = None) -> int:
    return _cli.run(
        SelectEchoServer,
        description="The reference select() uppercase echo server.",
        default_port=10000,
        argv=argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
