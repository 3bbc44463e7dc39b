"""The conformance state machine: many clients against one server, judged by the model.

Design note
-----------
Each rule is one thing a client does (connect, send, read, drain, half-close,
send and half-close at once, abort, close, flood, burst).  After every rule
the driver *settles* the server and `_judge()` asks, in a fixed order, what
went wrong, so the same program is always reported the same way:

1. the server died (or raised) -- ECHO-5, whatever the clients saw;
2. the server blocked inside one step -- ECHO-7: while one connection holds
   the loop, every other client is starved (a steppable server's step must
   return whatever its clients do);
3. a client saw bytes that are not its echo, an early EOF or a reset --
   `model.diagnose()` names the requirement;
4. a reading client is still owed echo (or EOF after half-close) although the
   server had all the time it is allowed -- if another client is flooding, it
   is made to read: echo that then arrives was held back (ECHO-7), echo that
   still does not was lost (ECHO-2/4);
5. an ended connection is still held by the server (ECHO-6), and after an
   abort or close a fresh connection must still be served (ECHO-5).

Before a violation is judged, `spec.causes.attribute()` names the
requirement its cause breaks, from the steps the clients took (`events`): an
EOF on c1 after c0's reset is ECHO-5, bytes doubled after a half-close with
echo queued are ECHO-4.

One machine checks one requirement (`requirement`): it runs only the rules
that can expose it (`RULES`), and a program that trips over a *different*
requirement first is set aside, so Hypothesis goes on looking for, and
shrinks towards, a violation of the one being checked.  That is how a crash
on reset is reported under ECHO-5 and never as lost echo under ECHO-2.  Set
aside is not lost: the shortest such program per requirement is kept in the
log (`CheckLog.foreign`), and the checker reports it as a finding that fails
that requirement (`spec.checker.Finding`).

The flip side: a crash that only the ECHO-4 machine's narrow programs reach
(flood, then half-close) is rejected there, so the ECHO-5 machine must reach
it too.  It does (`machine_for("ECHO-5")`, a `ScenarioConformance`): each
of its programs first draws which requirement's scenario to play
(`spec.program.CRASH_SCENARIOS`), so every crash any machine can run into is searched
for, and reported, under ECHO-5.

Every rule also records its line in `program` (`spec.program`, written from
the rule's signature); replayed in order against a fresh machine
(`spec.replay`) the lines reproduce the run exactly.
"""

from __future__ import annotations

import collections
import functools
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NoReturn

from hypothesis import reject
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    precondition,
    rule,
)

from spec.causes import Event, attribute
from spec.drivers.base import Driver
from spec.drivers.clients import Client
from spec.judge import violation
from spec.model import UPPER, ClientState, Symptom, Transform, Violation
from spec.plans import PLANS, RULES
from spec.program import (
    MAX_PATTERN,
    MAX_PAYLOAD_SIZE,
    MiB,
    Payload,
    format_step,
    integers,
)
from spec.requirements import CAPACITY, LIVENESS, RESILIENCE, STREAM

#: A flooding client's send() size: no larger than one loopback segment (the
#: MSS with TCP timestamps, 65,483), so a server's echo of one write fits one
#: segment, which the kernel takes whole even into a nearly full send buffer:
#: the buffer ends up over-full with nothing left queued, and the *next* echo
#: meets EAGAIN on the send-at-once path.  64 KiB writes (53 bytes over a
#: segment) always came up short first and never reached that path.
FLOOD_WRITE = 65_483
#: What a half-closed flooder reads per sip at the end of a program (`_sip`).
SIP = 64 * 1024
#: What a flooder reads before the second ECHO-7 probe (`_probe_beside`): room
#: for some echo, not all.  More than a loopback segment: a read smaller than
#: the MSS (65,483) opens no window, and the server sees no room at all.
ROOM = 256 * 1024
#: How long the idle step leaves a connection alone: longer than the 5 s
#: idle timeout servers commonly set (the thorough profile plays a minute).
IDLE_PROGRAM_SECONDS = 6
#: Seconds between two looks at an idle connection.
IDLE_LOOK = 0.05


