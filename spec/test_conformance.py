"""The conformance tests: one per target and requirement.

Run from the repository root:

    pytest --echo-server-cmd "python myserver.py --port {port}"
    pytest --echo-impl impl.select_server:SelectEchoServer
    pytest --echo-targets examples/targets.toml -n auto

A requirement that could not be judged is a skip that says why; a server
that cannot start is tried once per process, and every later requirement
of that target is skipped with the same line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from spec.checker import Outcome, check
from spec.drivers import witness
from spec.drivers.server_process import ServerStartError
from spec.judge import overrule
from spec.matrix import first_line
from spec.plugin import options
from spec.pytest_plugin import (
    conformance_targets,
    hypothesis_settings,
    record,
    settle_for,
    start_failures,
)
from spec.replay import write_regression
from spec.requirements import BY_ID, IDS, Level
from spec.targets import Target, TargetError
from spec.verdicts import Verdict

#: How much of a start failure the one-line skip reason shows.
START_LINE = 300


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "target" not in metafunc.fixturenames:
        return
    targets = conformance_targets(metafunc.config)
    params = [pytest.param(t, r, id=f"{t.name}-{r}") for t in targets for r in IDS]
    metafunc.parametrize(("target", "req_id"), params or [pytest.param(None, r, id=r) for r in IDS])


def test_requirement(target: Target | None, req_id: str, request: pytest.FixtureRequest) -> None:
    if target is None:
        pytest.skip(
            "no server to check: give --echo-server-cmd 'COMMAND {port}', "
            "--echo-impl MODULE:CLASS or --echo-targets FILE"
        )
    config = request.config
    outcome = judge(target, req_id, config)
    record(request.node, target, outcome)
    # What --junitxml shows as the testcase's properties (the diagnosis is its message).
    request.node.user_properties += [
        ("target", target.name),
        ("requirement", req_id),
        ("level", BY_ID[req_id].level.value),
        ("verdict", str(outcome.verdict)),  # plain str: xdist sends it
    ]
    if outcome.verdict == Verdict.PASS:
        return
    if outcome.verdict != Verdict.FAIL:
        pytest.skip(not_judged_reason(target, outcome))
    message = failure_message(outcome, target, request)
    if BY_ID[req_id].level is Level.SHOULD and not options(config).strict:
        pytest.xfail(f"{req_id} is a SHOULD (use --echo-strict to fail on it):\n{message}")
    pytest.fail(message, pytrace=False)


def judge(target: Target, req_id: str, config: pytest.Config) -> Outcome:
    level = BY_ID[req_id].level.value
    failures = start_failures(config)
    if target.name in failures:
        return Outcome(
            req_id, level, Verdict.NOT_RUN, detail=failures[target.name], not_started=True
        )
    try:
        since = witness.mark()
        outcome = check(
            target,
            req_id,
            settle=settle_for(config, target),
            hypothesis_settings=hypothesis_settings(config),
            budget=options(config).budget,
        )
        # What this mode (network, /proc, sock_diag) cannot give surely is not judged.
        return overrule(outcome, kind=target.kind, since=since)  # type: ignore[no-any-return]
    except (ServerStartError, TargetError) as e:
        failures[target.name] = f"cannot start the server: {e}"
        return Outcome(
            req_id, level, Verdict.NOT_RUN, detail=failures[target.name], not_started=True
        )
    except pytest.skip.Exception as e:  # Hypothesis, told to run no examples
        return Outcome(req_id, level, Verdict.NOT_RUN, detail=f"no program was run: {e.msg}")


def not_judged_reason(target: Target, outcome: Outcome) -> str:
    """One line: what kept this requirement from being judged."""
    if outcome.not_started:
        line = " ".join(outcome.detail.split())
        return f"{target.name}: {line[:START_LINE]}"
    masked_by = getattr(outcome, "masked_by", None)
    why = f"masked by {masked_by}" if masked_by else first_line(outcome.detail.split(";")[0])
    return f"{outcome.requirement} not judged for {target.name} ({outcome.verdict}): {why}"


def failure_message(outcome: Outcome, target: Target, request: pytest.FixtureRequest) -> str:
    r = BY_ID[outcome.requirement]
    lines = [
        f"{r.id} ({r.level.value}, {r.title}) fails for {target.name} ({target.label})",
        "",
        outcome.detail,
    ]
    if outcome.program:
        steps = "\n".join(f"    {line}" for line in outcome.program)
        lines += [
            "",
            f"Shrunk program ({len(outcome.program)} steps):",
            steps,
            "",
            "Replay it (exit 0 = reproduced):",
            f"    {outcome.replay}",
            "Rerunning this pytest command replays it first (Hypothesis' database).",
        ]
        directory = options(request.config).regressions
        if directory and outcome.violation is not None:  # a failure's program has one
            path = write_regression(
                Path(directory),
                target,
                outcome.requirement,
                outcome.program,
                outcome.violation,
                settle_for(request.config, target),
            )
            lines.append(f"Regression test written: {path}")
    return "\n".join(lines)
