"""How fast a server echoes, so that what a program sends fits the budget.

Design note
-----------
A flood must be larger than every buffer between the client and the server,
or nothing backs up; beyond that, its size only sets how long the server
takes to echo it.  A server that writes 16 bytes per call echoes a 1 MiB
flood in tens of seconds, and its check then runs two programs in its budget
where a fast server runs forty.  So before the programs, `probe()` times one
echo of `PROBE` bytes, and `volume_limit()` sizes floods and large sends to
what the server echoes in about `SECONDS`, never below what backs up
(`floor`, the private network's buffers several times over) nor above what
the driver would send anyway (`ceiling`).  The limit is a power of two, so a
busy machine seldom changes it; it is fixed for the whole check, and every
program prints the sizes it sent, so a replay sends the same bytes.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Callable

#: Bytes the probe sends (digits: every transform this suite knows leaves
#: them alone, and only their count is judged).
PROBE = 256 * 1024
#: The most seconds the probe waits for its echo.
PROBE_SECONDS = 2.0
#: Seconds of the server's echo one flood or large send should take.
SECONDS = 0.5
#: The smallest flood: twice what the private network's four buffers between
#: a client and the server hold (32 KiB each), so a flood still backs up.
FLOOR = 256 * 1024


def probe(
    connect: Callable[[], socket.socket], *, size: int = PROBE, timeout: float = PROBE_SECONDS
) -> float | None:
    """Bytes per second `connect()`'s server echoed `size` bytes at; None if
    it echoed nothing within `timeout` (the checks will say why)."""
    try:
        sock = connect()
    except OSError:
        return None
    try:
        sock.setblocking(False)
        data = memoryview(b"0123456789" * (size // 10 + 1))[:size]
        sent = received = 0
        start = time.monotonic()
        deadline = start + timeout
        while received < size:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            readable, writable, _ = select.select([sock], [sock] if sent < size else [], [], left)
            if writable:
                with contextlib.suppress(BlockingIOError):
                    sent += sock.send(data[sent : sent + 65536])
            if readable:
                try:
                    chunk = sock.recv(65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    break
                received += len(chunk)
        elapsed = time.monotonic() - start
    except OSError:
        return None
    finally:
        sock.close()
    return received / elapsed if received and elapsed > 0 else None


def volume_limit(pace: float | None, *, floor: int, ceiling: int) -> int:
    """The most bytes one step should send to a server echoing `pace` bytes/s."""
    if pace is None:
        return ceiling
    want = int(pace * SECONDS)
    power = 1 << max(0, want.bit_length() - 1)  # the power of two at or below
    return max(floor, min(ceiling, power))
