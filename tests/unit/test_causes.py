"""Attribution by cause (spec/causes.py): every rule, where it applies and where it must not.

The rules are pure (a violation and the program's events in, a violation
out), so each is tested here without a server; `test_nothing_lost.py` runs
them against servers.
"""

from __future__ import annotations

import pytest

from spec.causes import CAUSES, Event, Where, attribute, counterfactual, without_cause
from spec.model import Symptom, Violation, diagnose
from spec.requirements import HALF_CLOSE, RESILIENCE, STREAM, TRANSFORM

CLOSED_C1 = Violation(
    STREAM,
    "server closed a connection the client had not closed, after 2 of 2 echo bytes",
    offset=2,
    connection="c1",
    kind=Symptom.CLOSED,
)
LOST_C1 = Violation(
    STREAM,
    "5 echo bytes never arrived",
    offset=0,
    connection="c1",
    waited=True,
    kind=Symptom.MISSING,
)
EXTRA_C0 = Violation(
    STREAM,
    "received 218 bytes more than the echo of what was sent (duplicated or inserted)",
    offset=1000,
    connection="c0",
    kind=Symptom.BYTES,
)


def event(rule: str, client: str = "c0", owed: int = 0, received: int = 0, step: int = 2) -> Event:
    return Event(step, rule, client, owed, received)


#: The steps that attribute a symptom in a test below.
TESTED = {
    "abort",
    "send_and_abort",
    "close",
    "send_and_close",
    "half_close",
    "send_and_half_close",
    "flood_and_half_close",
}


def test_every_rule_is_tested_here() -> None:
    assert set().union(*(c.rules for c in CAUSES)) == TESTED
    assert all(c.requirement in (RESILIENCE, HALF_CLOSE) for c in CAUSES)


@pytest.mark.parametrize("rule", ["send_and_abort", "send_and_close"])
def test_a_race_ends_another_connection_is_resilience(rule: str) -> None:
    v = attribute(CLOSED_C1, [event(rule, "c0", owed=8192)])
    assert v.requirement == RESILIENCE and v.symptom == STREAM


# -- a reset affects another connection: ECHO-5 ------------------------------------------


@pytest.mark.parametrize("symptom", [CLOSED_C1, LOST_C1], ids=["closed", "lost"])
def test_a_symptom_on_another_connection_after_a_reset_is_resilience(symptom: Violation) -> None:
    v = attribute(symptom, [event("abort", "c0")])
    assert v.requirement == RESILIENCE
    assert v.symptom == STREAM and v.cause_step == 2
    assert v.describe().startswith(
        f"ECHO-5: right after c0 reset its connection, {symptom.summary}"
    )


def test_a_close_with_echo_unread_is_a_reset_too() -> None:
    v = attribute(CLOSED_C1, [event("close", "c0", owed=100)])
    assert v.requirement == RESILIENCE
    assert "closed with 100 echo bytes unread (a reset)" in v.describe()


def test_an_orderly_close_causes_nothing() -> None:
    """close() with nothing unread sends FIN, not a reset: no cause."""
    assert attribute(CLOSED_C1, [event("close", "c0", owed=0)]) == CLOSED_C1


def test_a_reset_explains_nothing_on_its_own_connection() -> None:
    own = Violation(STREAM, "x", offset=0, connection="c0", kind=Symptom.CLOSED)
    assert attribute(own, [event("abort", "c0")]) == own


def test_a_reset_explains_no_wrong_bytes() -> None:
    """Bytes out of order on c1 are not what a reset of c0 does."""
    wrong = Violation(STREAM, "reordered", offset=3, connection="c1", kind=Symptom.BYTES)
    assert attribute(wrong, [event("abort", "c0")]) == wrong


def test_only_the_listed_requirements_are_explained() -> None:
    transform = Violation(TRANSFORM, "x", offset=0, connection="c1", kind=Symptom.BYTES)
    assert attribute(transform, [event("abort", "c0")]) == transform


def test_nothing_before_its_cause() -> None:
    assert attribute(CLOSED_C1, []) == CLOSED_C1
    assert attribute(CLOSED_C1, [event("half_close", "c0", owed=10)]) == CLOSED_C1


# -- a half-close with echo queued: ECHO-4 -----------------------------------------------


