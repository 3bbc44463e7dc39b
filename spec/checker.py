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
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis.errors import Flaky, Unsatisfiable
from hypothesis.stateful import run_state_machine_as_test

from spec import measure
from spec._hypothesis import identify, no_local_constants
from spec.causes import counterfactual
from spec.drivers.base import DEFAULT_SETTLE, HOST
from spec.drivers.network import PrivateNetwork, host_description
from spec.drivers.server_process import ServerProcess, ServerSupply, containment
from spec.machine import (
    BudgetSpent,
    CheckLog,
    ConformanceFailure,
    EchoConformance,
    idle_program,
    machine_for,
)
from spec.model import UPPER, Violation
from spec.plans import plan
from spec.profiles import idle_seconds
from spec.replay import InvalidProgram, run_program
from spec.requirements import IDS, requirement
from spec.shrink import TEARDOWN, shrink
from spec.targets import Target, TargetError, TargetKind, load_impl
from spec.verdicts import Verdict

#: Default seconds one requirement's generated programs may take in all.
DEFAULT_BUDGET = 60.0


@dataclass
class Outcome:
    requirement: str
    level: str
    #: "pass", "fail", "not-run" (not judged: `detail` says why, `masked_by`
    #: names the requirement that broke first) or "inconclusive" (violated
    #: once, not again on a replay: not a verdict on the server).
    verdict: Verdict
    detail: str = ""
    counterexample: str = ""
    replay: str = ""
    seconds: float = 0.0
    #: Seconds from the start to the first violation of this requirement (before shrinking).
    first_failure: float | None = None
    program: list[str] = field(default_factory=list)
    violation: Violation | None = None
    #: Not judged because programs kept breaking this requirement first.
    masked_by: str | None = None
    #: Not judged because the server could not be started at all (every
    #: requirement of the target then says so once, not ten times).
    not_started: bool = False
    #: How the server was run and judged (network, buffers, containment).
    environment: dict[str, object] = field(default_factory=dict)
    #: Violations of *other* requirements this check's programs showed: each
    #: fails its own requirement in the run's verdict (`spec.matrix`).
    findings: list[Finding] = field(default_factory=list)
    #: A timing-dependent failure: (runs that showed it, runs made), each on a
    #: fresh server; None when it showed on every run it was given.
    shown_in: tuple[int, int] | None = None
    #: The failure a cause test withdrew (`_test_attribution`): it stands
    #: again if what masked it is no verdict after all.
    withdrawn: Outcome | None = None
    #: A PASS the time budget cut short: how many programs it saw (a mode
    #: judging by the clock needs enough of them, `spec.judge`).
    cut_short_at: int | None = None

    def as_report(self) -> dict[str, object]:
        """The fields of the JSON report's entry for this requirement."""
        return {
            "level": self.level,
            "verdict": self.verdict,
            "detail": self.detail,
            "counterexample": self.counterexample,
            "replay": self.replay,
            "seconds": self.seconds,
            "masked_by": self.masked_by,
            "environment": self.environment,
            "findings": [f.as_report() for f in self.findings],
        }


@dataclass
class Finding:
    """A violation of `requirement` that the programs of `found_by`'s check showed.

    `verdict` is "fail" when the program, shrunk, showed it again on a fresh
    server (or it is a fact, bytes seen or a death, whatever a replay does);
    "unconfirmed" for a wait that ran out once and never again: noted in the
    report, not a verdict (see spec/PROTOCOL.md, "Nothing is set aside").
    """

    requirement: str
    found_by: str
    verdict: Verdict
    violation: Violation
    program: list[str]
    replay: str
    note: str = ""

    @property
    def detail(self) -> str:
        lines = [
            f"found by the programs that check {self.found_by} "
            f"(they ran a step {self.requirement}'s own programs do not)",
            self.violation.describe(),
        ]
        if self.note:
            lines.append(f"  note: {self.note}")
        return "\n".join(lines)

    def as_report(self) -> dict[str, object]:
        """The fields of its entry in the JSON report (`matrix.FindingEntry`, less evidence)."""
        return {
            "requirement": self.requirement,
            "found_by": self.found_by,
            "verdict": self.verdict,
            "detail": self.detail,
            "counterexample": "\n".join(self.program),
            "replay": self.replay,
        }


