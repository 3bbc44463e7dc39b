"""ECHO-8, ECHO-9 and ECHO-10 defects: memory, idle CPU, capacity.

These show in measurements of the server running as a process
(`spec.measure`), which the checker does with ``python -m spec.drivers.run_impl``,
except the descriptor limit (EMFILE), which the in-process machine provokes.
"""

from __future__ import annotations

import logging
import socket
import sys

from impl.select_server import SelectEchoServer

log = logging.getLogger("impl.zoo.resources")


class NoBackpressureServer(SelectEchoServer):
    """Reads from every readable client however much echo it already owes (no
    backlog limit): a client that sends without reading makes its queue, and the
    server's memory, grow without bound. Breaks ECHO-8."""

    backlog_limit = sys.maxsize  # the defect: never stop reading


class ZeroTimeoutServer(SelectEchoServer):
    """Calls ``select.select(inputs, outputs, [], 0)`` ("so the loop never blocks"):
    with nothing to do, select returns at once and the loop spins at 100% CPU.
    Breaks ECHO-9."""

    def poll(self, timeout: float | None = 0.0) -> int:
        return super().poll(0)  # the defect: the timeout is thrown away


class StaysInOutputsServer(SelectEchoServer):
    """Never takes a socket out of ``outputs`` once its queue is empty: an idle
    connection is always writable, so select() returns at once, every round, for
    ever. Breaks ECHO-9."""

    #: The seed's way, where this bug lives: every echo waits in the queue.
    send_at_once = False

    def after_flush(self, s: socket.socket) -> None:
        # the defect: no `self.outputs.remove(s)`
        if s in self.finished:
            self.close_connection(s)
        elif s not in self.inputs:
            self.inputs.append(s)


class NoFdSetSizeGuardServer(SelectEchoServer):
    """Accepts every connection: once one lands on descriptor >= FD_SETSIZE (1024),
    select() raises "filedescriptor out of range in select()" and the whole
    server dies, with every connection. Breaks ECHO-10 (and ECHO-5)."""

    max_fd = sys.maxsize  # the defect: no FD_SETSIZE guard


class ListenBacklogOneServer(SelectEchoServer):
    """``server.listen(1)`` copied from a one-client example: in a burst of
    connections the kernel queues two and drops the others' SYNs, so they connect
    only after SYN retransmissions (1 s, 3 s, 7 s, ...). Breaks ECHO-10."""

    listen_backlog = 1  # the defect


class LogAcceptErrorsServer(SelectEchoServer):
    """Catches accept() errors, logs them and carries on: out of descriptors
    (EMFILE) the pending connection stays queued, so the listening socket stays
    readable and the loop spins at full CPU, logging, while that client hangs.
    Breaks ECHO-10 (and ECHO-9, by the spin)."""

    def out_of_descriptors(self) -> None:
        log.warning("accept() failed: out of file descriptors")  # the defect: refuses nothing
