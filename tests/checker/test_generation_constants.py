"""A derandomized check draws the same programs whatever the process imported before.

Hypothesis mixes the literals of the local modules imported so far into what
it generates; the plugin turns that off around each check (``with
no_local_constants():``, spec/_constants.py).  Without it this check found
the defect in a fresh interpreter and missed it once the other servers and
the replay helpers had been imported, as they are when other tests have run
first in the same xdist worker.  Outside the scope Hypothesis is as it was,
so other Hypothesis tests in the process generate as without this package.
"""

from __future__ import annotations

import subprocess
import sys

from hypothesis.internal.conjecture import providers

from spec._hypothesis import no_local_constants

SCRIPT = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
from hypothesis import Phase, settings
from spec._hypothesis import no_local_constants
from spec.checker import check
from spec.targets import Target
with no_local_constants():
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


def test_the_scope_puts_hypothesis_back_as_it_was() -> None:
    original = providers._get_local_constants
    with no_local_constants():
        emptied = providers._get_local_constants
        assert emptied is not original and len(emptied()) == 0
        with no_local_constants():  # nested (a check inside a check): still emptied
            assert providers._get_local_constants is emptied
        assert providers._get_local_constants is emptied
    assert providers._get_local_constants is original
    no_local_constants()  # called, not entered: does nothing
    assert providers._get_local_constants is original


def test_importing_the_checker_patches_nothing() -> None:
    code = (
        "from hypothesis.internal.conjecture import providers as p; f = p._get_local_constants; "
        "import spec.checker, spec.machine, spec.pytest_plugin, spec.test_conformance; "
        "print(p._get_local_constants is f)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "True", done.stderr
