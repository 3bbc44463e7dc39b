"""Which requirement a symptom breaks, when the program shows its cause.

Design note
-----------
`model.diagnose()` names a requirement from what *one* connection saw: an
EOF the client did not ask for is a broken stream (ECHO-2), bytes beyond the
echo of what was sent are inserted bytes (ECHO-2).  The state machine knows
more: what every client did, and in what order.  An EOF on c1 in the step in
which c0 reset its connection is a reset affecting another connection, which
ECHO-5 names; bytes duplicated in the echo a client read after it half-closed
with echo still owed are what ECHO-4 is about.  `CAUSES` says so, as data;
`attribute()` applies it, a pure function of the violation and the program's
events, so a replay of the same program names the same requirement.

A rule names the step that causes (``abort``, ``half_close``, ...), where
the symptom must be seen (on another connection, or the acting client's
own), which symptoms it explains (the requirement `diagnose()` names and
what the client saw, `model.Symptom`), and, on the acting client's own
connection, that the symptom lies in bytes received after the cause (what it
had read before was checked then).  Every step is judged as soon as it has
settled, so the first violation after a cause is seen in the first step that
looks at that connection: a client that floods reads nothing, and sees the
end of its connection only when it reads again, steps later.

Attribution is a hypothesis about a cause; the checker tests it before it
reports it (`spec.checker`): the program is run again *without* the cause
step, and if the same symptom still shows, the cause was not needed and the
violation is reported under the symptom's own requirement after all.  A
stream that loses bytes on every short write is an ECHO-2 defect, even when a
half-close happened to come first.  A violation the model names ECHO-4 itself
(the server closed after a half-close with echo undelivered) is tested the
same way, without the client's half-close (`counterfactual`): a server that
ends the stream at a NUL byte does so half-closed or not, and one fault is
one failure, ECHO-2's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from spec.model import Symptom, Violation
from spec.program import parse
from spec.requirements import HALF_CLOSE, RESILIENCE, STREAM


class Where(Enum):
    """Where a rule's symptom is seen, relative to the client that acted."""

    OTHER = "another connection"
    SAME = "the acting client's own connection"


@dataclass(frozen=True)
class Event:
    """One step a client took that can cause a symptom, as the machine recorded it."""

    #: The program line's index (0-based) of the step.
    step: int
    #: The rule: "abort", "close", "half_close", "send_and_half_close", "send_and_abort", ...
    rule: str
    #: The acting client's name.
    client: str
    #: Echo bytes the client was still owed when it acted.
    owed: int
    #: Echo bytes it had received (and that were checked) when it acted.
    received: int


@dataclass(frozen=True)
class Cause:
    """A step that, followed by one of `symptoms`, means `requirement` is broken."""

    #: The rules that are this cause.
    rules: frozenset[str]
    #: Where the symptom is seen.
    where: Where
    #: The requirements `model.diagnose()` names for the symptom.
    symptoms: frozenset[str]
    #: What the client saw.
    kinds: frozenset[Symptom]
    #: The requirement it is attributed to.
    requirement: str
    #: Only when the acting client was still owed echo at that moment.
    owed: bool
    #: How the diagnosis says it; {client} and {owed} are filled in.
    words: str


#: The steps that half-close a client (each with what it does besides, if anything).
_HALF_CLOSES = frozenset({"half_close", "send_and_half_close", "flood_and_half_close"})

#: The rules, in the order they are tried.
CAUSES: tuple[Cause, ...] = (
    Cause(
        rules=frozenset({"abort", "send_and_abort"}),
        where=Where.OTHER,
        symptoms=frozenset({STREAM, HALF_CLOSE}),
        kinds=frozenset({Symptom.CLOSED, Symptom.MISSING}),
        requirement=RESILIENCE,
        owed=False,
        words="right after {client} reset its connection",
    ),
    # close() with echo unread: the client's kernel answers with a reset.
    Cause(
        rules=frozenset({"close"}),
        where=Where.OTHER,
        symptoms=frozenset({STREAM, HALF_CLOSE}),
        kinds=frozenset({Symptom.CLOSED, Symptom.MISSING}),
        requirement=RESILIENCE,
        owed=True,
        words="right after {client} closed with {owed} echo bytes unread (a reset)",
    ),
    # Sent and closed before the server read it: its echo meets a closed socket.
    Cause(
        rules=frozenset({"send_and_close"}),
        where=Where.OTHER,
        symptoms=frozenset({STREAM, HALF_CLOSE}),
        kinds=frozenset({Symptom.CLOSED, Symptom.MISSING}),
        requirement=RESILIENCE,
        owed=False,
        words="right after {client} sent and closed at once (its echo met a closed socket)",
    ),
    Cause(
        rules=_HALF_CLOSES,
        where=Where.SAME,
        symptoms=frozenset({STREAM}),
        kinds=frozenset({Symptom.BYTES}),
        requirement=HALF_CLOSE,
        owed=True,
        words="after {client} half-closed with {owed} echo bytes still owed",
    ),
)


