"""An uppercase echo server on `selectors.DefaultSelector` (epoll on Linux).

Design note
-----------
Same single-threaded, event-driven shape as the reference select() server
(`impl.select_server`), with one change of machinery: readiness comes from
``selectors.DefaultSelector``, which is epoll on Linux (kqueue on the BSDs).
epoll has no FD_SETSIZE: any descriptor can be watched, so the only limit on
connections is RLIMIT_NOFILE, which `main()` raises from its soft to its hard
value at startup.  The server serves 10,000 simultaneous connections.

Instead of passing the lists to select() on every round, each socket is
*registered* once with the events it wants, and re-registered (``modify``)
only when that changes.  The white-box view stays the reference's:

* ``inputs``: the sockets registered for reading (the listening socket and
  every connection that is neither finished nor held back);
* ``outputs``: the sockets registered for writing (those with unsent echo);
* ``message_queues``: each connection's unsent echo (a bytearray);
* ``finished``: connections whose client has shut down its sending side.

A connection's registered events are always exactly
``(EVENT_READ if in inputs) | (EVENT_WRITE if in outputs)``; `_sync` keeps the
selector in step with the two sets.  An open connection is always in at
least one of them; when it would be in neither it has ended and is closed.

Behaviour, as in the reference:

* Echo is attempted at once after each read (most sends complete, so most
  connections never need write interest); a partial send leaves the unsent
  tail queued and the socket in ``outputs`` (ECHO-2).
* A reset or any other error on recv/send closes that connection quietly
  (ECHO-5).  epoll reports errors as both readable and writable, so a
  connection held back from reading still notices its reset on send.
* On EOF the connection leaves ``inputs``; its queued echo is flushed and
  then it is closed (ECHO-4, ECHO-6).
* Backpressure (ECHO-8): once a connection's backlog reaches
  `backlog_limit` it leaves ``inputs`` (its registration becomes
  write-only); it is read again once the backlog has drained.
* accept() failing with EMFILE/ENFILE: a spare descriptor is released, the
  pending connection accepted and closed at once, and the spare re-taken,
  so the listening socket does not stay readable and spin (ECHO-10).
* Urgent bytes are delivered inline (SO_OOBINLINE) as part of the stream.

Steppable like the reference: `poll(timeout)` runs exactly one selector round
and returns the number of events it handled; `serve_forever()` loops on it.
"""

from __future__ import annotations

import errno
import logging
import resource
import selectors
import socket

from impl import _cli
from impl._spare_descriptor import SpareDescriptor

log = logging.getLogger("impl.selectors_server")

_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE


