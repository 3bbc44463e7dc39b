"""Check one requirement against one target and return its verdict.

    outcome = check(Target("impl", "impl.seed_upper_server:SeedUpperServer"), "ECHO-5")
    outcome.verdict        # "fail"
    outcome.detail         # the diagnosis
    outcome.counterexample # the shrunk step program
    outcome.replay         # one command that replays it

ECHO-1 to ECHO-7 are checked by the Hypothesis state machine (`spec.machine`);
ECHO-8 to ECHO-10 are measured (`spec.measure`); in-process, ECHO-10 also
runs the machine first (the server out of descriptors).
"""

from __future__ import annotations

import contextlib
import shlex
import time
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis.errors import Flaky, Unsatisfiable
from hypothesis.stateful import run_state_machine_as_test

from spec import measure
from spec._constants import no_local_constants
from spec.drivers.base import HOST
from spec.drivers.network import PrivateNetwork
from spec.drivers.server_process import ServerProcess, ServerSupply
from spec.machine import RULES, ConformanceFailure, EchoConformance, machine_for
from spec.model import Violation
from spec.requirements import requirement
from spec.targets import Target, TargetError, load_impl

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
    #: Seconds from the start to the first violation of this requirement (before shrinking).
    first_failure: float | None = None
    program: list[str] = field(default_factory=list)
    violation: Violation | None = None

    def as_report(self) -> dict[str, str]:
        """The fields of the JSON report's entry for this requirement."""
        return {"level": self.level, "verdict": self.verdict, "detail": self.detail,
                "counterexample": self.counterexample, "replay": self.replay,
                "seconds": self.seconds}


def check(target: Target, req_id: str, *, settle: float = DEFAULT_SETTLE,
          hypothesis_settings: settings | None = None, seed: int | None = None) -> Outcome:
    """Judge `target` against one requirement.

    `seed` fixes Hypothesis' random programs (as pytest's --hypothesis-seed
    does); without it they come from the settings (derandomized in CI).
    """
    level = requirement(req_id).level.value
    start = time.monotonic()
    no_local_constants()
    preflight(target)
    outcome = None
    # ECHO-10 has a machine part only in-process (the server's own descriptor
    # limit, see EchoConformance.connect_out_of_descriptors); it comes first.
    if req_id in RULES and (req_id not in measure.MEASURES or target.kind == "impl"):
        outcome = _check_by_machine(target, req_id, settle, hypothesis_settings, seed)
    if req_id in measure.MEASURES and (outcome is None or outcome.verdict == "pass"):
        violation, detail = measure.MEASURES[req_id](target.as_process(), settle)
        outcome = Outcome(req_id, level, "fail" if violation else "pass",
                          violation.describe() if violation else detail, violation=violation)
    outcome.level = level
    outcome.seconds = round(time.monotonic() - start, 3)
    if outcome.verdict == "fail" and outcome.first_failure is None:
        outcome.first_failure = outcome.seconds  # measured: found when it ended
    elif outcome.first_failure is not None:
        outcome.first_failure = round(outcome.first_failure - start, 3)
    return outcome


def preflight(target: Target) -> None:
    """Start and stop the target once, so a server that cannot start fails
    with one clear `ServerStartError` instead of inside every example."""
    if target.kind == "cmd":
        ServerProcess(target.spec).start().close()
    else:
        cls = load_impl(target.spec)
        try:
            server = cls(HOST, 0)
        except Exception as e:
            raise TargetError(f"--impl {target.spec}: {cls.__name__}({HOST!r}, 0) raised "
                              f"{type(e).__name__}: {e}; a steppable server is constructed "
                              "as cls(host, port) and listens at once") from None
        try:
            server.close()
        except Exception as e:
            raise TargetError(f"--impl {target.spec}: close() of a server that never had a "
                              f"connection raised {type(e).__name__}: {e}") from None


def machine_factory(target: Target, req_id: str, settle: float,
                    failures: list[ConformanceFailure] | None = None, seed: int | None = None,
                    supply: ServerSupply | None = None):
    """A machine factory for Hypothesis; `failures` collects every violation
    of `req_id` seen, even ones a replay does not reproduce; a command's
    servers come from `supply`."""
    def factory() -> EchoConformance:
        return machine_for(req_id)(target.driver(settle, supply), req_id, failures)

    # One example database entry per target and requirement.
    factory._hypothesis_internal_add_digest = f"{target.kind}|{target.spec}|{req_id}".encode()
    if seed is not None:
        factory._hypothesis_internal_use_seed = seed
    return factory


def _check_by_machine(target: Target, req_id: str, settle: float,
                      base: settings | None, seed: int | None) -> Outcome:
    base = base or settings()
    s = settings(
        base,
        max_examples=base.max_examples * machine_for(req_id).budget_factor,
        deadline=None,
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
    )
    seen: list[ConformanceFailure] = []
    # A fresh server per program, each launched while the program before runs.
    supply = (ServerSupply(target.spec, network=PrivateNetwork.shared())
              if target.kind == "cmd" else None)
    try:
        with supply or contextlib.nullcontext():
            run_state_machine_as_test(
                machine_factory(target, req_id, settle, seen, seed, supply), settings=s)
    except ConformanceFailure as failure:
        return _failed(target, req_id, settle, failure, first=seen[0] if seen else failure)
    except Unsatisfiable:
        return Outcome(req_id, "", "not-run",
                       detail="every generated program broke another requirement first, so "
                       "this one could not be judged; fix the others and run again")
    except Flaky as e:
        # Hypothesis replayed a program and it behaved differently: the server
        # (or, under --settle, the machine's load) is timing-dependent.
        advice = (f"it did not reproduce when the same program was replayed "
                  f"({type(e).__name__}): the server's behaviour depends on timing"
                  + (f"; on a loaded machine raise --settle (now {settle:g} s)"
                     if target.kind == "cmd" else ""))
        if seen:  # the requirement *was* violated, at least once
            return _failed(target, req_id, settle, seen[-1], note=advice, first=seen[0])
        return Outcome(req_id, "", "not-run", detail=(
            "another requirement broke once and not again on replay, so this one could not "
            f"be judged: {advice}"))
    return Outcome(req_id, "", "pass", detail="no violation found")


def _failed(target: Target, req_id: str, settle: float, failure: ConformanceFailure,
            *, first: ConformanceFailure, note: str = "") -> Outcome:
    detail = failure.violation.describe() + (f"\n  note: {note}" if note else "")
    return Outcome(req_id, "", "fail", detail=detail, first_failure=first.seen_at,
                   counterexample="\n".join(failure.program), program=failure.program,
                   violation=failure.violation,
                   replay=replay_command(target, req_id, failure.program, settle))


def replay_command(target: Target, req_id: str, program: list[str], settle: float) -> str:
    option = "--impl" if target.kind == "impl" else "--server-cmd"
    words = ["python", "-m", "spec.replay", option, target.spec, "--expect", req_id]
    if target.kind == "cmd" and settle != DEFAULT_SETTLE:
        words += ["--settle", f"{settle:g}"]
    return shlex.join(words + program)

