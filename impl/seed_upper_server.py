"""The seed tutorial's "complete" select() uppercase server, with its defects intact.

The seed's second server (`shared/seed/000_b80f858ad387c3c6.txt`,
"select实现socketserver并发(完整版)") serves on localhost:10000 with ``listen(5)``,
non-blocking sockets, a ``message_queues`` dict of one ``queue.Queue`` per connection,
and sends each queued message back as ``.upper()``.  `poll()` is one round of its
``while True:`` loop, statement for statement; its Chinese comments are translated.

Deliberate changes, none of which alters behaviour on the wire:

* ``print(...)`` became ``log.debug``/``log.info`` with the same text (translated).
  The arguments are still computed eagerly, so the ``s.getpeername()`` calls the
  prints made still run (and can still raise).
* It binds the ``host`` argument (default 127.0.0.1), not ``'localhost'``.  The seed's
  unused ``import sys`` is left out.
* The loop body is `poll()`; `serve_forever()` loops it; `close()` (which the seed
  does not have) closes every socket the server still refers to.
* The seed's loop runs at module level, so its names (``s``, ``conn``,
  ``readable``, ...) outlive each round and keep the sockets they name open until
  rebound; `seed_names` keeps them the same way (see defect 4).

Defects, each shown by tests/impl/test_seed_servers.py (requirement IDs from
spec/requirements.py):

1. A reset kills the server (ECHO-5): ``data = s.recv(1024)`` raises
   ConnectionResetError after a client's RST.  If data arrived before the RST, recv
   returns it, and then ``s.getpeername()`` (in the "received data" log line) raises
   ``OSError: [Errno 107] Transport endpoint is not connected``.  The getpeername
   calls in the writeable and exceptional branches do not hit a reset socket: a reset
   socket is always readable too, and the readable branch runs first.
2. EOF while the socket is in this round's ``writeable`` kills the server (ECHO-5,
   ECHO-4).  This happens when echo is still queued, or in the round right after the
   last send and before the "queue is empty" round.  The ``else:`` branch runs
   ``del message_queues[s]``, and then in ``for s in writeable``,
   ``message_queues[s]`` raises KeyError, because the ``try`` catches only
   queue.Empty.  An ordinary client that sends and then shuts down or closes
   triggers it.
3. EOF discards queued echo (ECHO-4): when the socket is not writable in that round
   (its client is not reading), ``del message_queues[s]`` silently throws away
   everything still owed.
4. EOF never closes (ECHO-4, ECHO-6): the ``else:`` branch removes the socket from
   every list but never calls ``s.close()``.  It stays in CLOSE_WAIT and its client
   never reads EOF.  It is released only when CPython frees the object, once the
   loop's names that still refer to it (``s``, ``conn``, ``readable``) are rebound,
   e.g. when the next connection is accepted.  An idle server keeps it forever.
5. No backpressure (ECHO-8): every round reads 1024 bytes from every readable client,
   however much echo it already owes, so a client that sends without reading makes
   its queue grow without bound (8 MiB queued and still reading, in the test).
6. Urgent data mistaken for an error (ECHO-2, ECHO-5): on Linux, select's
   exceptional list reports TCP urgent (MSG_OOB) data, not errors.  One urgent byte
   makes ``for s in exeptional`` close the connection the client did not close.  The
   urgent byte is unread, so the close resets it, and any queued echo is lost.  If
   the client's EOF is read in the same round, the readable branch has already
   removed the socket, and ``inputs.remove(s)`` raises ValueError: the server dies.
7. ``server.listen(5)`` (ECHO-10): the kernel queues only 6 connections before
   ``accept()``, and the loop accepts at most one per round.  Extra connections in a
   burst have their SYNs dropped and must wait for the client to send the SYN again
   (after 1 s, 3 s, 7 s, ...): they are delayed, not refused.
8. Descriptors beyond FD_SETSIZE (ECHO-10): once an accepted connection's descriptor
   is 1024 or more, ``select.select(...)`` raises
   ``ValueError: filedescriptor out of range in select()``, and the whole server dies.
9. Latent, not observed (ECHO-2): ``s.send(next_msg.upper())`` ignores how much was
   sent.  Each message is at most 1024 bytes and is sent only after select reported
   the socket writable, which on Linux means at least a third of its send buffer is
   free.  So no short send happened, even through the smallest send buffer the
   kernel allows (4608 bytes) with a slow reader.
"""

from __future__ import annotations

import logging
import queue
import select
import socket
from typing import Any

from impl import _cli