def check(
    target: Target,
    req_id: str,
    *,
    settle: float = DEFAULT_SETTLE,
    hypothesis_settings: settings | None = None,
    seed: int | None = None,
    budget: float | None = DEFAULT_BUDGET,
) -> Outcome:
    """Judge `target` against one requirement.

    `seed` fixes Hypothesis' random programs (as pytest's --hypothesis-seed
    does); without it they come from the settings (derandomized in CI).
    `budget`: seconds the generated programs (and their shrinking) may take
    in all; the check then reports what it has (None: no bound).
    """
    with no_local_constants():  # scoped: other Hypothesis tests draw as they would
        return _check(target, req_id, settle, hypothesis_settings, seed, budget)


def _check(
    target: Target,
    req_id: str,
    settle: float,
    hypothesis_settings: settings | None,
    seed: int | None,
    budget: float | None,
) -> Outcome:
    level = requirement(req_id).level.value
    start = time.monotonic()
    preflight(target)
    outcome: Outcome | None = None
    how = plan(req_id)
    if how.rules and (target.kind is TargetKind.IMPL or not how.in_process_only):
        outcome = _check_by_machine(target, req_id, settle, hypothesis_settings, seed, budget)
    if how.measured and (outcome is None or outcome.verdict == Verdict.PASS):
        violation, detail = measure.MEASURES[req_id](target.as_process(), settle)
        outcome = Outcome(
            req_id,
            level,
            Verdict.FAIL if violation else Verdict.PASS,
            violation.describe() if violation else detail,
            violation=violation,
            environment={
                "network": host_description("measured on the host"),
                "containment": containment(),
                **measure.CONDITIONS.get(req_id, {}),
            },
        )
    assert outcome is not None, f"{req_id} has no way to be checked (spec/plans.py)"
    outcome.level = level
    outcome.seconds = round(time.monotonic() - start, 3)
    if outcome.verdict == Verdict.FAIL and outcome.first_failure is None:
        outcome.first_failure = outcome.seconds  # measured: found when it ended
    elif outcome.first_failure is not None:
        outcome.first_failure = round(outcome.first_failure - start, 3)
    return outcome


def preflight(target: Target) -> None:
    """Start and stop the target once, so a server that cannot start fails
    with one clear `ServerStartError` instead of inside every example."""
    if target.kind is TargetKind.CMD:
        ServerProcess(target.spec).start().close()
    else:
        cls = load_impl(target.spec)
        try:
            server = cls(HOST, 0)
        except Exception as e:
            raise TargetError(
                f"--impl {target.spec}: {cls.__name__}({HOST!r}, 0) raised "
                f"{type(e).__name__}: {e}; a steppable server is constructed "
                "as cls(host, port) and listens at once"
            ) from None
        try:
            server.close()
        except Exception as e:
            raise TargetError(
                f"--impl {target.spec}: close() of a server that never had a "
                f"connection raised {type(e).__name__}: {e}"
            ) from None


def machine_factory(
    target: Target,
    req_id: str,
    settle: float,
    log: CheckLog | None = None,
    seed: int | None = None,
    supply: ServerSupply | None = None,
) -> Callable[[], EchoConformance]:
    """A machine factory for Hypothesis; `log` collects what every program
    showed (violations, masks); a command's servers come from `supply`."""

    def factory() -> EchoConformance:
        return machine_for(req_id)(target.driver(settle, supply), req_id, log, target.echo)

    # One example database entry per target, transform and requirement.
    how = "" if target.echo == UPPER else f"|{target.echo.name}"
    digest = f"{target.kind}|{target.spec}|{req_id}{how}".encode()
    identify(factory, digest, seed)
    return factory


