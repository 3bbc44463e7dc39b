"""How each requirement is checked, as data: which rules its programs use, what ends them.

`spec/requirements.py` says *what* each requirement demands; this table says
*how the checker looks for a violation* of it.  The state machine
(spec/machine.py) and the checker (spec/checker.py) read a requirement's
`Plan` and never branch on its ID, so a new requirement is a new row here
(and one in requirements.py): see CONTRIBUTING.md.

The requirement IDs are named once, below, for the code that reports a
violation (``Violation(CLEANUP, ...)``); nothing else spells them out.
"""

from __future__ import annotations

from dataclasses import dataclass

from spec.requirements import (
    CAPACITY,
    CLEANUP,
    HALF_CLOSE,
    IDLE,
    ISOLATION,
    LIVENESS,
    MEMORY,
    RESILIENCE,
    STREAM,
    TRANSFORM,
)


@dataclass(frozen=True)
class Plan:
    """How one requirement is checked (every field off by default)."""

    #: The state machine's rules its generated programs use (empty: not checked by programs).
    rules: frozenset[str] = frozenset()
    #: Each program first chooses one of these requirements' rule sets (and
    #: shrinks towards the first): a violation any of their programs can reach
    #: is looked for under this requirement.
    scenarios: tuple[str, ...] = ()
    #: Programs run only against an in-process server (what they need, the
    #: server's own descriptor limit, cannot be arranged from outside).
    in_process_only: bool = False
    #: After a connection ends (half-close, abort, close), a new one must be served.
    probe_after_end: bool = False
    #: After every flood, while the flooder does not read, a new connection must be served.
    probe_beside_floods: bool = False
    #: After every step, nothing may be held for a connection that has ended.
    released_after_each_step: bool = False
    #: At the end of a program, every open client half-closes (all echo and EOF must come).
    half_close_at_end: bool = False
    #: ...then every client closes, one more connects, and the server is closed with it:
    #: its close() must release everything.
    close_server_at_end: bool = False
    #: The check also plays the idle program (a connection left alone must stay open).
    plays_idle_program: bool = False
    #: The name of its measurement in `spec.measure.MEASURES`, if it is measured.
    measured: bool = False


#: A client that sends and ends its connection at once, while the server is
#: still to read what it sent (the server frozen meanwhile: `Driver.frozen`).
_RACES = frozenset({"send_and_abort", "send_and_close"})

#: ECHO-1, -3 and -7 run subsets of ECHO-2's rules.
_READ_WRITE = frozenset({"connect", "send", "read", "drain"})

PLANS: dict[str, Plan] = {
    TRANSFORM: Plan(rules=_READ_WRITE),
    STREAM: Plan(rules=_READ_WRITE | {"flood", "burst"}, plays_idle_program=True),
    ISOLATION: Plan(rules=_READ_WRITE | {"burst"}),
    # Flood, then half-close (in one step, or two), or send and half-close at
    # once: the EOF arrives while echo is still queued.
    HALF_CLOSE: Plan(
        rules=frozenset(
            {"connect", "send", "flood", "half_close", "send_and_half_close"}
            | {"flood_and_half_close"}
        ),
        half_close_at_end=True,
    ),
    # A crash can hide behind any rule (a reset while echo is still queued, the
    # backpressure path), so it runs them all, and the narrower scenarios whose
    # programs reach a crash its wide ones rarely do (flood, then half-close).
    RESILIENCE: Plan(
        rules=_READ_WRITE
        | {"flood", "burst", "half_close", "send_and_half_close", "abort", "close"}
        | {"flood_and_half_close"}
        | _RACES,
        scenarios=(RESILIENCE, HALF_CLOSE, CLEANUP, STREAM),
        probe_after_end=True,
    ),
    CLEANUP: Plan(
        rules=frozenset(
            {
                "connect",
                "send",
                "drain",
                "flood",
                "half_close",
                "send_and_half_close",
                "flood_and_half_close",
                "abort",
                "close",
            }
        )
        | _RACES,
        released_after_each_step=True,
        half_close_at_end=True,
        close_server_at_end=True,
    ),
    LIVENESS: Plan(rules=_READ_WRITE | {"flood"}, probe_beside_floods=True),
    MEMORY: Plan(measured=True),
    IDLE: Plan(measured=True),
    # In-process, first the server's own limit (EMFILE), then the measurement.
    CAPACITY: Plan(
        rules=frozenset({"connect", "send", "close", "connect_out_of_descriptors"}),
        in_process_only=True,
        measured=True,
    ),
}

#: The rules each requirement's programs use (the requirements checked by programs).
RULES: dict[str, frozenset[str]] = {req: p.rules for req, p in PLANS.items() if p.rules}


def plan(req_id: str) -> Plan:
    return PLANS[req_id]
