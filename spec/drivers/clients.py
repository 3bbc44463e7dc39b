"""The checker's clients: real non-blocking loopback sockets tied to the model.

A `Client` never blocks.  The drivers call `pump()` repeatedly while they let
the server run; each call sends what the kernel will take of the client's
pending bytes and, if the client is reading, reads what has arrived, feeding
both to the client's `model.Connection`.  The first divergence is kept in
`violation` (the pump never raises for protocol errors) so that the checker
can decide what it means, e.g. whether the server died first.

Sockets are TCP_NODELAY so that the kernel never holds small segments back
on a timer (Nagle); on loopback every byte a client sends is then in the
server's receive queue by the time send() returns.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Iterable

from spec.drivers import witness
from spec.model import ClientState, Connection, Violation

RECV_SIZE = 256 * 1024
#: Fixed socket buffers (set before connect, so the window scale fits them):
#: a few MiB from a non-reading client then overrun the kernel's buffers, and
#: the kernel does not grow them on its own timers.
BUFFER_SIZE = 256 * 1024
#: At most this many recv() calls per pump, so one client cannot hog a round.
MAX_READS_PER_PUMP = 8
_LINGER_ABORT = struct.pack("ii", 1, 0)


def connect(
    address: tuple[str, int],
    timeout: float,
    *,
    new_socket: Callable[..., socket.socket] = socket.socket,
    fixed_buffers: bool = True,
) -> socket.socket:
    """A socket connected to `address`.

    `new_socket` makes it (in the network the server runs in);
    `fixed_buffers` gives it the checker's buffer sizes (not needed where the
    network fixes them, see spec.drivers.network).
    """
    sock = new_socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if fixed_buffers:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER_SIZE)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER_SIZE)
        sock.settimeout(timeout)
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


class Client:
    def __init__(
        self,
        name: str,
        sock: socket.socket,
        others: Callable[[], Iterable[bytes]],
        *,
        quickack: bool = False,
    ) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.name = name
        self.sock = sock
        self.local_address = sock.getsockname()
        self.model = Connection(name)
        #: Chunks still to be written, each with its own send() call.
        self.pending: list[memoryview] = []
        self.violation: Violation | None = None
        #: Open or half-closed: the socket is still ours to use.
        self.active = True
        #: When the kernel last took bytes from this client (flood back-up detection).
        self.last_write = time.monotonic()
        #: The last send() found the socket's buffer full (EAGAIN).
        self.write_blocked = False
        #: Acknowledge what is read at once (TCP_QUICKACK), not on the delayed-ACK timer.
        self.quickack = quickack
        self._others = others

    def __repr__(self) -> str:
        return self.name

    # -- what the state machine does --------------------------------------------

    def queue(self, data: bytes, writes: int = 1) -> None:
        """Arrange for `data` to be sent in `writes` send() calls."""
        step = max(1, -(-len(data) // max(1, writes)))
        view = memoryview(data)
        self.pending.extend(view[i : i + step] for i in range(0, len(data), step))

    def flush(self) -> None:
        """Write what the kernel takes of the pending bytes now (no server round between)."""
        while self.pending and self._write():
            pass

    def half_close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server has already reset the connection
            self._reset()
        self.model.state = ClientState.HALF_CLOSED

    def abort(self) -> None:
        """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ABORT)
        self.sock.close()
        self.model.state = ClientState.ABORTED
        self.active = False
        self.pending.clear()

    def close(self) -> None:
        """An ordinary close (an RST if echo is still unread: the kernel's choice)."""
        self.sock.close()
        self.model.state = ClientState.CLOSED
        self.active = False
        self.pending.clear()

    @property
    def expects_more(self) -> bool:
        """True while a reading client is owed echo or, after half-close, EOF."""
        m = self.model
        if not self.active or not m.reading or m.reset or self.violation:
            return False
        if self.pending or m.outstanding:
            return True
        return m.half_closed and not m.eof

    # -- I/O --------------------------------------------------------------------

    def pump(self) -> bool:
        """Do the I/O possible right now; return True if any byte moved."""
        if not self.active or (self.violation and not self.model.gathering):
            return False
        progress = self._write() if self.pending and not self.violation else False
        if self.model.reading:
            progress |= self.read(RECV_SIZE * MAX_READS_PER_PUMP)
        return progress

    def _write(self) -> bool:
        m = self.model
        if m.reset or m.state is not ClientState.OPEN:
            return False
        chunk = self.pending[0]
        try:
            n = self.sock.send(chunk)
        except (BlockingIOError, InterruptedError):
            self.write_blocked = True
            return False
        except OSError:  # reset or broken pipe: the server's doing
            self._reset()
            return True
        m.record_sent(bytes(chunk[:n]))
        self.last_write = time.monotonic()
        self.write_blocked = False
        if n == len(chunk):
            self.pending.pop(0)
        else:
            self.pending[0] = chunk[n:]
        return n > 0

    def _reset(self) -> None:
        """The server reset the connection: diagnose it (ECHO-2, or ECHO-4)."""
        self.model.reset = True
        self.pending.clear()
        self.violation = self.violation or self.model.diagnose(others=self._others())

    def read(self, limit: int) -> bool:
        """Read up to `limit` bytes that have already arrived."""
        m = self.model
        progress = False
        while limit > 0 and not (m.eof or m.reset or (self.violation and not m.gathering)):
            try:
                data = self.sock.recv(min(limit, RECV_SIZE))
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._reset()
                return True
            progress = True
            if self.quickack:
                witness.quickack(self.sock)
            if not data:
                m.eof = True
                self.violation = m.diagnose(others=self._others())
                break
            limit -= len(data)
            self.violation = m.record_received(data, self._others)
        return progress