SMALL = st.binary(min_size=1, max_size=MAX_PATTERN).map(Payload)
LARGE = st.builds(Payload, st.binary(min_size=1, max_size=8), st.integers(65, 2 * MiB))
#: Mostly small sends, sometimes up to 2 MiB.
PAYLOADS = st.one_of(SMALL, SMALL, SMALL, SMALL, LARGE)
#: The flood that backs up: more than the kernel buffers hold, so the server
#: is left with echo it cannot write.  A driver whose buffers are larger or
#: smaller sends its own size instead (`Driver.flood_backs_up`).
BACKS_UP = 4 * MiB
#: What a client sends without reading: a flood that backs up, or less, which
#: leaves the server with echo queued for a client that does not read (which
#: is when a half-close or a reset finds it).
FLOODS = st.builds(
    Payload,
    st.binary(min_size=1, max_size=8),
    st.one_of(st.just(BACKS_UP), st.integers(64 * 1024, 2 * MiB)),
)


#: What a client sends before it resets or closes at once: more than one read
#: of any server (so it reads again after the end has arrived) and, from 64 KiB
#: on, more than the private network's buffers take at once.
RACE_PAYLOADS = st.builds(
    Payload, st.binary(min_size=1, max_size=8), st.integers(8 * 1024, 256 * 1024)
)


def idle_program(seconds: int = IDLE_PROGRAM_SECONDS) -> list[str]:
    """The fixed program the idle check plays besides the generated ones."""
    return [
        "c0 = state.connect()",
        "state.send(c0, Payload(b'before idle'), writes=1)",
        f"state.idle(c0, {seconds!r})",
        "state.send(c0, Payload(b'after idle'), writes=1)",
        "state.teardown()",
    ]


class ConformanceFailure(AssertionError):
    """A violation, with the program that shows it and the plan it ran under."""

    def __init__(
        self, violation: Violation, program: list[str], target: str, plan: str | None = None
    ) -> None:
        #: When it was seen (time.monotonic()): the kill-rate table's "first failure".
        self.seen_at = time.monotonic()
        self.violation = violation
        self.program = list(program)
        self.target = target
        #: The requirement whose plan (rules, program ending) the program ran under.
        self.plan = plan or violation.requirement
        super().__init__(self.describe())

    def describe(self) -> str:
        steps = "\n".join(f"    {line}" for line in self.program)
        return f"{self.violation.describe()}\n  target: {self.target}\n  program:\n{steps}"


class BudgetSpent(BaseException):
    """The check's time budget ran out.

    Not an Exception: Hypothesis lets it through at once instead of taking it
    for a failure to shrink, and the checker reports what it has.
    """


@dataclass
class CheckLog:
    """What the machines of one check saw, program after program."""

    #: Every violation of the requirement checked, in the order seen (the
    #: last ones are the shrunk ones), even those a replay did not reproduce.
    failures: list[ConformanceFailure] = field(default_factory=list)
    #: Programs set aside because another requirement broke first, by that requirement.
    masked: collections.Counter[str] = field(default_factory=collections.Counter)
    #: The last violation of each requirement that masked this one.
    masking: dict[str, Violation] = field(default_factory=dict)
    #: The shortest program that showed each other requirement's violation:
    #: set aside from this search, never lost (the checker reports it).
    foreign: dict[str, ConformanceFailure] = field(default_factory=dict)
    #: Programs that ran to their end.
    finished: int = 0
    #: time.monotonic() after which no step starts (`BudgetSpent`); None: no bound.
    deadline: float | None = None
    #: The deadline has passed and a program was cut short.
    spent: bool = False
    #: Seconds Hypothesis may shrink once the first violation is seen (None: up
    #: to the deadline); the checker shrinks further with what remains of it.
    shrink_share: float | None = None
    #: Programs Hypothesis may run once the first violation is seen (None: no
    #: bound), and how many it has run: a count, not a time, so the same seed
    #: stops shrinking at the same program on a busy machine as on a quiet one.
    shrink_limit: int | None = None
    shrink_runs: int = 0
    #: The deadline the check began with.
    end: float | None = None
    #: How the server was run and judged (the first driver's `environment()`).
    environment: dict[str, object] = field(default_factory=dict)


