"""Looking at a server process from outside: its threads and its connections, at one moment.

A `Looker` follows one server process and the program's connections to it.
`look()` reads every thread of the process tree (/proc), then both ends of
every connection (sock_diag, in one netlink request), then the threads again,
and returns a `Look`: the facts the process driver's rest is decided from
(`Look.conclusive`; the argument for it is the design note of
`spec.drivers.process`).  A Looker also remembers what it saw of each
connection across looks (when its server end left the kernel's table, the
inode it had), since a reset is judged by what came before it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

from spec.drivers import sock_diag, threads, witness
from spec.drivers.clients import Client
from spec.drivers.network import PrivateNetwork
from spec.drivers.server_process import ServerProcess, socket_descriptors

Ends = tuple[sock_diag.TcpSocket | None, sock_diag.TcpSocket | None]


def _shape(end: sock_diag.TcpSocket | None) -> tuple[object, ...] | None:
    return None if end is None else (end.state, end.rqueue, end.wqueue, end.bytes_in, end.bytes_out)


@dataclass(frozen=True)
class Look:
    """The server's threads and every connection of the program (both ends) at one moment."""

    threads: tuple[threads.Thread, ...]
    #: (client's end, server's end) of each connection the program made, ended ones too.
    connections: tuple[Ends, ...]
    #: The threads were read before the sockets too, and had not changed (none ran).
    unchanged: bool = False
    #: A connection's server end has gone from the kernel's table less than
    #: `Looker.first_pause` ago (what unhashed it may still be waking the server).
    just_gone: bool = False
    #: Bytes have arrived for a reading client since its last pump: pump again.
    unread: bool = False

    @property
    def conclusive(self) -> bool:
        """Does this one look prove the server at rest?  (The design note says why.)"""
        return (
            self.unchanged
            and not self.just_gone
            and not self.unread
            and all(t.waits_for_events for t in self.threads)
            # Without schedstat a thread that ran and slept again looks unchanged.
            and all(t.runs >= 0 or t.state in "ZX" for t in self.threads)
            and not self.in_flight
            and not any(
                # The server's end gone, the client's not: the server reset it
                # and the reset is on its way (or a handshake is being completed).
                s is None and c is not None and c.state is not sock_diag.TcpState.TIME_WAIT
                for c, s in self.connections
            )
            and all(
                s is None
                or (
                    s.rqueue == 0
                    and s.state not in (sock_diag.TcpState.CLOSE_WAIT, sock_diag.TcpState.CLOSE)
                )
                for _, s in self.connections
            )
        )

    def same(self, other: Look) -> bool:
        return [(t.tid, t.state, t.runs) for t in self.threads] == [
            (t.tid, t.state, t.runs) for t in other.threads
        ] and [(_shape(c), _shape(s)) for c, s in self.connections] == [
            (_shape(c), _shape(s)) for c, s in other.connections
        ]

    @property
    def on_a_timer(self) -> bool:
        return any(t.on_a_timer for t in self.threads)

    @property
    def asleep(self) -> bool:
        return all(t.asleep for t in self.threads)

    @property
    def in_flight(self) -> bool:
        """Will the kernel still move something on its own (softirqs, timers)?

        Data, an acknowledgement, a FIN or a reset that one end sent and the
        other has not yet taken (sock_diag.in_flight).  The private network
        has no delayed ACKs (see spec.drivers.network).
        """
        return any(sock_diag.in_flight(c, s) for c, s in self.connections)

    def resending(self, waited: float) -> bool:
        """Will the kernel send queued bytes, on a timer, to an end that takes them?

        An end whose owner did not read can drop segments it had advertised
        room for (its memory runs out first), and a sender facing a closed
        window waits for its zero-window probe; either timer backs off, up to
        `sock_diag.RTO_MAX` (`sock_diag.will_resend`).  `waited`: seconds
        waited for it so far.
        """
        return waited <= sock_diag.RTO_MAX and any(
            sock_diag.will_resend(c, s) or sock_diag.will_resend(s, c) for c, s in self.connections
        )


