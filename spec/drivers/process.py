"""Drive any server, in any language, as a process: black-box, with psutil.

Design note
-----------
From outside, the checker cannot step the server, so every judgement that
involves time is an *eventual* one with an explicit bound, `settle` seconds:
"the echo arrives", "the server releases the ended connection".  The driver
polls the condition and returns as soon as it holds, so a correct server is
checked at its own speed and only a failing check waits the whole bound.  A
verdict therefore flips only if a correct server needs longer than `settle`
(raise ``--settle`` on a slow machine), never with the order of events.

A server that dies is one failure (ECHO-5), whatever socket error each client
happened to see first: before any violation is reported, `crash()` gives the
process `death_grace` seconds to finish dying, so a replay classifies it the
same way.

Cleanup (ECHO-6) is judged over the server's whole process tree (forking
servers exist): no connection to an ended client's address in any state, and
no more sockets than the baseline (taken after the first barrier round trip)
plus the connections not yet ended; the connections themselves (a socket left
in CLOSE_WAIT) are listed to explain a failure.

Ordering: a step's events reach a single-threaded server in one select()
round, but their consequences (e.g. dropping a socket from `outputs` once its
queue is empty) can take another round.  So after each settle the machine
makes one round trip on a dedicated *barrier* connection (`barrier = True`):
when its echo is back, the server has finished the rounds the step caused,
and the next step meets it in the same state every time.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable, Sequence

from spec.drivers.base import Driver
from spec.drivers.clients import Client, connect
from spec.drivers.server_process import ServerProcess, ServerSupply
from spec.model import Violation


class ProcessDriver(Driver):
    #: The machine makes a barrier round trip after every settle.
    barrier = True
    #: Seconds a dying server gets to be seen dead before a violation is classified.
    death_grace = 0.5
    #: Seconds between two looks at the server's descriptors and connections.
    leak_poll_interval = 0.005

    def __init__(self, command: str, *, settle: float = 2.0, target: str | None = None,
                 supply: ServerSupply | None = None) -> None:
        self.command = command
        self.settle_time = settle
        self.target = target or command
        #: Where started servers come from (one launched in advance), if given.
        self.supply = supply
        self.process: ServerProcess | None = None
        self.baseline_sockets = 0

    def start(self) -> None:
        if self.supply is not None:
            self.process = self.supply.take()
        else:
            self.process = ServerProcess(self.command)
            self.process.start()
        self.address = self.process.address

    def mark_baseline(self, connections: int) -> None:
        """Take the descriptor baseline now, with `connections` clients connected.

        Called after the first barrier round trip: by then a single-threaded
        server has also released the start-up probe's connection.
        """
        self.baseline_sockets = self.process.num_sockets() - connections

    def connect(self) -> socket.socket:
        return connect(self.address, self.settle_time)

    def settle(self, clients: Sequence[Client], done: Callable[[], bool]) -> None:
        last_progress = time.monotonic()
        while True:
            moved = False
            for c in clients:
                moved |= c.pump()
            if done():
                return
            now = time.monotonic()
            if moved:
                last_progress = now
            elif now - last_progress > self.settle_time or not self.process.alive:
                return
            else:
                self._wait_for_io(clients, min(0.01, self.settle_time))

    @staticmethod
    def _wait_for_io(clients: Sequence[Client], timeout: float) -> None:
        readers = [c.sock for c in clients if c.active and c.model.reading
                   and not (c.model.eof or c.model.reset or c.violation)]
        writers = [c.sock for c in clients if c.active and c.pending]
        if readers or writers:
            select.select(readers, writers, [], timeout)
        else:
            time.sleep(timeout)

    # -- verdicts ------------------------------------------------------------------

    def crash(self, wait: bool = False) -> Violation | None:
        if self.process is None or self.process.process is None:
            return None
        if not self.process.wait_dead(self.death_grace if wait else 0):
            return None
        tail = self.process.stderr_tail()
        return Violation("ECHO-5", f"the server died ({self.process.exit_description()})"
                         + (f"; its stderr ends with:\n{tail}" if tail else ""))

    def _connections_to(self, addresses: set[tuple[str, int]]) -> list[str]:
        found = []
        for conn in self.process.connections():
            if conn.raddr and (conn.raddr.ip, conn.raddr.port) in addresses:
                found.append(f"{conn.status} {conn.laddr.ip}:{conn.laddr.port} -> "
                             f"{conn.raddr.ip}:{conn.raddr.port}")
        return found

    def _eventually(self, condition: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + self.settle_time
        while not condition():
            if time.monotonic() > deadline or not self.process.alive:
                return False
            time.sleep(self.leak_poll_interval)
        return True

    def leaks(self, ended: Sequence[Client], live: int) -> Violation | None:
        # Counting sockets is cheap; listing connections parses the whole
        # system's TCP table, so it only explains a failure.  A socket kept for
        # an ended client is one socket over the limit.
        limit = self.baseline_sockets + live
        if self._eventually(lambda: self.process.num_sockets() <= limit):
            return None
        addresses = {tuple(c.local_address[:2]) for c in ended}
        if not self.process.alive:
            return self.crash(wait=True)
        held = self._connections_to(addresses)
        if held:
            return Violation("ECHO-6", f"{self.settle_time:g} s after the connection ended the "
                             f"server still holds it: {'; '.join(held)}",
                             connection=", ".join(c.name for c in ended))
        return Violation("ECHO-6", f"{self.settle_time:g} s after a connection ended the "
                         f"server holds {self.process.num_sockets()} sockets; expected at most "
                         f"{limit} (baseline {self.baseline_sockets} + {live} open connections): "
                         "a leaked socket (e.g. one reset by its client and never closed)",
                         connection=", ".join(c.name for c in ended))

    def close(self) -> None:
        # Nothing to judge: the process is simply ended.
        process, self.process = self.process, None
        if process is not None and self.supply is not None:
            self.supply.give_back(process)
        elif process is not None:
            process.close()
