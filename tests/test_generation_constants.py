"""A derandomized check draws the same programs whatever the process imported before.

Hypothesis mixes the literals of the local modules imported so far into what
it generates; the checker turns that off (see spec/_constants.py).  Without
it this check found the defect in a fresh interpreter and missed it once the
other servers and the replay helpers had been imported, as they are when
other tests have run first in the same xdist worker.
"""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
from hypothesis import Phase, settings
from spec.checker import check
from spec.targets import Target
outcome = check(Target("impl", "impl.zoo.resilience:UncaughtSendErrorServer"), "ECHO-5",
                hypothesis_settings=settings(max_examples=40, stateful_step_count=15,
                                             derandomize=True, database=None,
                                             phases=[Phase.explicit, Phase.generate]))
print(json.dumps([outcome.verdict, outcome.program]))
"""
IMPORTED_BEFORE = [
    "impl.selectors_server",
    "impl.asyncio_server",
    "impl.threaded_server",
    "impl.seed_echo_server",
    "impl.seed_upper_server",
    "spec.replay",
]


def _verdict_and_program(*imported_before: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *imported_before],
        text=True,
        capture_output=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def test_earlier_imports_do_not_change_the_programs() -> None:
    assert _verdict_and_program() == _verdict_and_program(*IMPORTED_BEFORE)
