"""An uppercase echo server with one thread per connection, blocking sockets.

Design note
-----------
The plainest design: the main thread blocks in ``accept()``; each connection
gets a daemon thread that loops ``recv`` → ``upper`` → ``sendall`` on a
blocking socket.  There is no readiness bookkeeping at all; the kernel's
scheduler is the event loop.

* Partial sends (ECHO-2): ``sendall`` loops until everything is sent.
* Backpressure (ECHO-8) comes for free: while a client does not read,
  ``sendall`` blocks, so its thread stops reading, so the kernel's TCP window
  stops the client.  Memory per connection is one recv buffer
  (`recv_size`) plus a small thread stack (`thread_stack_size`).
* Half-close (ECHO-4): ``recv`` returning b"" means the client shut down its
  sending side; every earlier chunk has already been sent in full, so the
  thread shuts down its write side (FIN after the last echo byte) and closes.
* Resets and other socket errors (ECHO-5) end only that connection's thread;
  the socket is always closed in a ``finally`` (ECHO-6).
* Idle (ECHO-9): every thread sleeps in a blocking system call, no timeouts,
  no polling.
* accept() failing with EMFILE/ENFILE: Linux fails it at once, before any
  connection is waiting, so the main thread waits with poll(2) (which needs
  no descriptor) until one is; it is then served if a descriptor has been
  freed meanwhile, or else accepted on a spare descriptor held in reserve
  and closed at once.  If a thread cannot be started the connection is
  closed (ECHO-10).
* Urgent bytes are delivered inline (SO_OOBINLINE).

Signals: worker threads block SIGINT/SIGTERM, so the kernel always delivers
them to the main thread, interrupting its ``accept()``; `_cli.run`'s handler
then raises out of `serve_forever()` and `close()` shuts every connection
down.  `close()` may also be called from another thread: it shuts down the
listening socket, which wakes ``accept()``, and `serve_forever()` returns.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import select
import signal
import socket
import threading

from impl import _cli
from impl._spare_descriptor import SpareDescriptor

log = logging.getLogger("impl.threaded_server")

_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class ThreadedEchoServer:
    #: Bytes asked of each recv().
    recv_size = 64 * 1024
    #: The listen() backlog (the kernel caps it at net.core.somaxconn).
    listen_backlog = 4096
    #: Stack size of connection threads: they need little, and thousands of
    #: default (8 MiB) stacks would reserve a lot of address space.
    thread_stack_size = 256 * 1024

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = socket.create_server((host, port), backlog=self.listen_backlog)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
        self.address = self.server.getsockname()
        self._lock = threading.Lock()
        self.connections: set[socket.socket] = set()
        self._closing = False
        self._spare = SpareDescriptor()

    # -- accepting ---------------------------------------------------------

    def serve_forever(self) -> None:
        while not self._closing:
            try:
                conn, client_address = self.server.accept()
            except ConnectionAbortedError:
                continue
            except OSError as e:
                if self._closing:
                    return  # close() shut the listening socket down
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._accept_when_out_of_descriptors()
                    continue
                raise
            self._start(conn, client_address)

    def _start(self, conn: socket.socket, client_address: tuple[str, int]) -> None:
        log.debug("new connection from %s", client_address)
        with self._lock:
            if self._closing:
                conn.close()
                return
            self.connections.add(conn)
        thread = threading.Thread(
            target=self._handle,
            args=(conn, client_address),
            name=f"echo {client_address}",
            daemon=True,
        )
        old_size = threading.stack_size(self.thread_stack_size)
        try:
            thread.start()
        except RuntimeError as e:  # can't start new thread
            log.warning("refusing %s: %s", client_address, e)
            self._forget(conn)
        finally:
            threading.stack_size(old_size)

    def _accept_when_out_of_descriptors(self) -> None:
        """accept() failed for want of a descriptor: serve or refuse the next connection.

        Linux's accept() reserves the new descriptor *before* waiting for a
        connection, so at the limit it fails at once whether or not anyone is
        waiting; retrying would spin and refusing would block in accept().
        So: wait, holding no descriptor (poll(2)), until a connection is
        pending; then accept it without blocking, serving it if a descriptor
        has been freed meanwhile and refusing it (the spare) if not.
        """
        p = select.poll()
        p.register(self.server, select.POLLIN)
        p.poll()  # no timeout: a signal or close() ends the wait
        if self._closing:
            return
        self.server.setblocking(False)
        try:
            conn, client_address = self.server.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # the client gave up meanwhile
        except OSError as e:
            if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                self._spare.refuse(self.server, log)
                return
            raise
        finally:
            self.server.setblocking(True)
        conn.setblocking(True)
        self._start(conn, client_address)

    # -- one connection, in its own thread ---------------------------------

    def _handle(self, conn: socket.socket, client_address: tuple[str, int]) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
            while True:
                data = conn.recv(self.recv_size)
                if not data:
                    break  # the client shut down its sending side
                conn.sendall(data.upper())
            # Everything received has been echoed: end our side.
            conn.shutdown(socket.SHUT_WR)
        except OSError as e:  # reset, broken pipe, or close() shutting us down
            if not self._closing:
                log.info("closing %s after error: %s", client_address, e)
        finally:
            self._forget(conn)
            log.debug("closed %s", client_address)

    def _forget(self, conn: socket.socket) -> None:
        with self._lock:
            self.connections.discard(conn)
        conn.close()

    # -- shutting down -----------------------------------------------------

    def close(self) -> None:
        """Stop accepting, end every connection, release the listening socket."""
        with self._lock:
            self._closing = True
            connections = list(self.connections)
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in accept()
        self.server.close()
        for conn in connections:
            # Wakes the thread blocked in recv/sendall; it closes its socket.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._spare.close()


def main(argv: list[str] | None = None) -> int:
    return _cli.run(
        ThreadedEchoServer,
        description="An uppercase echo server with a thread per connection.",
        default_port=10000,
        argv=argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
