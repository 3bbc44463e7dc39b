"""spec/shrink.py: greedy deletion of clients and steps, with the replay as the test."""

from __future__ import annotations

import time

from spec.shrink import renumber, shrink

PROGRAM = [
    "c0 = state.connect()",
    "state.burst(2, Payload(b'c1'))",
    "c3 = state.connect()",
    "state.send(c0, Payload(b'ab'), writes=1)",
    "state.send(c3, Payload(b'c3 is a payload, not a name'), writes=1)",
    "state.abort(c3)",
    "state.teardown()",
]


def test_deletes_what_is_not_needed_and_renames_clients() -> None:
    def needs_an_abort(lines: list[str]) -> bool:
        return any("abort" in line for line in lines)

    shrunk = shrink(PROGRAM, needs_an_abort)
    assert shrunk.complete
    assert shrunk.program == ["c0 = state.connect()", "state.abort(c0)"]


def test_the_original_stands_when_nothing_smaller_reproduces() -> None:
    shrunk = shrink(PROGRAM, lambda lines: len(lines) >= 6)
    assert shrunk.program == PROGRAM[:-1]  # the teardown line is implied


def test_a_deadline_stops_it() -> None:
    shrunk = shrink(PROGRAM, lambda lines: True, deadline=time.monotonic() - 1)
    assert not shrunk.complete and shrunk.runs == 0


def test_renumber_counts_a_bursts_clients_and_leaves_payloads_alone() -> None:
    lines = [
        "c0 = state.connect()",
        "state.burst(2, Payload(b'c1'))",
        "c3 = state.connect()",
        "state.send(c3, Payload(b'c3'), writes=1)",
    ]
    assert renumber(lines) == lines  # c3 is what the machine calls it: the burst took c1, c2
    assert renumber(["c5 = state.connect()", "state.send(c5, Payload(b'c5'), writes=1)"]) == [
        "c0 = state.connect()",
        "state.send(c0, Payload(b'c5'), writes=1)",
    ]


def test_the_step_that_showed_it_is_kept() -> None:
    """Not seen in the teardown: its last step stays, though the ending alone shows it too."""
    program = ["c0 = state.connect()", "state.half_close(c0)"]
    assert shrink(program, lambda lines: True).program == program


def test_the_last_step_with_its_client_is_tried_first() -> None:
    """10 steps where `connect; abort` reproduces: shrunk in a few runs, not
    one run per step (each run is a fresh server: seconds, not microseconds)."""
    program = [
        "c0 = state.connect()",
        "c1 = state.connect()",
        "state.flood(c1, 1048576)",
        "c2 = state.connect()",
        "state.send(c0, Payload(b'ab'), writes=1)",
        "state.flood(c2, 1048576)",
        "state.drain(c1)",
        "state.flood(c0, 1048576)",
        "state.send(c2, Payload(b'x'), writes=2)",
        "state.abort(c1)",
    ]
    shrunk = shrink(program, lambda lines: any("abort" in line for line in lines))
    assert shrunk.program == ["c0 = state.connect()", "state.abort(c0)"]
    assert shrunk.runs <= 3
