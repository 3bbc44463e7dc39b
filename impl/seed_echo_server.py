"""The seed tutorial's first select() server, with its defects intact.

The seed (`shared/seed/000_b80f858ad387c3c6.txt`, "select实现socketserver") serves on
localhost:9000 with ``listen(1000)``, a ``msg_dic`` of one ``queue.Queue`` per
connection, and ``inputs``/``outputs`` lists for ``select``.  `poll()` is one round of
its ``while True:`` loop, statement for statement; its Chinese comments are translated.

Deliberate changes, none of which alters behaviour on the wire:

* ``print(...)`` became ``log.debug``/``log.info`` with the same text (translated), so
  the tests are not flooded.
* It binds the ``host`` argument (default 127.0.0.1), not ``'localhost'``.
* The loop body is `poll()`; `serve_forever()` loops it; `close()` (which the seed
  does not have) closes every socket the server still refers to.
* The seed's loop runs at module level, so its names (``conn``, ``r``, ``e``,
  ``readable``, ...) outlive each round and keep the sockets they name open until
  rebound; `seed_names` keeps them the same way.  Without it a dropped socket would be
  closed by CPython's reference counting at the end of every `poll()`, which the seed
  does not do.
* ``msg_dic`` is also readable as ``message_queues``, the checker's name for it.

Defects, each shown by tests/impl/test_seed_servers.py (requirement IDs from
spec/requirements.py):

1. No uppercasing (ECHO-1): ``msg_dic[r].put(data)`` ... ``w.send(data_to_client)``
   sends back the bytes as received.
2. EOF is never handled (ECHO-4, ECHO-6, ECHO-9): after the client's FIN,
   ``data = r.recv(1024)`` returns ``b''``, which is queued and "sent" like data, and
   the connection stays in ``inputs``.  EOF keeps it readable, so every ``select``
   returns at once: a busy loop at full CPU, forever.  The socket is never closed
   (it sits in CLOSE_WAIT) and the client never reads EOF.
3. A reset kills the server (ECHO-5): ``data = r.recv(1024)`` raises
   ConnectionResetError after a client's RST.  Also, a client that sends and then
   close()s without reading: the echo sent to its closed socket draws an RST, and the
   next round's ``w.send(data_to_client)`` (of the ``b''`` queued at EOF) raises
   BrokenPipeError.  Nothing catches either one.
4. ``outputs.append(r)`` without the ``if r not in outputs`` check: ``outputs`` holds
   the socket once per message not yet sent.  (``select`` then returns it once per
   entry, so entries always equal the queue's size: ``msg_dic[w].get()`` never finds
   an empty queue and never blocks.)  The consequences:

   a. (ECHO-7, ECHO-8, ECHO-5) When a client sends without reading, its socket stops
      being writable but stays readable, and each round appends another entry.  At
      1025 entries (about 1 MiB of unsent echo) ``select.select(...)`` raises
      ``ValueError: too many file descriptors in select()``, and the whole server
      dies.
   b. (ECHO-7) Once such a socket is writable again, ``for w in writeables`` sends one
      message per entry in a single round without checking again.  Accepted sockets
      are blocking: ``server.accept()`` returns a blocking socket even from a
      non-blocking listener, since Python's default timeout is None.  So if the batch
      is larger than the send buffer's free space, ``w.send(data_to_client)`` blocks
      until that one client reads, and no other client is served.  This is only
      reachable with a small send buffer (shown with SO_SNDBUF 64 KiB).  Linux's
      loopback buffer autotunes to 4 MiB and reports writable when a third of it is
      free, which is more than a 1024-entry batch needs.
   c. (ECHO-5) See 5: the exceptional branch removes only one entry and deletes the
      queue, so if entries remain, the later ``msg_dic[w]`` raises KeyError.
5. Urgent data mistaken for an error (ECHO-2, ECHO-6): on Linux, select's
   exceptional list reports TCP urgent (MSG_OOB) data, not errors.  One urgent byte
   makes ``for e in exceptional`` drop the connection from ``outputs``, ``inputs``
   and ``msg_dic`` without closing it, so nothing the client sends afterwards is
   echoed.
6. Descriptors beyond FD_SETSIZE (ECHO-10): once an accepted connection's descriptor
   is 1024 or more, ``select.select(...)`` raises
   ``ValueError: filedescriptor out of range in select()``, and the whole server dies
   instead of refusing that one connection.
7. Latent, not observed (ECHO-2): ``w.send(data_to_client)`` ignores how much was
   sent.  On a blocking socket Linux queues all of it (only a signal could cut it
   short), so no data is lost this way in practice.
"""