log = logging.getLogger("impl.seed_upper_server")

#: The seed's loop runs at module level, so these names outlive each round (and keep the
#: sockets they refer to alive, and open, until they are bound to something else).
_SEED_NAMES = (
    "readable",
    "writeable",
    "exeptional",
    "s",
    "conn",
    "client_addr",
    "data",
    "next_msg",
)


class SeedUpperServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        server = socket.socket()
        server.setblocking(0)  # type: ignore[arg-type]  # as the seed writes it
        server_addr = (host, port)
        log.info("starting up on %s port %s", *server_addr)
        server.bind(server_addr)
        server.listen(5)
        inputs = [
            server,
        ]  # Watch the server itself too: it is a descriptor as well.
        outputs: list[socket.socket] = []
        message_queues: dict[socket.socket, queue.Queue[bytes]] = {}
        self.server, self.inputs, self.outputs = server, inputs, outputs
        self.message_queues = message_queues
        self.address = server.getsockname()
        #: The seed's loop-level names as they stand after the last round.
        self.seed_names: dict[str, Any] = {}

    def serve_forever(self) -> None:
        # The seed's `while True:` (select in a loop).
        while True:
            self.poll(None)

    def poll(self, timeout: float | None = 0.0) -> int:
        """Run exactly one round of the seed's loop; return how many ready sockets select gave."""
        server, inputs, outputs = self.server, self.inputs, self.outputs
        message_queues = self.message_queues
        log.debug("waiting for next event...")
        readable, writeable, exeptional = select.select(inputs, outputs, inputs, timeout)
        # (With no timeout, and no descriptor ready, the program blocks here.)
        for s in readable:  # Each s is a socket.
            if s is server:
                # The server itself is in inputs too; it is ready ("active") when a new
                # connection has come in. Accept it.
                conn, client_addr = s.accept()
                log.info("new connection from %s", client_addr)
                conn.setblocking(0)  # type: ignore[arg-type]  # as the seed writes it
                inputs.append(conn)
                # Not to block the whole program, do not receive from the client here: put
                # it in inputs, and next round select tells us when its data has arrived
                # (the connection shows up in readable); we receive then, below.
                message_queues[conn] = queue.Queue()
                # Received data is not sent back at once but kept in the queue, sent later.
            else:
                # Not the server, so a connection with a client: its data has arrived.
                data = s.recv(1024)
                if data:
                    log.debug("received data from [%s]: %r", s.getpeername()[0], data)
                    message_queues[s].put(data)  # Queue it; it is sent back later.
                    if s not in outputs:
                        outputs.append(s)
                        # Not to hold up the other clients, do not send it back right now.
                else:  # No data: what does that mean? The client has disconnected.
                    log.info("client disconnected %s", s)
                    if s in outputs:
                        outputs.remove(s)  # Clean up the disconnected connection.
                    inputs.remove(s)  # Clean up the disconnected connection.
                    del message_queues[s]  # Clean up the disconnected connection.
        for s in writeable:
            try:
                next_msg = message_queues[s].get_nowait()
            except queue.Empty:
                log.debug("client [%s] queue is empty..", s.getpeername()[0])
                outputs.remove(s)
            else:
                log.debug("sending msg to [%s] %r", s.getpeername()[0], next_msg)
                s.send(next_msg.upper())
        for s in exeptional:
            log.info("handling exception for %s", s.getpeername())
            inputs.remove(s)
            if s in outputs:
                outputs.remove(s)
            s.close()
            del message_queues[s]
        # (Not in the seed: keep the loop's names alive between rounds, as its module does.)
        self.seed_names.update((k, v) for k, v in locals().items() if k in _SEED_NAMES)
        return len(readable) + len(writeable) + len(exeptional)

    def close(self) -> None:
        """Close every socket the server still refers to (the seed never closes its server)."""
        held = [v for v in self.seed_names.values() if isinstance(v, socket.socket)]
        held += [
            s
            for v in self.seed_names.values()
            if isinstance(v, list)
            for s in v
            if isinstance(s, socket.socket)
        ]
        self.seed_names.clear()
        for s in [self.server, *self.inputs, *self.outputs, *self.message_queues, *held]:
            s.close()
        self.inputs.clear()
        self.outputs.clear()
        self.message_queues.clear()


def main(argv: list[str] | None = None) -> int:
    return _cli.run(
        SeedUpperServer,
        description='The seed tutorial\'s "complete" select() '
        "uppercase echo server, defects intact.",
        default_port=10000,
        argv=argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