@pytest.mark.parametrize("rule", ["half_close", "send_and_half_close", "flood_and_half_close"])
def test_wrong_bytes_after_a_half_close_with_echo_owed_are_half_close(rule: str) -> None:
    v = attribute(EXTRA_C0, [event(rule, "c0", owed=1613200, received=0)])
    assert v.requirement == HALF_CLOSE and v.symptom == STREAM
    assert "after c0 half-closed with 1613200 echo bytes still owed" in v.describe()


def test_no_echo_owed_at_the_half_close_no_cause() -> None:
    assert attribute(EXTRA_C0, [event("half_close", "c0", owed=0)]) == EXTRA_C0


def test_bytes_received_before_the_half_close_are_not_its_doing() -> None:
    """The divergence lies in bytes the client had read (and that were checked) before."""
    v = attribute(EXTRA_C0, [event("half_close", "c0", owed=10, received=1500)])
    assert v == EXTRA_C0


def test_a_half_close_explains_nothing_on_another_connection() -> None:
    other = Violation(STREAM, "extra", offset=5, connection="c1", kind=Symptom.BYTES)
    assert attribute(other, [event("half_close", "c0", owed=10)]) == other


def test_where_each_rule_looks() -> None:
    assert {c.where for c in CAUSES} == {Where.OTHER, Where.SAME}


# -- the data the rules read comes from the model ----------------------------------------


def test_the_model_names_what_the_client_saw() -> None:
    assert diagnose(b"ab", b"AB", eof=True).kind is Symptom.CLOSED
    assert diagnose(b"ab", b"AB", reset=True).kind is Symptom.CLOSED
    assert diagnose(b"ab", b"A", settled=True).kind is Symptom.MISSING
    assert diagnose(b"ab", b"ABX").kind is Symptom.BYTES


def test_an_attributed_violation_can_be_unattributed() -> None:
    v = attribute(CLOSED_C1, [event("abort", "c0")])
    assert v.unattributed() == CLOSED_C1


def test_without_cause_leaves_out_its_line() -> None:
    program = ["c0 = state.connect()", "c1 = state.connect()", "state.abort(c0)"]
    v = attribute(CLOSED_C1, [event("abort", "c0", step=2)])
    assert without_cause(program, v) == program[:2]
    assert without_cause(program, CLOSED_C1) is None


def test_without_a_send_and_half_close_its_send_is_kept() -> None:
    program = ["c0 = state.connect()", "state.send_and_half_close(c0, Payload(b'ab'))"]
    v = attribute(EXTRA_C0, [event("send_and_half_close", "c0", owed=2, step=1)])
    assert without_cause(program, v) == [
        "c0 = state.connect()",
        "state.send(c0, Payload(b'ab'), writes=1)",
    ]


HALF_CLOSED_C1 = Violation(
    HALF_CLOSE,
    "server closed after half-close with 1 echo bytes undelivered, after 0 of 1 echo bytes",
    offset=0,
    connection="c1",
    kind=Symptom.CLOSED,
)


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        ("state.half_close(c1)", []),
        (
            "state.send_and_half_close(c1, Payload(b'\\x00'))",
            ["state.send(c1, Payload(b'\\x00'), writes=1)"],
        ),
        (
            "state.flood_and_half_close(c1, Payload(b'ab', 65536))",
            ["state.flood(c1, Payload(b'ab', 65536))"],
        ),
    ],
)
def test_an_echo_4_violation_is_tested_without_its_half_close(line: str, kept: list[str]) -> None:
    program = ["c0 = state.connect()", "c1 = state.connect()", "state.half_close(c0)", line]
    assert counterfactual(program, HALF_CLOSED_C1) == (program[:3] + kept, STREAM)


def test_what_has_no_cause_to_leave_out_is_not_tested() -> None:
    program = ["c0 = state.connect()", "state.abort(c0)"]
    assert counterfactual(program, CLOSED_C1) is None  # not attributed
    assert counterfactual(program, HALF_CLOSED_C1) is None  # c1 never half-closed
    v = attribute(CLOSED_C1, [event("abort", "c0", step=1)])
    assert counterfactual(program, v) == (["c0 = state.connect()"], STREAM)
