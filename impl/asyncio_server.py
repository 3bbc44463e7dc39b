"""An uppercase echo server on asyncio's Protocol/Transport API.

Design note
-----------
One `EchoProtocol` per connection; asyncio's event loop (epoll on Linux)
does the readiness bookkeeping, the buffering of partial sends and the
closing of reset connections.  What the protocol adds:

* ``data_received`` writes ``data.upper()`` to the transport (ECHO-1/2).
  The transport sends what it can at once and buffers the rest.
* Flow control (ECHO-8): when the transport's write buffer passes its
  high-water mark asyncio calls ``pause_writing()``, and the protocol then
  stops reading (``transport.pause_reading()``); ``resume_writing()`` (the
  buffer fell below the low-water mark) resumes reading.  A client that
  sends without reading therefore costs at most about one read plus the
  high-water mark of memory, and the kernel's TCP window stops it.
* Half-close (ECHO-4): ``eof_received`` returns True, so asyncio keeps the
  connection half-open, and calls ``transport.close()``, which stops reading
  and closes the socket only after the buffered echo has been written
  (documented: "buffered data will be flushed asynchronously").
* A reset (ECHO-5) reaches ``connection_lost(exc)``: asyncio has already
  closed the socket; the connection is forgotten.
* Urgent bytes stay in the stream (SO_OOBINLINE, inherited by accepted
  sockets from the listening socket on Linux and set again on each).

Accepting is done here, not by ``loop.create_server``: the listening socket
is watched with ``loop.add_reader`` and each accepted socket is handed to
``loop.connect_accepted_socket`` (a short task, as asyncio's own server
does).  The reason is EMFILE (ECHO-10).  In Python 3.11 asyncio's accept
loop (``BaseSelectorEventLoop._accept_connection``) does not stop after
EMFILE/ENFILE: it logs the error and schedules a retry once per remaining
iteration of its ``backlog``-long loop, and every retry does the same, so
the log and the retries snowball (CPython gh-151615, fixed upstream in
2026).  With a 4096 backlog that buried the server within seconds.  Here,
as in the reference, a spare descriptor is released, the pending connection
accepted and closed at once, and the spare re-taken.

The command front end `_cli.run` wants an object built as
``factory(host, port)`` with ``.address``, ``.serve_forever()`` and
``.close()``.  `AsyncioEchoServer` owns a private event loop: ``__init__``
binds the listening socket synchronously (so a busy port raises OSError
there, as `_cli.run` expects) and registers it with the loop;
``serve_forever()`` runs the loop; ``close()`` stops accepting, aborts every
connection, cancels transports still being set up and closes the loop.

Signals: `_cli.run` installs SIGINT/SIGTERM handlers that raise an
exception.  Raised inside a loop callback, asyncio would catch it as a
callback error and carry on.  So while the loop runs, ``serve_forever()``
routes those signals through ``loop.add_signal_handler`` (safe: the loop
stops between callbacks), and once ``run_forever()`` has returned calls the
previous handler, which raises `_cli`'s exception outside the loop.
``close()`` cancels and awaits every task still pending, so closing the loop
is quiet (no "Task was destroyed but it is pending").
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import threading
from typing import Any

from impl import _cli
from impl._spare_descriptor import SpareDescriptor

log = logging.getLogger("impl.asyncio_server")


class EchoProtocol(asyncio.Protocol):
    #: Write-buffer marks: stop reading above `high_water`, resume below `low_water`.
    high_water = 256 * 1024
    low_water = 64 * 1024

    def __init__(self, connections: set[EchoProtocol]) -> None:
        self.connections = connections
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
        transport.set_write_buffer_limits(high=self.high_water, low=self.low_water)
        self.connections.add(self)
        log.debug("new connection from %s", self.peer)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data.upper())

    def pause_writing(self) -> None:
        # The echo backlog passed the high-water mark: backpressure.
        assert self.transport is not None
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        assert self.transport is not None
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        # The client shut down its sending side.  Keep our side open (True)
        # and close it once every buffered echo byte has been written.
        log.debug("EOF from %s", self.peer)
        assert self.transport is not None
        self.transport.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            log.info("connection %s lost: %s", self.peer, exc)
        else:
            log.debug("connection %s closed", self.peer)
        self.connections.discard(self)
        self.transport = None


class AsyncioEchoServer:
    #: The listen() backlog (the kernel caps it at net.core.somaxconn).
    listen_backlog = 4096
    #: Connections accepted per readiness event of the listening socket.
    accepts_per_round = 128

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.connections: set[EchoProtocol] = set()
        # Connections accepted whose transport is still being set up.
        self._pending: dict[asyncio.Task[Any], socket.socket] = {}
        # Bind here, synchronously, so a port in use raises OSError now.
        self.server = socket.create_server((host, port), backlog=self.listen_backlog)
        try:
            self.server.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
            self.server.setblocking(False)
            self.address = self.server.getsockname()
            self.loop = asyncio.new_event_loop()
        except BaseException:
            self.server.close()
            raise
        # Held in reserve for accept() failing with EMFILE (see module doc).
        self._spare = SpareDescriptor()
        self.loop.add_reader(self.server.fileno(), self._accept)

    # -- accepting ---------------------------------------------------------

    def _accept(self) -> None:
        for _ in range(self.accepts_per_round):
            try:
                conn, _ = self.server.accept()
            except (BlockingIOError, InterruptedError):
                return  # nothing more waiting
            except ConnectionAbortedError:
                continue  # the client gave up before we got to it
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._spare.refuse(self.server, log)
                else:
                    log.error("accept() failed: %s", e)
                return
            conn.setblocking(False)
            task = self.loop.create_task(
                self.loop.connect_accepted_socket(lambda: EchoProtocol(self.connections), conn)
            )
            self._pending[task] = conn
            task.add_done_callback(self._accepted)

    def _accepted(self, task: asyncio.Task[Any]) -> None:
        conn = self._pending.pop(task, None)
        if task.cancelled():
            if conn is not None:
                conn.close()
            return
        exc = task.exception()
        if exc is not None:  # reset before the transport was ready, say
            log.info("dropping a new connection: %s", exc)
            if conn is not None:
                conn.close()

    # -- running -----------------------------------------------------------

    def serve_forever(self) -> None:
        """Run the event loop until stopped by SIGINT/SIGTERM (or `stop()`)."""
        received: list[int] = []
        previous: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                handler = signal.getsignal(sig)
                if handler is signal.SIG_IGN:
                    continue
                previous[sig] = handler
                self.loop.add_signal_handler(sig, self._on_signal, sig, received)
        try:
            self.loop.run_forever()
        finally:
            for sig, handler in previous.items():
                self.loop.remove_signal_handler(sig)
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        if received:
            handler = previous.get(signal.Signals(received[0]))
            if callable(handler):
                handler(received[0], None)  # _cli's handler: raises its stop exception

    def _on_signal(self, sig: int, received: list[int]) -> None:
        log.debug("received %s", signal.Signals(sig).name)
        received.append(sig)
        self.loop.stop()

    def stop(self) -> None:
        """Make serve_forever() return (thread-safe)."""
        self.loop.call_soon_threadsafe(self.loop.stop)

    def close(self) -> None:
        """Close every connection, the listening socket and the event loop."""
        loop = self.loop
        if loop.is_closed():
            return
        if self.server.fileno() != -1:
            loop.remove_reader(self.server.fileno())
        self.server.close()
        for protocol in list(self.connections):
            if protocol.transport is not None:
                protocol.transport.abort()
        for task in self._pending:
            task.cancel()

        async def settle(pending: list[asyncio.Task[Any]]) -> None:
            await asyncio.gather(*pending, return_exceptions=True)
            # abort() defers connection_lost (and the socket close) by one
            # callback round; let those run.
            for _ in range(3):
                await asyncio.sleep(0)

        try:
            loop.run_until_complete(settle(list(self._pending)))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
            for conn in self._pending.values():
                conn.close()
            self._spare.close()


def main(argv: list[str] | None = None) -> int:
    return _cli.run(
        AsyncioEchoServer,
        description="An uppercase echo server on asyncio protocols with flow control.",
        default_port=10000,
        argv=argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
