"""Check one requirement against one target and return its verdict.

    outcome = check(Target("impl", "impl.seed_upper_server:SeedUpperServer"), "ECHO-5")
    outcome.verdict        # "fail"
    outcome.detail         # the diagnosis
    outcome.counterexample # the shrunk step program
    outcome.replay         # one command that replays it

ECHO-1 to ECHO-7 are checked by the Hypothesis state machine (`spec.machine`);
ECHO-8 to ECHO-10 are measured (`spec.measure`).
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis.errors import Flaky, Unsatisfiable
from hypothesis.stateful import run_state_machine_as_test

from spec import measure
from spec.drivers.base import HOST
from spec.drivers.server_process import ServerProcess
from spec.machine import RULES, ConformanceFailure, EchoConformance
from spec.model import Violation
from spec.requirements import requirement
from spec.targets import Target, load_impl

#: Default seconds a process-driven server has for anything the checker awaits.
DEFAULT_SETTLE = 2.0


@dataclass
class Outcome:
    requirement: str
    level: str
    verdict: str  # "pass", "fail" or "not-run"
    detail: str = ""
    counterexample: str = ""
    replay: str = ""
    seconds: float = 0.0
    program: list[str] = field(default_factory=list)
    violation: Violation | None = None

    def as_report(self) -> dict[str, str]:
        """The fields of the JSON report's entry for this requirement."""
        return {"level": self.level, "verdict": self.verdict, "detail": self.detail,
                "counterexample": self.counterexample, "replay": self.replay,
                "seconds": self.seconds}


def check(target: Target, req_id: str, *, settle: float = DEFAULT_SETTLE,
          hypothesis_settings: settings | None = None) -> Outcome:
    level = requirement(req_id).level.value
    start = time.monotonic()
    preflight(target)
    if req_id in RULES:
        outcome = _check_by_machine(target, req_id, settle, hypothesis_settings)
    else:
        violation, detail = measure.MEASURES[req_id](target.as_process(), settle)
        outcome = Outcome(req_id, level, "fail" if violation else "pass",
                          violation.describe() if violation else detail, violation=violation)
    outcome.level = level
    outcome.seconds = round(time.monotonic() - start, 3)
    return outcome


def preflight(target: Target) -> None:
    """Start and stop the target once, so a server that cannot start fails
    with one clear `ServerStartError` instead of inside every example."""
    if target.kind == "cmd":
        ServerProcess(target.spec).start().close()
    else:
        server = load_impl(target.spec)(HOST, 0)
        server.close()


def machine_factory(target: Target, req_id: str, settle: float):
    def factory() -> EchoConformance:
        return EchoConformance(target.driver(settle), req_id)

    # One example database entry per target and requirement.
    factory._hypothesis_internal_add_digest = f"{target.kind}|{target.spec}|{req_id}".encode()
    return factory


def _check_by_machine(target: Target, req_id: str, settle: float,
                      base: settings | None) -> Outcome:
    s = settings(
        base or settings(),
        deadline=None,
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
    )
    try:
        run_state_machine_as_test(machine_factory(target, req_id, settle), settings=s)
    except ConformanceFailure as failure:
        return Outcome(
            req_id, "", "fail", detail=failure.violation.describe(),
            counterexample="\n".join(failure.program), program=failure.program,
            violation=failure.violation,
            replay=replay_command(target, req_id, failure.program, settle))
    except Unsatisfiable:
        return Outcome(req_id, "", "not-run",
                       detail="every generated program broke another requirement first, so "
                       "this one could not be judged; fix the others and run again")
    except Flaky as e:
        # A violation that did not happen again when Hypothesis replayed the
        # same program: the verdict depends on timing, so give none.
        return Outcome(req_id, "", "not-run", detail=(
            "a violation appeared once but did not reproduce when the same program was "
            f"replayed, so it depends on timing ({type(e).__name__}). On a loaded machine "
            f"raise --settle (now {settle:g} s); otherwise the server is racy: run again "
            "with --hypothesis-profile thorough to catch it reproducibly"))
    return Outcome(req_id, "", "pass", detail="no violation found")


def replay_command(target: Target, req_id: str, program: list[str], settle: float) -> str:
    option = "--impl" if target.kind == "impl" else "--server-cmd"
    words = ["python", "-m", "spec.replay", option, target.spec, "--expect", req_id]
    if target.kind == "cmd" and settle != DEFAULT_SETTLE:
        words += ["--settle", f"{settle:g}"]
    return shlex.join(words + program)