class Looker:
    """The kernel's view of one server process and of the program's connections to it."""

    def __init__(
        self,
        process: ServerProcess,
        address: tuple[str, int],
        network: PrivateNetwork | None,
        first_pause: float,
    ) -> None:
        self.process = process
        self.address = address
        self.network = network
        #: Seconds a server end must have been gone before its disappearance
        #: counts as settled (`Look.just_gone`).
        self.first_pause = first_pause
        #: Every client of the program so far, ended ones too: a reset or FIN
        #: they sent may still be on its way to the server.
        self.known: dict[str, Client] = {}
        #: Client name -> when its server end was first seen gone from the kernel's table.
        self._gone_since: dict[str, float] = {}
        #: Client name -> the inode of its server end when last seen (0: no descriptor).
        self.last_inode: dict[str, int] = {}
        self._netlink: socket.socket | None = None
        self._watcher: threads.Watcher | None = None

    def follow(self, clients: Sequence[Client]) -> None:
        """Look at these clients' connections too, from the next look on."""
        for c in clients:
            if self.known.get(c.name) is not c:  # a new connection (a name can be reused)
                self._gone_since.pop(c.name, None)
                self.last_inode.pop(c.name, None)
                self.known[c.name] = c

    def threads(self) -> tuple[threads.Thread, ...] | None:
        """Every thread of the server's tree now (none once it has exited); None if unreadable."""
        if not self.process.alive:
            return ()
        if self._watcher is None:
            assert self.process.process is not None
            self._watcher = threads.Watcher(self.process.process.pid)
        return self._watcher.look()

    def look(self) -> Look | None:
        """The server's threads and sockets now; None if the kernel cannot be asked.

        The threads are read twice, before and after the sockets: `Look.unchanged`
        says no thread ran in between (see the design note).
        """
        before = self.threads()
        if before is None:
            return None
        known = list(self.known.values())
        try:
            found = self.lookup_many(
                [(c.local_address, self.address) for c in known]
                + [(self.address, c.local_address) for c in known]
            )
        except (OSError, ValueError):  # struct.error is a ValueError
            return None
        connections = tuple(zip(found[: len(known)], found[len(known) :], strict=True))
        now = time.monotonic()
        just_gone = unread = False
        held: set[int] | None = None  # inodes the server's processes hold (read if needed)
        for c, (client_end, server_end) in zip(known, connections, strict=True):
            m = c.model
            if (
                client_end is not None
                and client_end.rqueue
                and c.active
                and m.reading
                and not (m.eof or m.reset or c.violation)
            ):
                unread = True  # the next pump will take it
            if server_end is not None:
                self._gone_since.pop(c.name, None)
                self.last_inode[c.name] = server_end.inode
                continue
            since = self._gone_since.setdefault(c.name, now)
            if now - since < self.first_pause:
                # Gone just now.  Whatever unhashed it (a reset) also wakes the
                # descriptor's owner, a moment later: unless no descriptor
                # referred to it when it was last seen (the server had closed
                # it), or none refers to it now (the server has reacted).
                inode = self.last_inode.get(c.name)
                if inode is None or inode:
                    if held is None and inode:
                        held = self.held_inodes()
                    if inode is None or held is None or inode in held:
                        just_gone = True
            elif not c.active and (
                client_end is None or client_end.state is sock_diag.TcpState.TIME_WAIT
            ):
                # Ended, both ends gone (or the client's in TIME_WAIT): it will
                # not change again; stop looking it up.
                del self.known[c.name]
                del self._gone_since[c.name]
                self.last_inode.pop(c.name, None)
        seen = self.threads()  # last: after the sockets and the descriptors
        if seen is None:
            return None
        unchanged = [(t.tid, t.state, t.runs) for t in before] == [
            (t.tid, t.state, t.runs) for t in seen
        ]
        return Look(seen, connections, unchanged, just_gone, unread)

    def held_inodes(self) -> set[int] | None:
        """The socket inodes any process of the server's tree holds a descriptor on."""
        if self._watcher is None:
            return None
        return {inode for pid in self._watcher.pids() for inode in socket_descriptors(pid)}

    def _netlink_socket(self) -> socket.socket:
        if self._netlink is None:
            new_socket = self.network.socket if self.network else socket.socket
            self._netlink = witness.open_netlink(new_socket)
            if self._netlink is None:
                raise OSError("sock_diag cannot be asked")
        return self._netlink

    def lookup_many(
        self, ends: list[tuple[tuple[str, int], tuple[str, int]]]
    ) -> list[sock_diag.TcpSocket | None]:
        """The sockets with these (local, remote) ends, asked in one request."""
        return sock_diag.lookup_many(self._netlink_socket(), ends) if ends else []

    def lookup(self, local: tuple[str, int], remote: tuple[str, int]) -> sock_diag.TcpSocket | None:
        """The socket with these ends, asked of the kernel of the server's network."""
        return sock_diag.lookup(self._netlink_socket(), local, remote)

    def close(self) -> None:
        """Close the netlink socket and the /proc files held open."""
        if self._netlink is not None:
            self._netlink.close()
            self._netlink = None
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