def _check_by_machine(
    target: Target,
    req_id: str,
    settle: float,
    base: settings | None,
    seed: int | None,
    budget: float | None,
) -> Outcome:
    base = base or settings()
    s = settings(
        base,
        max_examples=base.max_examples * machine_for(req_id).budget_factor,
        deadline=None,
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,  # the outcome says all; no seeds or tracebacks printed
    )
    end = None if budget is None else time.monotonic() + budget
    log = CheckLog(
        deadline=end,
        end=end,
        shrink_share=None if budget is None else budget * SHRINK_SHARE,
        shrink_limit=SHRINK_RUNS,
    )
    # A fresh server per program, each launched while the programs before run.
    supply = None
    if target.kind is TargetKind.CMD:
        supply = ServerSupply(target.spec, network=PrivateNetwork.shared())
    outcome = _generated_programs(target, req_id, settle, s, seed, budget, log, supply)
    if outcome.verdict == Verdict.PASS and plan(req_id).plays_idle_program:
        outcome = _check_idle(target, req_id, settle, log) or outcome
    outcome = _test_attribution(target, req_id, settle, outcome, log)
    outcome.findings = _findings(target, req_id, settle, log, budget)
    return _masked_only_by_a_verdict(req_id, outcome, log)


def _masked_only_by_a_verdict(req_id: str, outcome: Outcome, log: CheckLog) -> Outcome:
    """A requirement is *masked by X* only when X failed with a verdict.

    Programs that showed X were set aside from this search; if X, shrunk and
    run again on a fresh server, did not show again (a wait that ran out once),
    it is no verdict, and "fix X first" would send the user after nothing:
    the requirement is not judged, for what really stopped it.
    """
    mask = outcome.masked_by
    if mask is None or any(
        f.requirement == mask and f.verdict == Verdict.FAIL for f in outcome.findings
    ):
        return outcome
    if outcome.withdrawn is not None:  # the failure stands: nothing else explains it
        outcome.withdrawn.findings = outcome.findings
        return outcome.withdrawn
    count = log.masked[mask]
    return _outcome(
        req_id,
        Verdict.NOT_RUN,
        log,
        findings=outcome.findings,
        detail=(
            f"not judged: {count} programs were set aside for {mask}, which did not "
            f"show again on a fresh server (seen once: not a verdict, so it masks "
            f"nothing); {log.finished} programs ran to their end. Check again, or "
            f"with a larger --echo-budget. {mask} as seen once:\n"
            + textwrap.indent(log.masking[mask].describe(), "  ")
        ),
    )


def _test_attribution(
    target: Target, req_id: str, settle: float, outcome: Outcome, log: CheckLog
) -> Outcome:
    """A failure stands as this requirement's only if its cause was needed.

    An attribution (`spec.causes`) and an ECHO-4 violation both name a step
    (the reset, the half-close) as the cause; `causes.counterfactual` leaves
    it out, and the program runs as often as the failure was run (once, or n
    times when it showed in k of n).  If the same connection then shows the
    symptom's own requirement broken, that is the fault: reported there (a
    finding, shrunk and run again on a fresh server like any other), and this
    requirement is masked by it.
    """
    v = outcome.violation
    if outcome.verdict != Verdict.FAIL or v is None:
        return outcome
    test = counterfactual(outcome.program, v)
    if test is None:
        return outcome
    program, symptom = test
    # A failure that showed in k of n runs is tested as often: one quiet run
    # of the program without its cause says nothing about a timing-dependent
    # fault.  At least once, and no more once the budget has run out.
    tries = 1 if outcome.shown_in is None else outcome.shown_in[1]
    for attempt in range(tries):
        if attempt and log.end is not None and time.monotonic() > log.end:
            return outcome
        try:
            again = run_program(target, symptom, program, settle, plan=req_id)
        except ConformanceFailure as other:
            again = other.violation
        except InvalidProgram:
            return outcome  # the step cannot be left out: the cause cannot be tested
        if (
            again is not None
            and again.unattributed().requirement == symptom
            and again.connection == v.connection
        ):
            break
    else:
        return outcome
    assert again is not None
    shown = again.unattributed()
    # This program showed it just now: the evidence the finding is built on.
    log.foreign[symptom] = ConformanceFailure(shown, program, target.label, plan=req_id)
    log.masked[symptom] += 1
    log.masking[symptom] = shown
    without = (
        f"its half-close ({v.connection})"
        if v.cause_step is None or "half_close" in outcome.program[v.cause_step]
        else f"its step {outcome.program[v.cause_step]!r}"
    )
    return _outcome(
        req_id,
        Verdict.NOT_RUN,
        log,
        masked_by=symptom,
        withdrawn=outcome,
        detail=(
            f"not judged: the program that broke {req_id} shows {symptom} broken "
            f"without {without} too, so the fault is {symptom}'s; fix {symptom}, then "
            f"check again. {symptom} as seen:\n" + textwrap.indent(shown.describe(), "  ")
        ),
    )


