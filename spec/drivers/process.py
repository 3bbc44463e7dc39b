"""Drive any server, in any language, as a process: black-box, with the kernel as witness.

Design note
-----------
From outside, the checker cannot step the server, so it must know another
way when the server has done everything a step caused.  The clock cannot
tell (a loaded machine delays a correct server past any fixed wait); the
kernel can.  After a step the driver pumps its clients until no byte moves,
then *looks* (`spec.drivers.looking`): at every thread of the server's
process tree (/proc: asleep or runnable, how often it has run, the system
call it sleeps in), at both ends of every connection of the program (sock_diag: state, queues, bytes
in and out, unacknowledged segments; all of them in one netlink request), and
at the threads again.  Only at rest are "echo lost", "no EOF" and "still
held" judged: a loaded machine makes a check slower, never wrong.

One look proves the server at rest (`Look.conclusive`) when

(a) the threads were the same before and after the sockets were read (none
    ran in between: the same threads, each scheduled as often), and each is
    asleep where only an event wakes it (select, poll or epoll; wait4 for an
    init or a launcher) or is dead;
(b) nothing is in flight on any connection (`sock_diag.in_flight`): every
    byte sent received, every segment acknowledged, no FIN or handshake on
    its way, and no end gone while the other is not (a reset on its way);
(c) the server's ends hold nothing unread: no byte queued (rqueue 0), no
    EOF or reset not yet taken (CLOSE_WAIT, CLOSE);
(d) no server end left the kernel's table less than `first_pause` ago while
    a descriptor of the server may still refer to it;
(e) nothing has arrived for a reading client since its pump, and one more
    pump after the look moves nothing.

Why that is enough.  A thread asleep in a readiness wait is woken by an
event only: a descriptor becoming ready, a child changing state, a signal,
or its own timeout (a server's timers are beyond any look, one or two).  A
socket becomes ready when the kernel processes a packet for it, and only a
packet on its way can be processed: (b) says none is, as both ends count
what each sent and received.  The kernel fills in tcp_info holding the
socket's lock (`tcp_get_info`), the lock under which it processes a packet
for that socket *and wakes its waiters*; so a packet being processed when a
socket is asked has been processed, wake-ups included, by the time the
answer is made, and a thread it woke shows as runnable, or as having run,
in the second reading of the threads (a).  A thread woken before the first
reading and asleep again by then has finished what it was woken for, and
what it sent is seen in (b) or (e).  Nothing else acts: the clients are
ours and idle.  (c) and (d) are margin where a counter does not show a
transition: a readable socket is a wake-up some server may still owe, and a
socket a reset has just unhashed wakes its owner a moment after it leaves
the table (unless nothing refers to it any more: the server has already
closed it, which (a) says happened before the first reading).

Where one look cannot prove it (a thread asleep in a blocking recv or send,
a futex or a sleep; a server leaving bytes unread while a flood backs up; a
connection just reset) the rule is two consecutive looks at least
`first_pause` apart that are the same, every thread asleep, and nothing in
flight.  Bytes in flight move on the kernel's own timers
(delayed ACKs), so a look that stays the same while they are in flight is
accepted only after `stall` seconds, or, when the kernel will send bytes on
a timer of its own (segments an end dropped while its owner did not read; a
zero-window probe whose receiver has since been read empty), once the
receiver has them (`Look.resending`: the timers back off, up to two minutes).  A server
that never comes to rest (a busy loop) is judged when no byte has moved for
`settle` seconds, as a clock-based checker would; `environment()` says
which way verdicts were made.

At rest, with a client still owed echo, the looks also say *where* the
server sleeps.  If no thread waits for readiness (select, poll, epoll) or
works on the owed client's connection, and one is asleep in a call on
another connection (a blocking send() to a client that does not read), the
server is starving the owed client: ECHO-7, at once (`blocked()`).

Cleanup (ECHO-6) is exact: the driver notes, for each client, the inode of
the server's socket for that connection (sock_diag, by the client's port),
and an ended connection is still held exactly when a descriptor of a process
in the server's tree still refers to that inode.  Forking servers,
socketpairs, log files and listeners do not count; a CLOSE_WAIT socket, a
descriptor a reset connection never had closed, a dup() do.

A server that dies is one failure (ECHO-5), whatever socket error each client
happened to see first: `crash()` gives the process `death_grace` seconds to
finish dying, so a replay classifies it the same way.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import time
from collections.abc import Callable, Iterator, Sequence

from spec.drivers import sock_diag, threads, witness
from spec.drivers.base import Driver
from spec.drivers.clients import BUFFER_SIZE, Client, connect
from spec.drivers.facts import ServerDied, StillHeld
from spec.drivers.looking import Look, Looker
from spec.drivers.network import (
    PrivateNetwork,
    host_buffers,
    host_description,
    host_flood,
)
from spec.drivers.server_process import ServerProcess, ServerSupply, containment, socket_descriptors
from spec.program import MAX_PAYLOAD_SIZE


def _signal(pids: Sequence[int], sig: signal.Signals, group: int) -> None:
    """`sig` to each of `pids` and to process group `group` (what /proc cannot list)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


