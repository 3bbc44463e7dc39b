"""The mutation-score target: the conformance checker against the reference.

Runs every requirement of spec/requirements.py against
impl.select_server:SelectEchoServer: ECHO-1..7 with the Hypothesis state
machine, in-process, derandomized (the same programs for every mutant);
ECHO-8/9/10 measured on the server run as a process
(``python -m spec.drivers.run_impl``, which inherits MUTANT_UNDER_TEST and
imports the mutated module from the working directory, mutants/).

One test, not one per requirement: mutmut maps a mutant to the tests that
called its function *in this process*, and the measured requirements call
the server's functions only in a child process, so per-requirement tests
would never be run for most mutants.  The test stops at the first requirement
that fails and logs which one (KILL_LOG) so the report can say what killed
each mutant.
"""

from __future__ import annotations

import json
import os
import time

from hypothesis import Phase, settings

from spec.checker import check
from spec.targets import Target

REFERENCE = Target("impl", "impl.select_server:SelectEchoServer")
#: Derandomized: every mutant meets the same step programs.  Not shrunk: a
#: mutant is killed by its first failing program, whatever its size.
MACHINE_SETTINGS = settings(
    max_examples=30,
    stateful_step_count=15,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
SETTLE = 0.5
#: Cheapest first, so a killed mutant is usually killed in under a second.
ORDER = [
    "ECHO-5",
    "ECHO-6",
    "ECHO-4",
    "ECHO-1",
    "ECHO-3",
    "ECHO-2",
    "ECHO-7",
    "ECHO-9",
    "ECHO-10",
    "ECHO-8",
]
ONLY = [r for r in os.environ.get("MUT_REQS", "").split(",") if r] or ORDER
KILL_LOG = os.environ.get("MUT_KILL_LOG", "kills.jsonl")


def _log(entry: dict) -> None:
    entry["mutant"] = os.environ.get("MUTANT_UNDER_TEST", "")
    with open(KILL_LOG, "a") as f:
        f.write(json.dumps(entry) + "\n")


def test_checker_passes_the_reference() -> None:
    for req_id in ONLY:
        start = time.monotonic()
        try:
            outcome = check(REFERENCE, req_id, settle=SETTLE, hypothesis_settings=MACHINE_SETTINGS)
        except BaseException as e:
            _log(
                {
                    "req": req_id,
                    "verdict": "error",
                    "detail": f"{type(e).__name__}: {e}"[:500],
                    "seconds": round(time.monotonic() - start, 2),
                }
            )
            raise
        if outcome.verdict != "pass":
            _log(
                {
                    "req": req_id,
                    "verdict": outcome.verdict,
                    "detail": outcome.detail[:500],
                    "program": outcome.program,
                    "seconds": outcome.seconds,
                }
            )
        assert outcome.verdict == "pass", f"{req_id}: {outcome.detail}\n{outcome.counterexample}"