#: The share of the budget Hypothesis may shrink for, from the first violation
#: on, and the most programs it may run for it: a stateful program shrinks
#: slowly when each run is a fresh server, so the rest goes to `spec.shrink`
#: (deleting steps, with the likeliest short programs first).  The count is
#: what binds on an ordinary machine, and counts do not vary with load.
SHRINK_SHARE = 0.25
SHRINK_RUNS = 40


def _shrink_on(
    target: Target,
    req_id: str,
    settle: float,
    seen: ConformanceFailure,
    end: float | None,
    *,
    cut: bool = True,
    shrinks: bool = True,
) -> tuple[ConformanceFailure, str]:
    """Shrink Hypothesis' smallest failure on by deleting steps, until `end`.

    Hypothesis shrinks what it draws; deleting a whole client or a step of
    the printed program finds what its passes can miss (a burst kept before
    the two steps that matter).  `cut`: Hypothesis' shrinking was stopped by
    the budget (else it had finished).
    """

    def reproduces(program: list[str]) -> bool:
        return _rerun(target, req_id, program, settle, req_id) is not None

    if not shrinks:
        return seen, ""
    shrunk = shrink(seen.program, reproduces, deadline=end)
    stopped = "shrinking stopped at the time budget"
    smaller = len(shrunk.program) < len([line for line in seen.program if line != TEARDOWN])
    violation = _rerun(target, req_id, shrunk.program, settle, req_id) if smaller else None
    if violation is None:  # nothing smaller reproduced: what Hypothesis saw stands
        return seen, stopped if cut or not shrunk.complete else ""
    failure = ConformanceFailure(violation, shrunk.program, target.label, req_id)
    return failure, "" if shrunk.complete else stopped


#: Seconds the checker may spend shrinking the violations of other requirements
#: its programs showed (at most a quarter of the budget).
FINDINGS_SECONDS = 20.0


def _findings(
    target: Target, req_id: str, settle: float, log: CheckLog, budget: float | None
) -> list[Finding]:
    """Every other requirement's violation the programs showed, shrunk and replayed."""
    seconds = FINDINGS_SECONDS if budget is None else min(FINDINGS_SECONDS, budget / 4)
    deadline = time.monotonic() + seconds
    found = []
    for other in sorted(log.foreign, key=IDS.index):
        seen = log.foreign[other]

        def reproduces(program: list[str], other: str = other) -> bool:
            try:
                return run_program(target, other, program, settle, plan=req_id) is not None
            except (ConformanceFailure, InvalidProgram):
                return False

        shrunk = shrink(seen.program, reproduces, deadline=deadline)
        program = shrunk.program
        again = _rerun(target, other, program, settle, req_id)
        note = "" if shrunk.complete else "shrinking stopped at its time bound"
        if again is not None:
            violation, verdict = again, Verdict.FAIL
        else:
            program, violation = seen.program, seen.violation
            verdict = Verdict.UNCONFIRMED if violation.waited else Verdict.FAIL
            note = (
                "seen once, not again on a fresh server"
                if violation.waited
                else "the same program did not show it on every run: the server's "
                "behaviour depends on timing"
            )
        found.append(
            Finding(
                other,
                req_id,
                verdict,
                violation,
                program,
                replay_command(target, other, program, settle, plan=req_id),
                note,
            )
        )
    return found