from __future__ import annotations

import logging
import queue
import select
import socket
from typing import Any

from impl import _cli

log = logging.getLogger("impl.seed_echo_server")

#: The seed's loop runs at module level, so these names outlive each round (and keep the
#: sockets they refer to alive, and open, until they are bound to something else).
_SEED_NAMES = (
    "readable",
    "writeables",
    "exceptional",
    "r",
    "w",
    "e",
    "conn",
    "addr",
    "data",
    "data_to_client",
)


class SeedEchoServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        server = socket.socket()
        server.bind((host, port))
        server.listen(1000)
        # Non-blocking mode.
        server.setblocking(False)
        msg_dic: dict[socket.socket, queue.Queue[bytes]] = {}
        # The connections we ask the kernel to watch.
        inputs = [
            server,
        ]
        # outputs holds the connections that have data to send back.
        outputs: list[socket.socket] = []
        self.server, self.msg_dic, self.inputs, self.outputs = server, msg_dic, inputs, outputs
        self.address = server.getsockname()
        #: The seed's loop-level names as they stand after the last round.
        self.seed_names: dict[str, Any] = {}

    @property
    def message_queues(self) -> dict[socket.socket, queue.Queue[bytes]]:
        """The seed calls its queues `msg_dic`; this is the name the checker looks for."""
        return self.msg_dic

    def serve_forever(self) -> None:
        # The seed's `while True:` (select in a loop).
        while True:
            self.poll(None)

    def poll(self, timeout: float | None = 0.0) -> int:
        """Run exactly one round of the seed's loop; return how many ready sockets select gave."""
        server, inputs, outputs, msg_dic = self.server, self.inputs, self.outputs, self.msg_dic
        # 1. Ask the kernel which connections are active; any activity returns all of them.
        # 2. Handle the data returned.
        # 3. Connections that break are reported back by the kernel (in exceptional).
        # select returns three lists:
        # readable: active connections with data to read
        # writeables: connections we can send our queued data back on
        # exceptional: active connections with an error
        readable, writeables, exceptional = select.select(inputs, outputs, inputs, timeout)
        log.debug("%s %s %s", readable, writeables, exceptional)
        # Receive.
        for r in readable:
            # A new connection has arrived.
            if r is server:
                # Accept the client's connection.
                conn, addr = server.accept()
                # Log the client's address.
                log.info("a new connection arrived %s", addr)
                # The new connection has sent nothing yet; receiving now would fail,
                # so let select watch this conn and tell us when its data arrives.
                inputs.append(conn)
                # A queue for the data to send back to this client.
                msg_dic[conn] = queue.Queue()
            # Data from an existing connection.
            else:
                # Receive the data.
                data = r.recv(1024)
                # Log the data.
                log.debug("received data: %r", data)
                # Queue the data to send back.
                msg_dic[r].put(data)
                # Add the connection to those with data to send back.
                outputs.append(r)
        # Send: the connections we have data for.
        for w in writeables:
            # Take the next message from the connection's queue.
            data_to_client = msg_dic[w].get()
            # Send it back to the client.
            w.send(data_to_client)
            # So that select does not report this connection again next round.
            outputs.remove(w)
        # Remove the connections in error.
        for e in exceptional:
            # Is it in outputs?
            if e in outputs:
                # If so, remove it.
                outputs.remove(e)
            # Remove it from inputs.
            inputs.remove(e)
            # Delete its queue.
            del msg_dic[e]
        # (Not in the seed: keep the loop's names alive between rounds, as its module does.)
        self.seed_names.update((k, v) for k, v in locals().items() if k in _SEED_NAMES)
        return len(readable) + len(writeables) + len(exceptional)

    def close(self) -> None:
        """Close every socket the server still refers to (the seed never closes anything)."""
        held = [v for v in self.seed_names.values() if isinstance(v, socket.socket)]
        held += [
            s
            for v in self.seed_names.values()
            if isinstance(v, list)
            for s in v
            if isinstance(s, socket.socket)
        ]
        self.seed_names.clear()
        for s in [self.server, *self.inputs, *self.outputs, *self.msg_dic, *held]:
            s.close()
        self.inputs.clear()
        self.outputs.clear()
        self.msg_dic.clear()


def main(argv: list[str] | None = None) -> int:
    return _cli.run(
        SeedEchoServer,
        description="The seed tutorial's first select() echo "
        "server, defects intact (it echoes without uppercasing).",
        default_port=9000,
        argv=argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