def attribute(violation: Violation, events: Sequence[Event]) -> Violation:
    """`violation`, seen after `events`, under the requirement its cause names.

    Unchanged when no rule of `CAUSES` explains it.  An attributed violation
    keeps the symptom's requirement (`symptom`) and the cause's line
    (`cause_step`), so that the checker can test the attribution.
    """
    if violation.symptom is not None or violation.connection is None:
        return violation  # attributed already, or not seen on a connection
    for event in reversed(events):
        cause = _explains(violation, event)
        if cause is not None:
            words = cause.words.format(client=event.client, owed=event.owed)
            return dataclasses.replace(
                violation,
                requirement=cause.requirement,
                symptom=violation.requirement,
                cause=words,
                cause_step=event.step,
            )
    return violation


def _explains(violation: Violation, event: Event) -> Cause | None:
    for cause in CAUSES:
        if (
            event.rule not in cause.rules
            or violation.requirement not in cause.symptoms
            or violation.kind not in cause.kinds
            or (cause.owed and event.owed <= 0)
        ):
            continue
        same = violation.connection == event.client
        if same != (cause.where is Where.SAME):
            continue
        if same and (violation.offset is None or violation.offset < event.received):
            continue  # the bytes had arrived, and were right, before the cause
        return cause
    return None


def without_cause(program: Sequence[str], violation: Violation) -> list[str] | None:
    """The program without the attributed cause (None if not attributed).

    The cause's line is left out, except that a ``send_and_half_close`` keeps
    its send and a ``flood_and_half_close`` its flood: the half-close is the
    cause, not the bytes.
    """
    if violation.cause_step is None or not 0 <= violation.cause_step < len(program):
        return None
    return _without_line(program, violation.cause_step)


def counterfactual(program: Sequence[str], violation: Violation) -> tuple[list[str], str] | None:
    """The program that tests whether `violation` needed its cause, and the
    requirement whose violation on the same connection there says it did not.

    An attributed violation: the program without its cause step, judged for
    the symptom's own requirement.  A violation the model names ECHO-4 itself
    (a close, a reset or missing echo after the client half-closed): the
    program without that client's half-close, judged for ECHO-2.  A server
    that closes a stream at a NUL byte closes it whether or not the client
    half-closed: that is one stream fault (ECHO-2), not also a half-close fault.
    None when there is nothing to test.
    """
    if violation.symptom is not None:
        without = without_cause(program, violation)
        return None if without is None else (without, violation.symptom)
    if violation.requirement != HALF_CLOSE or violation.connection is None:
        return None
    for i, line in enumerate(program):
        step = parse(line)
        if step.rule in _HALF_CLOSES and step.client == violation.connection:
            return _without_line(program, i), STREAM
    return None


def _without_line(program: Sequence[str], step: int) -> list[str]:
    """The program without line `step`; a half-close that also sends keeps its send."""
    line = program[step]
    kept = []
    for rule, written_as in _KEPT.items():
        prefix = f"state.{rule}("
        if line.startswith(prefix):
            kept = [written_as.format(line[len(prefix) : -1])]
    return [*program[:step], *kept, *program[step + 1 :]]


#: What a half-close that also sends leaves, written as the machine writes it
#: (`writes` is a keyword with a default).
_KEPT = {
    "send_and_half_close": "state.send({}, writes=1)",
    "flood_and_half_close": "state.flood({})",
}