class SelectorsEchoServer:
    #: Stop reading from a connection once this many echo bytes wait for it.
    backlog_limit = 256 * 1024
    #: Bytes asked of each recv().
    recv_size = 64 * 1024
    #: The listen() backlog (the kernel caps it at net.core.somaxconn).
    listen_backlog = 4096
    #: Connections accepted per readiness event of the listening socket, so a
    #: burst of connects is taken in few rounds without starving the others.
    accepts_per_round = 128

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = socket.create_server((host, port), backlog=self.listen_backlog)
        try:
            self.server.setblocking(False)
            self.server.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
            self.address = self.server.getsockname()
            self.selector = selectors.DefaultSelector()
        except BaseException:
            self.server.close()
            raise
        self.selector.register(self.server, _READ)
        self.inputs: set[socket.socket] = {self.server}
        self.outputs: set[socket.socket] = set()
        self.message_queues: dict[socket.socket, bytearray] = {}
        #: Connections whose client has shut down its sending side.
        self.finished: set[socket.socket] = set()
        # Events each connection is registered for, to skip no-op modify().
        self._registered: dict[socket.socket, int] = {}
        # Held in reserve for accept() failing with EMFILE (see module doc).
        self._spare = SpareDescriptor()

    # -- the event loop ----------------------------------------------------

    def serve_forever(self) -> None:
        while True:
            self.poll(None)

    def poll(self, timeout: float | None = 0.0) -> int:
        """Run exactly one selector round; return how many events it handled."""
        events = self.selector.select(timeout)
        for key, mask in events:
            s = key.fileobj
            if s is self.server:
                self._accept()
                continue
            if mask & _READ and s in self.message_queues:
                self._receive(s)
            if mask & _WRITE and s in self.outputs:  # it may have been closed above
                self._send(s)
        return len(events)

    def _sync(self, s: socket.socket) -> None:
        """Make the selector's registration of `s` match inputs/outputs."""
        wanted = (_READ if s in self.inputs else 0) | (_WRITE if s in self.outputs else 0)
        current = self._registered.get(s, 0)
        if wanted == current:
            return
        if not wanted:
            self.selector.unregister(s)
            del self._registered[s]
        elif not current:
            self.selector.register(s, wanted)
            self._registered[s] = wanted
        else:
            self.selector.modify(s, wanted)
            self._registered[s] = wanted

    def _accept(self) -> None:
        for _ in range(self.accepts_per_round):
            try:
                conn, client_address = self.server.accept()
            except (BlockingIOError, InterruptedError):
                return  # nothing more waiting
            except ConnectionAbortedError:
                continue  # the client gave up before we got to it
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._spare.refuse(self.server, log)
                    return
                raise
            log.debug("new connection from %s", client_address)
            try:
                conn.setblocking(False)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
            except OSError as e:  # already reset, say
                log.info("dropping %s: %s", client_address, e)
                conn.close()
                continue
            self.inputs.add(conn)
            self.message_queues[conn] = bytearray()
            self._sync(conn)

    def _receive(self, s: socket.socket) -> None:
        try:
            data = s.recv(self.recv_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:  # reset, timeout, ...: this connection only
            log.info("closing %s after receive error: %s", _peer(s), e)
            self._close(s)
            return
        queue = self.message_queues[s]
        if not data:
            # The client has shut down its sending side: flush, then close.
            self.finished.add(s)
            self.inputs.discard(s)
            if not queue:
                self._close(s)
            else:
                self._sync(s)
            return
        queue += data.upper()
        # Try to send right away: usually it all goes and no write interest
        # is ever registered.  _send() updates the registration.
        self._send(s)

    def _send(self, s: socket.socket) -> None:
        queue = self.message_queues[s]
        try:
            sent = s.send(queue)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as e:
            log.info("closing %s after send error: %s", _peer(s), e)
            self._close(s)
            return
        del queue[:sent]
        if queue:
            self.outputs.add(s)
            if len(queue) >= self.backlog_limit:
                self.inputs.discard(s)  # backpressure: read again once drained
        else:
            self.outputs.discard(s)
            if s in self.finished:
                self._close(s)
                return
            self.inputs.add(s)  # (again) room for more echo: read
        self._sync(s)

    def _close(self, s: socket.socket) -> None:
        log.debug("closing %s", _peer(s))
        if s in self._registered:
            self.selector.unregister(s)
            del self._registered[s]
        self.inputs.discard(s)
        self.outputs.discard(s)
        self.finished.discard(s)
        del self.message_queues[s]
        s.close()

    def close(self) -> None:
        """Close every connection, the listening socket and the selector."""
        for s in list(self.message_queues):
            self._close(s)
        if self.server.fileno() != -1:
            self.selector.unregister(self.server)
        self.server.close()
        self.inputs.clear()
        self.selector.close()
        self._spare.close()


def _peer(s: socket.socket) -> str:
    try:
        host, port = s.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return f"fd {s.fileno()}"


def raise_nofile_limit() -> tuple[int, int]:
    """Raise RLIMIT_NOFILE's soft limit to its hard limit; return (old, new) soft."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        # Linux refuses an infinite open-files limit; fs.nr_open is the ceiling.
        try:
            with open("/proc/sys/fs/nr_open") as f:
                target = int(f.read())
        except (OSError, ValueError):
            target = 1024 * 1024
    if soft != resource.RLIM_INFINITY and soft >= target:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as e:
        log.warning("could not raise the open-files limit from %d to %d: %s", soft, target, e)
        return soft, soft
    return soft, target


def main(argv: list[str] | None = None) -> int:
    def start(host: str, port: int) -> SelectorsEchoServer:
        # Called by _cli.run once logging is configured, before binding.
        old, new = raise_nofile_limit()
        if new != old:
            log.info("raised the open-files limit (RLIMIT_NOFILE) from %d to %d", old, new)
        else:
            log.info("open-files limit (RLIMIT_NOFILE) is %d", new)
        return SelectorsEchoServer(host, port)

    return _cli.run(
        start,
        description="An uppercase echo server on selectors (epoll): no FD_SETSIZE limit.",
        default_port=10000,
        argv=argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