def _rerun(
    target: Target, req_id: str, program: list[str], settle: float, plan_id: str
) -> Violation | None:
    try:
        return run_program(target, req_id, program, settle, plan=plan_id)
    except (ConformanceFailure, InvalidProgram):
        return None


def _generated_programs(
    target: Target,
    req_id: str,
    settle: float,
    s: settings,
    seed: int | None,
    budget: float | None,
    log: CheckLog,
    supply: ServerSupply | None,
) -> Outcome:
    """Hypothesis' programs against the target, within the budget.

    How the search ended is judged outside the ``except`` clauses: a program
    run again there (to shrink it on) would end as if cut short, since a
    machine's teardown skips its final checks while an exception is handled.
    """
    ended: BaseException | None = None
    try:
        with supply or contextlib.nullcontext():
            run_state_machine_as_test(  # takes any factory of machines, as documented
                machine_factory(target, req_id, settle, log, seed, supply),  # type: ignore[arg-type]
                settings=s,
            )
    except (ConformanceFailure, Unsatisfiable, Flaky, BudgetSpent) as e:
        ended = e
    if isinstance(ended, ConformanceFailure):
        failure, note = _shrink_on(
            target, req_id, settle, ended, log.end, cut=False, shrinks=Phase.shrink in s.phases
        )
        return _failed(target, req_id, settle, failure, log, note=note)
    if isinstance(ended, Unsatisfiable):
        return _masked(req_id, log)
    if isinstance(ended, Flaky) and not log.spent:
        return _inconclusive(target, req_id, settle, log, ended)
    if ended is not None:
        # The budget ran out (a Flaky then means a program it cut short, which
        # Hypothesis took for one that behaved differently): what was seen stands.
        return _budget_spent(target, req_id, settle, log, budget)
    return _outcome(req_id, Verdict.PASS, log, detail=f"no violation in {log.finished} programs")


def _budget_spent(
    target: Target, req_id: str, settle: float, log: CheckLog, budget: float | None
) -> Outcome:
    """The time budget ran out: report what was seen."""
    if log.failures:  # seen, then cut short while shrinking: shrink on by deleting steps
        failure, note = _shrink_on(target, req_id, settle, log.failures[-1], log.end, cut=log.spent)
        return _failed(target, req_id, settle, failure, log, note=note)
    if not log.finished:
        return _not_judged(
            req_id,
            log,
            f"no program ran to its end within the {budget:g} s time budget (--echo-budget)",
        )
    return _outcome(
        req_id,
        Verdict.PASS,
        log,
        detail=f"no violation in {log.finished} programs (the {budget:g} s time budget ran out)",
        cut_short_at=log.finished,
    )


def _check_idle(target: Target, req_id: str, settle: float, log: CheckLog) -> Outcome | None:
    """Play the idle program: a connection left alone must still echo."""
    program = idle_program(idle_seconds())
    try:
        violation = run_program(target, req_id, program, settle)
    except ConformanceFailure as other:  # another requirement broke first: kept as a finding
        log.foreign.setdefault(other.violation.requirement, other)
        return None
    if violation is None:
        return None
    failure = ConformanceFailure(violation, program, target.label)
    log.failures.append(failure)
    return _failed(target, req_id, settle, failure, log)


def _outcome(req_id: str, verdict: Verdict, log: CheckLog, **fields: Any) -> Outcome:
    return Outcome(req_id, "", verdict, environment=log.environment, **fields)


def _not_judged(req_id: str, log: CheckLog, why: str) -> Outcome:
    """Not judged: masked by another requirement if programs broke one, else for `why`."""
    return (
        _masked(req_id, log) if log.masked else _outcome(req_id, Verdict.NOT_RUN, log, detail=why)
    )


