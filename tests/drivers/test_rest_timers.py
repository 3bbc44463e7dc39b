"""A server asleep until a time (nanosleep) is not at rest while echo is owed.

A correct server that sleeps between writes (rate limiting, a `time.sleep`
in its loop) was judged at rest inside one of its sleeps: two equal looks,
every thread asleep, so "echo never arrived" (a false ECHO-2).  The thread
will run again by itself; only past `--echo-settle` without a byte moving
does the clock judge.
"""

from __future__ import annotations

import sys

from harness import SERVERS

from spec.drivers import threads
from spec.replay import run_program
from spec.targets import Target

TRICKLE = SERVERS / "trickle_server.py"
SLEEPER = Target(
    "cmd",
    f"env TRICKLE_WRITE=4096 TRICKLE_PAUSE=0.004 {sys.executable} {TRICKLE} --port {{port}}",
    name="sleeper",
)


def test_a_sleeping_thread_is_named() -> None:
    number = {v: k for k, v in threads.TIMERS.items()}.get("clock_nanosleep")
    if number is None:
        return  # an architecture this module does not name calls for
    assert threads._syscall(f"{number} 0x1 0x0 0x7ffd 0x0 0x0 0x0 0x7ffd 0x7f") == (
        "clock_nanosleep",
        None,
    )
    sleeping = threads.Thread(1, 1, "S", 5, "clock_nanosleep")
    assert sleeping.on_a_timer and not sleeping.waits_for_events


def test_a_server_that_sleeps_between_writes_is_waited_for() -> None:
    program = [
        "c0 = state.connect()",
        "state.send(c0, Payload(b'a', 262144), writes=1)",
        "state.send(c0, Payload(b'b', 65536), writes=4)",
    ]
    assert run_program(SLEEPER, "ECHO-2", program) is None