class ProcessDriver(Driver):
    """A server run as a process, judged at rest (the design note above).

    About 400 lines: `settle` and its helpers are one algorithm, the rest the
    design note argues for, kept beside it; how the kernel is read is
    `spec.drivers.looking`'s, how the process is started and ended
    `spec.drivers.server_process`'s.
    """

    quickack = True
    #: Seconds a dying server gets to be seen dead before a violation is classified.
    death_grace = 0.5
    #: Seconds a look may stay the same while the kernel holds bytes in flight
    #: (beyond it only for bytes the kernel sends on a timer to a receiver that
    #: takes them: `Look.resending`).
    stall = 1.0
    #: Seconds without a byte moving after which a server that never rests (a
    #: busy loop) is left to itself when nothing is owed (else `settle`).
    restless_grace = 0.25
    #: Seconds at least between two looks that must be equal (where one look
    #: cannot prove the server at rest), and that a server end must have been
    #: gone before its disappearance counts as settled (`Look.just_gone`).
    first_pause = 0.0005
    #: Seconds of the first pause after a look that did not show the server at
    #: rest; the pause doubles up to `longest_pause`.
    shortest_pause = 0.0005
    longest_pause = 0.01

    def __init__(
        self,
        command: str,
        *,
        settle: float = 2.0,
        target: str | None = None,
        supply: ServerSupply | None = None,
        private_network: bool = True,
    ) -> None:
        self.command = command
        self.settle_time = settle
        self.target = target or command
        #: Where started servers come from (one launched in advance), if given.
        self.supply = supply
        self.network = (
            supply.network
            if supply is not None
            else PrivateNetwork.shared()
            if private_network
            else None
        )
        if self.network is not None:
            self.flood_limit = self.flood_backs_up = self.network.flood_limit
        else:  # the host's loopback: floods as large as its sysctls allow buffers to be
            self.flood_backs_up = host_flood(BUFFER_SIZE, MAX_PAYLOAD_SIZE)
            if self.flood_backs_up is not None:
                self.flood_base = host_buffers(BUFFER_SIZE) or 0
        self.process: ServerProcess | None = None
        #: The kernel can be asked (/proc and sock_diag); else the clock judges.
        self.witness = False
        #: Why the kernel is not the witness (None: it is, or not started yet).
        self.unwitnessed: str | None = None
        self._blocked: str | None = None
        self._clients: Sequence[Client] = ()
        #: The kernel's view of the server and the program's connections (from `start()`).
        self._looker: Looker | None = None
        #: Client name -> inode of the server's socket for that connection.
        self._server_inodes: dict[str, int] = {}
        #: Client name -> the client's address (the remote end of that socket).
        self._server_ends: dict[str, tuple[str, int]] = {}
        #: A settle ended on the clock: the server never came to rest.
        self.restless = False

    def start(self) -> None:
        if self.supply is not None:
            self.process = self.supply.take()
        else:
            self.process = ServerProcess(self.command, network=self.network)
            self.process.start()
        self.address = self.process.address
        self._looker = Looker(self.process, self.address, self.network, self.first_pause)
        caps = witness.capabilities()
        self.unwitnessed = "; ".join(caps.unwitnessed()) or None
        self.witness = False
        if caps.complete:
            self.witness = self._look() is not None
            if not self.witness and self.process.alive:
                self._lose("the first look at the server's threads and sockets failed")

    def connect(self) -> socket.socket:
        return connect(
            self.address,
            self.settle_time,
            new_socket=self.network.socket if self.network else socket.socket,
            fixed_buffers=self.network is None,
        )

    def environment(self) -> dict[str, object]:
        network = (
            self.network.describe()
            if self.network
            else host_description(PrivateNetwork.refused(), self.flood_backs_up)
        )
        judged = (
            "at rest, as the kernel reports it (/proc threads, sock_diag queues)"
            if self.witness
            else f"by the clock (no byte moved for --echo-settle {self.settle_time:g} s): "
            + (self.unwitnessed or "the kernel cannot be asked here")
        )
        how = containment(self.network)
        return {
            "network": network,
            "containment": how,
            "judged": judged,
            **witness.describe_mode(
                private_refused=PrivateNetwork.refused(),
                private=self.network is not None,
                floods_back_up=self.flood_backs_up,
                contained=how.startswith("PID namespace"),
            ),
        }

    def _lose(self, reason: str) -> None:
        """The kernel stopped answering while the server lives: the clock judges from here."""
        self.witness = False
        self.unwitnessed = f"the witness was lost mid-run ({reason})"
        witness.lost(reason)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """SIGSTOP every process of the server's tree; inside, each of its threads
        is seen stopped (/proc), so nothing it does can come between the
        clients' actions; SIGCONT after.  A server whose threads cannot be seen
        is frozen all the same, only not seen to be."""
        assert self.process is not None and self.process.process is not None
        pids = self.process.pids()
        group = self.process.process.pid  # its own session: a group of its own
        _signal(pids, signal.SIGSTOP, group)
        try:
            deadline = time.monotonic() + self.settle_time
            while time.monotonic() < deadline:
                seen = threads.look(pids)
                if seen is None or all(t.state in "tTZX" for t in seen):
                    break
                time.sleep(0.0005)
            yield
        finally:
            _signal(pids, signal.SIGCONT, group)

    # -- looking -------------------------------------------------------------------

    def _look(self) -> Look | None:
        """The server's threads and sockets now (`Looker.look`); None if unreadable."""
        assert self._looker is not None
        return self._looker.look()

    def _lookup(
        self, local: tuple[str, int], remote: tuple[str, int]
    ) -> sock_diag.TcpSocket | None:
        """The socket with these ends, asked of the kernel of the server's network."""
        assert self._looker is not None
        return self._looker.lookup(local, remote)

    # -- settling ------------------------------------------------------------------

    def settle(self, clients: Sequence[Client], done: Callable[[], bool]) -> None:
        """Pump until the server is at rest, even when nothing more is owed.

        Returning as soon as nothing is owed would let the server's reaction
        to a step (dropping a reset connection, dying on it) land in whichever
        later step happens to be running: the same program would then be
        judged differently from run to run.
        """
        self._clients = clients
        assert self._looker is not None
        self._looker.follow(clients)
        self._blocked = None
        if not self.witness:
            self._settle_by_clock(clients, done)
            return
        last_progress = time.monotonic()
        previous: Look | None = None
        previous_at = 0.0
        stable_since: float | None = None
        pause = self.shortest_pause
        assert self.process is not None
        while True:
            moved = False
            for c in clients:
                moved |= c.pump()
            now = time.monotonic()
            if moved:
                last_progress, previous, stable_since, pause = now, None, None, self.shortest_pause
                continue
            if not self.process.alive:  # it has exited (waitpid): nothing more will happen
                break
            look = self._look()
            if look is None:
                if not self.process.alive:
                    break
                # The kernel stopped answering; the server is alive (waitpid
                # says so): never a dead server, the clock judges from here.
                self._lose("a look at the server's threads or sockets failed")
                self._settle_by_clock(clients, done)
                return
            if look.conclusive:
                # What had arrived for the clients before the look (an EOF, a
                # reset) is taken now; if there was any, the server may react.
                for c in clients:
                    moved |= c.pump()
                if moved:
                    last_progress, previous, stable_since = time.monotonic(), None, None
                    pause = self.shortest_pause
                    continue
                self._at_rest(look, clients)
                break
            # A thread asleep until a time will run by itself: while echo is
            # owed, that is no rest (past `settle` without a byte, the clock judges).
            same = (
                previous is not None
                and look.asleep
                and look.same(previous)
                and not (look.on_a_timer and not done())
            )
            if same and now - previous_at < self.first_pause:
                pass  # too close to the last look to count as a second one: look again later
            else:
                if same:
                    stable_since = stable_since or now
                    waited = now - stable_since
                    if not look.in_flight or (
                        waited > self.stall and not look.resending(waited - self.stall)
                    ):
                        self._at_rest(look, clients)
                        break
                else:
                    stable_since = None
                previous, previous_at = look, now
            quiet = now - last_progress
            # At rest but for bytes the kernel moves on its own: wait for the
            # kernel, not the clock.  Otherwise the server may never rest.
            restless = stable_since is None and (
                quiet > self.settle_time or (quiet > self.restless_grace and done())
            )
            if restless:
                self.restless = True  # it never rests: judged by the clock from here
                break
            self._wait_for_io(clients, pause)
            pause = min(2 * pause, self.longest_pause)
        self._note_server_sockets(clients)

    def _settle_by_clock(self, clients: Sequence[Client], done: Callable[[], bool]) -> None:
        """Without the kernel as witness: until done, or no byte moved for `settle` seconds."""
        assert self.process is not None
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

    def rest(self) -> None:
        """Let the server come to rest with the clients of the last settle."""
        self.settle(self._clients, lambda: False)

    @staticmethod
    def _wait_for_io(clients: Sequence[Client], timeout: float) -> None:
        readers = [
            c.sock
            for c in clients
            if c.active and c.model.reading and not (c.model.eof or c.model.reset or c.violation)
        ]
        writers = [c.sock for c in clients if c.active and c.pending]
        if readers or writers:
            select.select(readers, writers, [], timeout)
        else:
            time.sleep(timeout)

    def _at_rest(self, look: Look, clients: Sequence[Client]) -> None:
        """At rest with echo owed: is the server asleep inside one call on another socket?"""
        owed = [c for c in clients if c.expects_more]
        if not owed:
            return
        self._note_server_sockets(clients)
        owed_inodes = {self._server_inodes.get(c.name) for c in owed}
        serving = [
            t
            for t in look.threads
            if t.in_readiness_wait or (t.fd is not None and t.socket_inode() in owed_inodes)
        ]
        if serving:
            return
        names = {inode: name for name, inode in self._server_inodes.items()}
        for t in look.threads:
            inode = t.socket_inode() if t.syscall else None
            if inode is None:
                continue
            name = names.get(inode)
            peer = next((c for c in clients if c.name == name), None)
            where = (
                f"{name}'s connection"
                + ("" if peer is None or peer.model.reading else f" ({name} is not reading)")
                if name
                else "a socket that is not an owed client's"
            )
            self._blocked = (
                f"the server is asleep in {t.syscall}() on {where} while echo is "
                f"owed to {owed[0]}, and no thread of it waits for other sockets"
            )
            return

    def _note_server_sockets(self, clients: Sequence[Client]) -> None:
        """Note the server's socket (its inode) for each client not yet matched."""
        if not self.witness:
            return
        for c in clients:
            if c.name in self._server_inodes:
                continue
            seen = self._looker.last_inode.get(c.name) if self._looker else None
            if seen:  # the last look saw it held by a descriptor
                self._server_inodes[c.name] = seen
                self._server_ends[c.name] = c.local_address
                continue
            try:
                found = self._lookup(self.address, c.local_address)
            except (OSError, ValueError):
                return
            if found is not None and found.inode:
                self._server_inodes[c.name] = found.inode
                self._server_ends[c.name] = c.local_address

    # -- verdicts ------------------------------------------------------------------

    def crash(self, wait: bool = False) -> ServerDied | None:
        if self.process is None or self.process.process is None:
            return None
        if not self.process.wait_dead(self.death_grace if wait else 0):
            return None
        tail = self.process.stderr_tail()
        return ServerDied(
            f"the server died ({self.process.exit_description()})"
            + (f"; its stderr ends with:\n{tail}" if tail else ""),
        )

    def blocked(self) -> str | None:
        return self._blocked

    def _held(self, ended: Sequence[Client]) -> list[tuple[Client, str]]:
        """The ended clients whose connection a process of the server still holds, and how."""
        assert self.process is not None
        descriptors = {
            inode: (pid, fd)
            for pid in self.process.pids()
            for inode, fd in socket_descriptors(pid).items()
        }
        held = []
        for c in ended:
            inode = self._server_inodes.get(c.name)
            if inode in descriptors:
                pid, fd = descriptors[inode]
                try:
                    found = self._lookup(self.address, self._server_ends[c.name])
                except (OSError, ValueError):
                    found = None
                state = found.state.name if found is not None and found.inode == inode else "CLOSE"
                held.append(
                    (c, f"its socket is still open ({state}, descriptor {fd} of process {pid})")
                )
        return held

    def leaks(self, ended: Sequence[Client], live: int) -> StillHeld | ServerDied | None:
        if not self.witness or self.process is None:
            return None
        if not self._held(ended):
            return None
        self.rest()  # released only once the server has run: judge at rest
        if not self.process.alive:
            return self.crash(wait=True)
        held = self._held(ended)
        if not held:
            return None
        c, how = held[0]
        return StillHeld(
            f"after the connection ended ({c.model.state.value}) and the "
            f"server came to rest, it still holds it: {how}",
            connection=c.name,
            waited=True,
        )

    def close(self) -> None:
        # Nothing to judge: the process is simply ended.
        if self._looker is not None:
            self._looker.close()
            self._looker = None
        process, self.process = self.process, None
        if process is not None and self.supply is not None:
            self.supply.give_back(process)
        elif process is not None:
            process.close()