def _masked(req_id: str, log: CheckLog) -> Outcome:
    """Not judged: every program broke another requirement first."""
    if not log.masked:
        return _outcome(req_id, Verdict.NOT_RUN, log, detail="no program could be generated")
    mask, count = log.masked.most_common(1)[0]
    return _outcome(
        req_id,
        Verdict.NOT_RUN,
        log,
        masked_by=mask,
        detail=(
            f"not judged: {count} programs broke {mask} first, so none could show {req_id}; "
            f"fix {mask}, then check again. {mask} as seen:\n"
            + textwrap.indent(log.masking[mask].describe(), "  ")
        ),
    )


def _inconclusive(
    target: Target, req_id: str, settle: float, log: CheckLog, error: Flaky
) -> Outcome:
    """Seen, but not again when the same program ran again.

    Bytes seen out of place, a reset, a death are facts about the server
    whatever a replay does: a failure, noted as timing-dependent.  A verdict
    from what did *not* happen within a wait is not one: inconclusive.
    """
    if not log.failures:
        return _not_judged(
            req_id,
            log,
            "a program behaved differently when it ran again, "
            f"so {req_id} could not be judged ({type(error).__name__})",
        )
    seen, _ = _shrink_on(target, req_id, settle, log.failures[-1], log.end, cut=False)
    shown, runs = _reproductions(target, req_id, seen.program, settle, log.end)
    count = f"it showed in {shown + 1} of {runs + 1} runs of this program, each on a fresh server"
    if not seen.violation.waited or shown:
        failed = _failed(
            target,
            req_id,
            settle,
            seen,
            log,
            note=f"the server's behaviour depends on timing: {count}",
        )
        if shown < runs:
            failed.shown_in = (shown + 1, runs + 1)
        return failed
    outcome = _failed(target, req_id, settle, seen, log)
    outcome.verdict = Verdict.INCONCLUSIVE
    outcome.detail = (
        f"inconclusive: {req_id} was violated once but not again when the same "
        f"program ran again ({count}), so this is not a verdict on the server. What was "
        "seen:\n" + textwrap.indent(seen.violation.describe(), "  ")
    )
    return outcome


#: Runs of a timing-dependent program, to say how often it shows its violation.
REPRODUCTION_RUNS = 4


def _reproductions(
    target: Target, req_id: str, program: list[str], settle: float, end: float | None
) -> tuple[int, int]:
    """(runs that showed `req_id`, runs made), at most REPRODUCTION_RUNS, until `end`."""
    shown = runs = 0
    while runs < REPRODUCTION_RUNS and (end is None or time.monotonic() < end):
        runs += 1
        shown += _rerun(target, req_id, program, settle, req_id) is not None
    return shown, runs


def _failed(
    target: Target,
    req_id: str,
    settle: float,
    failure: ConformanceFailure,
    log: CheckLog,
    *,
    note: str = "",
) -> Outcome:
    detail = failure.violation.describe() + (f"\n  note: {note}" if note else "")
    first = log.failures[0] if log.failures else failure
    return _outcome(
        req_id,
        Verdict.FAIL,
        log,
        detail=detail,
        first_failure=first.seen_at,
        counterexample="\n".join(failure.program),
        program=failure.program,
        violation=failure.violation,
        replay=replay_command(target, req_id, failure.program, settle),
    )


def replay_command(
    target: Target, req_id: str, program: list[str], settle: float, plan: str | None = None
) -> str:
    option = "--impl" if target.kind is TargetKind.IMPL else "--server-cmd"
    words = ["python", "-m", "spec.replay", option, target.spec, "--expect", req_id]
    if plan is not None and plan != req_id:
        words += ["--plan", plan]
    if target.kind is TargetKind.CMD and settle != DEFAULT_SETTLE:
        words += ["--settle", f"{settle:g}"]
    if target.echo != UPPER:
        words += ["--transform", target.echo.name]
    return shlex.join(words + program)