def enabled(action: str) -> Callable[[EchoConformance], bool]:
    return lambda self: action in self.actions


class EchoConformance(RuleBasedStateMachine):
    """The clients' actions as Hypothesis rules, each step settled and judged.

    Larger than a room should be (about 550 lines), for a reason: Hypothesis
    collects a machine's rules from one class, and the rules, each with the
    docstring that says what a server must do after it, are half of it; the
    other half is what every rule ends in (`_step`: settle, then judge what
    the rules built) and the end of a program.  What a fact means is
    `spec.judge`'s, what a program may be is `spec.program`'s.
    """

    clients = Bundle("clients")
    #: Clients connected at once (bursts come on top, briefly).
    max_clients = 5
    #: The check runs this many times the settings' max_examples.
    budget_factor = 1

    def __init__(
        self,
        driver: Driver,
        requirement: str,
        log: CheckLog | None = None,
        transform: Transform = UPPER,
    ) -> None:
        super().__init__()
        #: What every client's model expects of the echo (ECHO-1).
        self.transform = transform
        if requirement not in RULES:
            raise ValueError(
                f"{requirement} is not checked by the state machine; it checks {', '.join(RULES)}"
            )
        self.driver = driver
        self.requirement = requirement
        self.plan = PLANS[requirement]
        self.actions = self.plan.rules
        self.all: list[Client] = []
        #: The probes open now (`_new_probe`): apart from the program's clients,
        #: but their echo is another connection's for the clients' models.
        self.probes: list[Client] = []
        self.program: list[str] = []
        #: The steps that can cause a symptom elsewhere (`spec.causes`).
        self.events: list[Event] = []
        self.failed = False
        self.last_violation: Violation | None = None
        self.log = log
        if log is not None and log.failures:
            log.shrink_runs += 1
        self._spend()
        driver.start()
        if log is not None and not log.environment:
            log.environment = driver.environment()

    def __repr__(self) -> str:
        return f"EchoConformance({self.driver.target!r}, {self.requirement!r})"

    @property
    def live(self) -> list[Client]:
        return [c for c in self.all if c.active]

    # -- rules -----------------------------------------------------------------------

    @precondition(lambda self: "connect" in self.actions and len(self.live) < self.max_clients)
    @rule(target=clients)
    def connect(self) -> Client:
        c = self._connect(self._next_name())
        self._record("connect", binds=c.name)
        self._step()
        return c

    @precondition(enabled("send"))
    @rule(client=clients, payload=PAYLOADS, writes=integers("writes"))
    def send(self, client: Client, payload: Payload, writes: int = 1) -> None:
        if client.model.state is not ClientState.OPEN:
            return
        self._record("send", client=client, payload=payload, writes=writes)
        client.queue(payload.data(), writes)
        self._step()

    @precondition(enabled("read"))
    @rule(client=clients, size=integers("size"))
    def read(self, client: Client, size: int) -> None:
        """Read up to `size` bytes of what has arrived (a flooding client's partial read)."""
        if not client.active or client.model.reading:
            return
        self._record("read", client=client, size=size)
        client.read(size)
        self._step()

    @precondition(enabled("drain"))
    @rule(client=clients)
    def drain(self, client: Client) -> None:
        """Read again from now on: every echo byte owed must arrive."""
        if not client.active or client.model.reading:
            return
        self._record("drain", client=client)
        client.model.reading = True
        self._step()

    @precondition(enabled("half_close"))
    @rule(client=clients)
    def half_close(self, client: Client) -> None:
        """Shut down the sending side; a flooding client gives up what it could not send.

        After a flood the server still has echo queued (and input unread) when
        the EOF arrives: it must flush all of it before closing.
        """
        if client.model.state is not ClientState.OPEN:
            return
        self._record("half_close", client=client)
        self._half_close(client, "half_close")

    @precondition(enabled("send_and_half_close"))
    @rule(client=clients, payload=SMALL)
    def send_and_half_close(self, client: Client, payload: Payload) -> None:
        """Send and shut down at once, as `printf ... | nc -N` does.

        The data and the EOF reach the server in the same round, before it
        has echoed: a server that queues echo for the next round reads the
        EOF with it still queued, and must flush it before closing.
        """
        if client.model.state is not ClientState.OPEN:
            return
        self._record("send_and_half_close", client=client, payload=payload)
        self._half_close(client, "send_and_half_close", payload)

    def _half_close(self, client: Client, rule: str, last: Payload | None = None) -> None:
        client.pending.clear()
        if last is not None:
            client.queue(last.data())
            client.flush()
            client.pending.clear()  # what the kernel did not take is given up
        self._event(rule, client)
        client.half_close()
        self._step()
        self._probe(f"{client} half-closed")

    @precondition(enabled("abort"))
    @rule(client=consumes(clients))
    def abort(self, client: Client) -> None:
        """Reset the connection: SO_LINGER 0, then close, so the server sees RST."""
        if not client.active:
            return
        self._record("abort", client=client)
        self._event("abort", client)
        client.abort()
        self._step()
        self._probe(f"{client} was aborted")

    @precondition(enabled("close"))
    @rule(client=consumes(clients))
    def close(self, client: Client) -> None:
        """Close without reading what is left (RST if echo is unread, else FIN)."""
        if not client.active:
            return
        self._record("close", client=client)
        self._event("close", client)
        client.close()
        self._step()
        self._probe(f"{client} was closed")

    @precondition(enabled("send_and_abort"))
    @rule(client=consumes(clients), payload=RACE_PAYLOADS)
    def send_and_abort(self, client: Client, payload: Payload) -> None:
        """Send, and reset at once, before the server has read a byte of it.

        The server wakes with the bytes queued and the reset already arrived:
        it reads them, and its first echo write fails with ECONNRESET, the next
        with EPIPE (and SIGPIPE, which kills a C server that does not ignore
        it).  That is the race a real client wins when it resets while the
        server is still reading; with the server frozen (`Driver.frozen`) it has
        one outcome.
        """
        self._race(client, payload, "send_and_abort")

    @precondition(enabled("send_and_close"))
    @rule(client=consumes(clients), payload=RACE_PAYLOADS)
    def send_and_close(self, client: Client, payload: Payload) -> None:
        """Send, and close at once without reading, before the server has read it.

        The server's first echo write draws a reset from the closed socket; its
        next ones fail (ECONNRESET, then EPIPE and SIGPIPE).
        """
        self._race(client, payload, "send_and_close")

    def _race(self, client: Client, payload: Payload, rule: str) -> None:
        if not client.active or client.model.state is not ClientState.OPEN:
            return
        self._record(rule, client=client, payload=payload)
        with self.driver.frozen():
            client.pending.clear()
            client.queue(payload.data())
            client.flush()
            client.pending.clear()  # what the kernel did not take is given up
            self._event(rule, client)
            if rule == "send_and_abort":
                client.abort()
            else:
                client.close()
        self._step()
        self._probe(
            f"{client} sent {payload.size or len(payload.pattern)} bytes and "
            + ("reset at once" if rule == "send_and_abort" else "closed at once")
        )

    @precondition(enabled("flood"))
    @rule(client=clients, payload=FLOODS)
    def flood(self, client: Client, payload: Payload) -> None:
        """Stop reading and send more than the kernel buffers hold."""
        if client.model.state is not ClientState.OPEN:
            return
        self._flood(client, payload, "flood")
        if self.plan.probe_beside_floods:
            self._probe_beside(client)

    @precondition(enabled("flood_and_half_close"))
    @rule(client=clients, payload=FLOODS)
    def flood_and_half_close(self, client: Client, payload: Payload) -> None:
        """Flood, then shut down the sending side while the echo is backed up.

        The EOF reaches the server behind input it has yet to echo, with echo
        waiting in it: what a half-close must survive, as one step.  Left to
        the search as two (a flood, later a half-close of the same client
        with nothing read between), it is seldom played.
        """
        if client.model.state is not ClientState.OPEN:
            return
        self._flood(client, payload, "flood_and_half_close")
        self._half_close(client, "flood_and_half_close")

    def _flood(self, client: Client, payload: Payload, rule: str) -> None:
        payload = self._sized(payload)
        self._record(rule, client=client, payload=payload)
        client.model.reading = False
        data = payload.data()
        client.queue(data, writes=-(-len(data) // FLOOD_WRITE))
        base = self._nothing_owed
        stall = self.driver.flood_stall
        if stall is None:  # settle() returns once the server is done: the flood has backed up
            self._step(lambda: base() and not client.pending)
        else:
            self._step(
                lambda: (
                    base() and (not client.pending or time.monotonic() - client.last_write > stall)
                )
            )

    def idle(self, client: Client, seconds: int) -> None:
        """Leave the connection idle for `seconds`, the server running; it must stay open.

        Not a rule, so never drawn into generated programs: the checker plays
        it in a fixed program of its own (`idle_program`), since idle timeouts
        are common and no generated program idles that long.
        """
        self._record("idle", client=client, seconds=seconds)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not any(c.violation for c in self.all):
            self.driver.settle(self.live, self._nothing_owed)
            time.sleep(min(IDLE_LOOK, max(0.0, deadline - time.monotonic())))
        self._step()

    @precondition(
        lambda self: (
            "connect_out_of_descriptors" in self.actions and self.driver.can_exhaust_descriptors
        )
    )
    @rule()
    def connect_out_of_descriptors(self) -> None:
        """A client connects while the server has no descriptor left to accept it.

        accept() fails with EMFILE: the server is at its own limit (ECHO-10).
        It must refuse that connection (close it, or reset it) or leave it
        pending and accept it once descriptors are free again, and go on
        serving the others; it must not die, stop accepting, or spin on a
        listening socket that stays readable.
        """
        self._record("connect_out_of_descriptors")
        with self.driver.descriptors_exhausted():
            try:
                sock = self.driver.connect()
            except OSError as e:  # pragma: no cover - the kernel completes it before accept()
                self._fail(Violation(CAPACITY, f"out of descriptors, a connect failed: {e}"))
            pending = Client("pending", sock, lambda: ())
            pending.model.transform = self.transform
            self.driver.settle(
                [*self.live, pending], lambda: pending.model.eof or pending.model.reset
            )
            spun = self.driver.spinning
        try:
            crash = self.driver.crash()
            if crash:
                self._fail(
                    Violation(
                        CAPACITY,
                        f"out of descriptors (accept() fails with "
                        f"EMFILE), the server died: {crash.detail}",
                    )
                )
            self._judge()
            if spun:
                self._fail(
                    Violation(
                        CAPACITY,
                        "out of descriptors (accept() fails with EMFILE), the server "
                        "spins: its loop keeps handling a listening socket it cannot accept from, "
                        "and the pending connection is neither refused nor served",
                    )
                )
            m = pending.model
            if not (m.eof or m.reset):  # still pending: it must be served now
                pending.queue(b"pending")
                self.driver.settle(
                    [*self.live, pending], lambda: m.eof or m.reset or m.received_count >= 7
                )
                self._judge()
                if not (m.eof or m.reset or m.received_count >= 7):
                    self._fail(
                        Violation(
                            CAPACITY,
                            "a connection made while the server was out of descriptors "
                            "was neither refused nor served once descriptors were free again",
                        )
                    )
        finally:
            pending.close()

    @precondition(enabled("burst"))
    @rule(n=integers("n"), payload=SMALL)
    def burst(self, n: int, payload: Payload) -> None:
        """Connect `n` clients at once, each sends, each reads its echo, each leaves."""
        self._record("burst", n=n, payload=payload)
        group = [self._connect(self._next_name()) for _ in range(n)]
        self._step()
        for i, c in enumerate(group):
            c.queue(payload.data() + bytes([i]) * (i + 1))
        self._step()
        for c in group:
            if c.active:
                c.half_close()
        self._step()
        for c in group:
            if c.active:
                c.close()
        self._step()

    # -- settling and judging ------------------------------------------------------------

    def _record(self, rule: str, binds: str = "", **arguments: object) -> None:
        """Add the step's line to the program, written from the rule's signature."""
        self.program.append(format_step(getattr(type(self), rule), arguments, binds))

    def _connect(self, name: str) -> Client:
        try:
            sock = self.driver.connect()
        except OSError as e:
            self._fail(
                violation(self.driver.crash(wait=True))
                or Violation(
                    RESILIENCE, f"a new connection failed ({e}): the server no longer accepts"
                )
            )
        c = Client(name, sock, lambda: self._others(c), quickack=self.driver.quickack)
        c.model.transform = self.transform
        self.all.append(c)
        return c

    def _event(self, rule: str, client: Client) -> None:
        """Note a step that can cause a symptom (`spec.causes`), as the client stands now."""
        m = client.model
        self.events.append(
            Event(len(self.program) - 1, rule, client.name, m.outstanding, m.received_count)
        )

    def _next_name(self) -> str:
        return f"c{len(self.all)}"

    def _others(self, me: Client) -> Iterable[bytes]:
        return [bytes(c.model.expected) for c in [*self.all, *self.probes] if c is not me]

    def _sized(self, payload: Payload) -> Payload:
        """The drawn flood as this driver sends it (the program prints that):
        the one that backs up (`BACKS_UP`) as large as backs up here, a smaller
        one on top of what this driver's buffers hold beyond the machine's
        sizes (`Driver.flood_base`: it leaves as much echo waiting in the
        server), and none larger than the driver's limit (as much backs up,
        with less to move).  Sized twice, a flood stays the same (a replay
        prints the program it replays)."""
        size = payload.size
        base = self.driver.flood_base
        if size == BACKS_UP and self.driver.flood_backs_up is not None:
            size = self.driver.flood_backs_up
        elif size is not None and size < base:
            size = min(size + base, MAX_PAYLOAD_SIZE)
            if size == BACKS_UP:
                size += 1  # else a replay would read it as the one that backs up
        limit = self.driver.flood_limit
        if limit is not None and size is not None and size > limit:
            size = limit
        return payload if size == payload.size else Payload(payload.pattern, size)

    def _nothing_owed(self) -> bool:
        return not any(c.expects_more for c in self.live)

    def _spend(self) -> None:
        """Stop the check if its time budget, or Hypothesis' share of shrinking, has run out."""
        log = self.log
        if log is None:
            return
        if log.deadline is not None and time.monotonic() > log.deadline:
            log.spent = True
            raise BudgetSpent
        if log.shrink_limit is not None and log.shrink_runs > log.shrink_limit:
            raise BudgetSpent

    def _step(self, done: Callable[[], bool] | None = None) -> None:
        self._spend()
        self.driver.settle(self.live, done or self._nothing_owed)
        self._judge()

    def _judge(self) -> None:
        troubled = any(c.violation or c.expects_more for c in self.all)
        crash = violation(self.driver.crash(wait=troubled))
        if crash:
            self._fail(crash)
        flooders = [c for c in self.live if not c.model.reading]
        blocked = self.driver.blocked()
        if blocked:
            during = f" while {flooders[0]} was sending without reading" if flooders else ""
            # Seen, not inferred: the server was inside a call that cannot return
            # while a client that does not read holds it.
            self._fail(Violation(LIVENESS, f"{blocked}{during}: every other client is starved"))
        for c in self.all:
            if c.violation:
                self._fail(c.violation)
        starving = [c for c in self.all if c.expects_more]
        if starving:
            self._fail(self._starved(starving, flooders))
        if self.plan.released_after_each_step:
            self._check_released()

    def _starved(self, starving: list[Client], flooders: list[Client]) -> Violation:
        """Why is echo still owed? Held back by a flooding client, or lost."""
        if flooders:
            for f in flooders:
                f.model.reading = True
            self.driver.settle(self.live, self._nothing_owed)
            crash = violation(self.driver.crash(wait=True))
            if crash:
                return crash
            for c in starving:
                if not c.expects_more and not c.violation:
                    return Violation(
                        LIVENESS,
                        f"echo owed to {c} did not arrive while "
                        f"{flooders[0]} was sending without reading; it arrived once "
                        f"{flooders[0]} read",
                        connection=c.name,
                        waited=True,
                    )
        c = starving[0]
        v = c.violation or c.model.diagnose(settled=True, others=self._others(c))
        if v is None:  # pragma: no cover - expects_more implies something is owed
            v = Violation(
                STREAM,
                "echo still owed after the settle time",
                connection=c.name,
                waited=True,
                kind=Symptom.MISSING,
            )
        return v

    def _check_released(self) -> None:
        """ECHO-6, after every step: nothing held for any connection that has ended."""
        ended = [c for c in self.all if c.model.ended]
        if not ended:
            return
        v = violation(self.driver.leaks(ended, live=sum(not c.model.ended for c in self.all)))
        if v:
            self._fail(v)

    def _probe(self, after: str) -> None:
        """ECHO-5: after a connection ended, a new one must still be served."""
        if not self.plan.probe_after_end:
            return
        probe = self._new_probe(RESILIENCE, f"after {after}")
        try:
            self.driver.settle([*self.live, probe], lambda: not probe.expects_more)
            self._judge_probe(probe)
            if probe.expects_more:
                self._fail(
                    Violation(
                        RESILIENCE,
                        f"after {after}, a new connection got "
                        f"{probe.model.received_count} of 5 echo bytes",
                        waited=True,
                    )
                )
        finally:
            self._end_probe(probe)

    def _probe_beside(self, flooder: Client) -> None:
        """ECHO-7: while `flooder` sends without reading, a new connection must be served.

        The requirement's own witness, played after every flood of its
        programs rather than left to the search (a program with another
        client owed echo just then is rare).  First with the flooder's echo
        backed up: a server that blocks in a write to it, or serves one
        connection at a time, starves the probe.  Then once the flooder has
        read some (`ROOM`): a server that loops on send() until all of its
        queue is gone spins on EAGAIN from now on, and starves it too.
        """
        while_flooding = f"while {flooder} was sending without reading"
        for sipped in (False, True):
            if not (flooder.active and not flooder.model.reading):
                return
            if sipped:
                flooder.read(ROOM)
                self._step()
                while_flooding = (
                    f"while {flooder} was sending and reading no more than {ROOM // 1024} KiB"
                )
            self._serve_probe(while_flooding)

    def _serve_probe(self, while_flooding: str) -> None:
        probe = self._new_probe(LIVENESS, while_flooding)
        try:
            self.driver.settle([*self.live, probe], lambda: not probe.expects_more)
            self._judge_probe(probe)
            if not probe.expects_more:
                return
            blocked = self.driver.blocked()
            got = probe.model.received_count
            # Held back by the flooders, or never served?  Made to read, as in
            # `_starved`; what they or the probe then show is judged first.
            flooders = [c for c in self.live if not c.model.reading]
            for f in flooders:
                f.model.reading = True
            self.driver.settle([*self.live, probe], lambda: not probe.expects_more)
            self._judge_probe(probe)
            for c in self.all:
                if c.violation:
                    self._fail(c.violation)
            names = " and ".join(str(f) for f in flooders)
            then = (
                f"; it arrived once {names} read"
                if not probe.expects_more
                else f"; not even once {names} read"
            )
            self._fail(
                Violation(
                    LIVENESS,
                    f"{while_flooding}, a new connection got {got} of 5 echo bytes"
                    + (f" ({blocked})" if blocked else "")
                    + then,
                    waited=True,
                )
            )
        finally:
            self._end_probe(probe)

    def _judge_probe(self, probe: Client) -> None:
        """A dead server, or the probe's own bytes wrong: named as such, not as a starved probe."""
        crash = violation(self.driver.crash(wait=probe.expects_more or probe.violation is not None))
        if crash:
            self._fail(crash)
        if probe.violation:
            self._fail(probe.violation)

    def _new_probe(self, requirement: str, when: str) -> Client:
        """A connection apart from the program's clients, which sends b"probe"."""
        try:
            sock = self.driver.connect()
        except OSError as e:
            self._fail(
                violation(self.driver.crash(wait=True))
                or Violation(requirement, f"{when}, a new connection failed: {e}")
            )
        probe = Client("probe", sock, lambda: self._others(probe))
        probe.model.transform = self.transform
        probe.queue(b"probe")
        self.probes.append(probe)
        return probe

    def _end_probe(self, probe: Client) -> None:
        probe.close()
        self.probes.remove(probe)

    def _fail(self, v: Violation) -> NoReturn:
        v = attribute(v, self.events)
        self.failed = True
        self.last_violation = v
        failure = ConformanceFailure(v, self.program, self.driver.target, self.requirement)
        if v.requirement != self.requirement and currently_in_test_context():
            # Another requirement broke first: this program cannot show ours.
            # Set aside from this search, never lost: the checker reports it.
            if self.log is not None:
                self.log.masked[v.requirement] += 1
                self.log.masking[v.requirement] = v
                seen = self.log.foreign.get(v.requirement)
                if seen is None or len(failure.program) < len(seen.program):
                    self.log.foreign[v.requirement] = failure
            reject()
        if self.log is not None and v.requirement == self.requirement:
            self.log.failures.append(failure)
            log = self.log
            if len(log.failures) == 1 and log.deadline is not None and log.shrink_share:
                log.deadline = min(log.deadline, failure.seen_at + log.shrink_share)
        raise failure

    # -- the end of every program ----------------------------------------------------------

    def teardown(self) -> None:
        finished = False
        try:
            # Hypothesis calls teardown() in a `finally`: skip the final checks
            # when the program was cut short (failure, or Hypothesis stopping).
            if not self.failed and sys.exception() is None:
                self._record("teardown")
                self._finish()
                finished = True
                if self.log is not None:
                    self.log.finished += 1
        finally:
            for c in self.live:
                c.close()
            closing = violation(self.driver.close())
            if self.driver.restless and self.log is not None:
                self.log.environment["restless"] = (
                    "the server did not come to rest after some steps (it never slept): "
                    "those were judged by the clock, after --echo-settle seconds without a byte"
                )
        if finished and closing and self.plan.close_server_at_end:
            self._fail(closing)

    def _finish(self) -> None:
        """Every client reads; then each requirement's own ending."""
        sipping = [c for c in self.live if c.model.half_closed and not c.model.reading]
        for c in self.live:
            c.model.reading = c not in sipping
        self._step()
        self._sip(sipping)
        for c in sipping:
            c.model.reading = True
        self._step()
        if self.plan.half_close_at_end:
            for c in self.live:
                if c.model.state is ClientState.OPEN and not c.pending:
                    c.half_close()
            self._step()
        if self.plan.close_server_at_end:
            for c in self.live:
                c.close()
            self._step()
            # Last, the server is closed while it still serves a connection:
            # its close() must release that too (see Driver.close).
            last = self._connect(self._next_name())
            last.queue(b"last")
            self._step()

    def _sip(self, clients: list[Client]) -> None:
        """Half-closed flooders take their echo in sips, the server settling after each.

        The server's buffers towards them stay full, so its send()s come up
        short while it reads the rest of their input: the EOF finds echo
        queued, and the flush-then-close path runs (where close-at-eof loses
        echo).  Reading freely, a client would empty those buffers, and a
        server that sends at once would meet the EOF with nothing queued.
        """
        while clients:
            clients = [c for c in clients if c.active and c.read(SIP)]
            self._step()


@functools.cache
def machine_for(requirement: str) -> type[EchoConformance]:
    """The state machine class that checks `requirement`.

    A requirement with scenarios gets a machine whose programs first choose
    one (each scenario gets the whole example budget).
    """
    scenarios = PLANS[requirement].scenarios
    if not scenarios:
        return EchoConformance

    class ScenarioConformance(EchoConformance):
        budget_factor = len(scenarios)

        @initialize(scenario=st.sampled_from(scenarios))
        def choose_scenario(self, scenario: str) -> None:
            self.actions = PLANS[scenario].rules

    return ScenarioConformance
