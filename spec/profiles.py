"""Hypothesis settings profiles for the checker and the self-suite.

dev       the default: random programs; the example database (.hypothesis/)
          replays stored failures first.
ci        chosen when CI is set: derandomized, so every run generates the
          same programs and gives the same verdicts; bounded in time.
thorough  long runs that hunt for rare defects:
          pytest --hypothesis-profile thorough ...
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

from spec._hypothesis import current_profile

settings.register_profile("dev", max_examples=40, stateful_step_count=15, deadline=None)
settings.register_profile(
    "ci",
    max_examples=40,
    stateful_step_count=15,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough", max_examples=1000, stateful_step_count=40, deadline=None, phases=list(Phase)
)


#: Seconds the idle program leaves a connection alone, per profile (default 6 s).
IDLE_PROGRAM_SECONDS = {"thorough": 65}


def idle_seconds() -> int:
    """How long the current profile idles: past common idle timeouts (5 s; 60 s if thorough)."""
    from spec.machine import IDLE_PROGRAM_SECONDS as default

    return IDLE_PROGRAM_SECONDS.get(current_profile(), default)


def load_default() -> None:
    settings.load_profile("ci" if os.environ.get("CI") else "dev")
