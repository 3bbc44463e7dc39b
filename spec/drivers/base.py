"""What the checker needs from a driver, whatever runs the server.

The state machine (spec/machine.py) asks a driver only what `Driver`
declares here: start the server, connect a client, *settle* (let the server
work while the clients pump, until nothing more is owed or the server has
done all it will do), and the verdicts only the driver can see: the server
died, it blocked, it still holds an ended connection.  `InProcessDriver`
answers by stepping the server's own loop; `ProcessDriver` from outside the
process, with the kernel as witness.
"""

from __future__ import annotations

import abc
import contextlib
import socket
from collections.abc import Callable, Iterator, Sequence

from spec.drivers.clients import Client
from spec.drivers.facts import ServerDied, StillHeld

HOST = "127.0.0.1"
#: Default seconds a process-driven server that never comes to rest has for
#: anything the checker awaits (--echo-settle).
DEFAULT_SETTLE = 2.0


class Driver(abc.ABC):
    #: Shown in reports: what is being checked.
    target: str
    #: Where the server listens; set by `start()`.
    address: tuple[str, int]
    #: Seconds without a write after which a flooding client counts as backed
    #: up; None: `settle()` itself returns once the server has done all it
    #: will do, so a flood still pending then has backed up.
    flood_stall: float | None = None
    #: The largest flood worth sending: more than every buffer between a client
    #: and the server holds (None: the machine's own sizes are all needed).
    flood_limit: int | None = None
    #: What the machine's "backs up" flood (`machine.BACKS_UP`) sends here: a
    #: size that fills every buffer between the server and a client that does
    #: not read (None: the machine's own size is right).
    flood_backs_up: int | None = None
    #: The most the buffers between the server and a client that does not
    #: read can hold here, where they are far larger than the machine's sizes
    #: assume: added to each smaller flood, so it leaves at least as much echo
    #: waiting in the server as with the sizes they assume (0: made for this
    #: driver's buffers).
    flood_base: int = 0
    #: Clients acknowledge what they read at once (TCP_QUICKACK), so that no
    #: delayed ACK holds the server's next send back.
    quickack: bool = False
    #: Can the machine run the server out of descriptors (`descriptors_exhausted`)?
    can_exhaust_descriptors: bool = False
    #: The last settle was cut off while the server kept handling events that
    #: moved nothing (a busy loop).
    spinning: bool = False
    #: A settle of this program ended without the server coming to rest: the
    #: clock judged it (a server that never sleeps; the report says so).
    restless: bool = False

    @abc.abstractmethod
    def start(self) -> None:
        """Start the server; raise a user-facing error if it cannot start."""

    @abc.abstractmethod
    def connect(self) -> socket.socket:
        """A socket connected to the server (connect errors propagate)."""

    @abc.abstractmethod
    def settle(self, clients: Sequence[Client], done: Callable[[], bool]) -> None:
        """Let the server run and the clients pump until `done()`, or until the
        server has done everything it will do without a client acting (or a
        bound for a server that never stops working)."""

    @abc.abstractmethod
    def crash(self, wait: bool = False) -> ServerDied | None:
        """Whether the server has died (or raised): None while it lives.

        `wait`: something looks wrong, so give a dying server time to be seen dead.
        """

    def blocked(self) -> str | None:
        """A description if the last settle caught the server blocked inside one
        call while a client was owed echo (ECHO-7)."""
        return None

    @abc.abstractmethod
    def leaks(self, ended: Sequence[Client], live: int) -> StillHeld | ServerDied | None:
        """What the server still holds for `ended`, if anything (or that it died
        while the driver waited to see).

        `live` is how many connections the server may legitimately hold.
        """

    @contextlib.contextmanager
    def descriptors_exhausted(self) -> Iterator[None]:
        """Inside: the server has no descriptor left (only if `can_exhaust_descriptors`)."""
        raise NotImplementedError(f"{type(self).__name__} cannot exhaust descriptors")
        yield  # pragma: no cover

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Inside: the server runs nothing, so clients can act while it is busy.

        A client that sends and resets before the server has read its bytes
        races the server in real life; with the server frozen that race has one
        outcome: it wakes with the bytes queued and the end already arrived.
        A stepped server runs only inside `settle()`: nothing to do.
        """
        yield

    def environment(self) -> dict[str, object]:
        """How the server was run and judged, for the report."""
        return {}

    @abc.abstractmethod
    def close(self) -> StillHeld | None:
        """Release everything: the server, its process, its sockets.

        What closing the server itself left held (it raised, or left
        descriptors open), if anything; the ECHO-6 machine judges it.
        """
