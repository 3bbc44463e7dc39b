"""What the checker needs from a driver, whatever runs the server.

The state machine only ever asks a driver five things: start the server,
connect a client, *settle* (let the server work while the clients pump, until
nothing more is owed or nothing more will happen), say whether the server has
died, and say whether the server still holds anything for connections that
have ended.  `InProcessDriver` answers by stepping the server's own loop;
`ProcessDriver` answers from outside the process with psutil and the clock.
"""

from __future__ import annotations

import abc
import socket
from collections.abc import Callable, Sequence

from spec.drivers.clients import Client
from spec.model import Violation

HOST = "127.0.0.1"


class Driver(abc.ABC):
    #: Shown in reports: what is being checked.
    target: str
    address: tuple[str, int]
    #: After each settle, prove with a round trip on a spare connection that
    #: the server has processed everything before it (see ProcessDriver).
    barrier: bool = False
    #: Without a barrier: seconds without a write after which a flooding
    #: client counts as backed up (a driver without a barrier must set it).
    flood_stall: float
    #: Can the machine run the server out of descriptors (InProcessDriver)?
    can_exhaust_descriptors: bool = False

    @abc.abstractmethod
    def start(self) -> None:
        """Start the server; raise a user-facing error if it cannot start."""

    def mark_baseline(self, connections: int) -> None:  # noqa: B027 (optional hook)
        """The server now holds only `connections` clients: remember its resources."""

    @abc.abstractmethod
    def connect(self) -> socket.socket:
        """A socket connected to the server (connect errors propagate)."""

    @abc.abstractmethod
    def settle(self, clients: Sequence[Client], done: Callable[[], bool]) -> None:
        """Let the server run and the clients pump until `done()` or quiescence."""

    @abc.abstractmethod
    def crash(self, wait: bool = False) -> Violation | None:
        """An ECHO-5 violation if the server has died (or raised), else None.

        `wait`: something looks wrong, so give a dying server time to be seen dead.
        """

    def blocked(self) -> str | None:
        """A description if the server was caught blocking inside one step."""
        return None

    @abc.abstractmethod
    def leaks(self, ended: Sequence[Client], live: int) -> Violation | None:
        """An ECHO-6 violation if the server still holds something for `ended`.

        `live` is how many connections the server may legitimately hold.
        """

    @abc.abstractmethod
    def close(self) -> Violation | None:
        """Release everything: the server, its process, its sockets.

        An ECHO-6 violation if closing the server itself went wrong (it raised,
        or left descriptors open); the ECHO-6 machine reports it.
        """
