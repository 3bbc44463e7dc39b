"""The conformance tests: one per requirement, against --server-cmd or --impl.

Run from the repository root:

    pytest --server-cmd "python myserver.py --port {port}"
    pytest --impl impl.select_server:SelectEchoServer
"""

from __future__ import annotations

from pathlib import Path

import pytest

from spec.checker import Outcome, check
from spec.drivers.server_process import ServerStartError
from spec.pytest_plugin import conformance_target, record
from spec.replay import write_regression
from spec.requirements import BY_ID, IDS, Level
from spec.targets import Target, TargetError


@pytest.fixture
def target(request: pytest.FixtureRequest) -> Target:
    t = conformance_target(request.config)
    if t is None:
        pytest.skip("no server to check: give --server-cmd 'COMMAND {port}' or --impl MODULE:CLASS")
    return t


@pytest.mark.parametrize("req_id", IDS)
def test_requirement(req_id: str, target: Target, request: pytest.FixtureRequest) -> None:
    config = request.config
    settle = config.getoption("--settle")
    level = BY_ID[req_id].level
    try:
        outcome = check(target, req_id, settle=settle)
    except (ServerStartError, TargetError) as e:
        outcome = Outcome(req_id, level.value, "not-run", detail=f"cannot start the server: {e}")
    record(request.node, outcome)
    if outcome.verdict == "pass":
        return
    if outcome.verdict == "not-run":
        message = f"{req_id} could not be judged: {outcome.detail}"
    else:
        message = failure_message(outcome, target, request)
    if level is Level.SHOULD and not config.getoption("strict"):
        pytest.xfail(f"{req_id} is a SHOULD (use --strict to fail on it):\n{message}")
    pytest.fail(message, pytrace=False)


def failure_message(outcome: Outcome, target: Target, request: pytest.FixtureRequest) -> str:
    r = BY_ID[outcome.requirement]
    lines = [f"{r.id} ({r.level.value}, {r.title}) fails for {target.label}", "",
             outcome.detail]
    if outcome.program:
        steps = "\n".join(f"    {line}" for line in outcome.program)
        lines += ["", f"Shrunk program ({len(outcome.program)} steps):", steps,
                  "", "Replay it (exit 0 = reproduced):", f"    {outcome.replay}",
                  "Rerunning this pytest command replays it first (Hypothesis' database)."]
        directory = request.config.getoption("--regressions")
        if directory:
            path = write_regression(Path(directory), target, outcome.requirement,
                                    outcome.program, outcome.violation,
                                    request.config.getoption("--settle"))
            lines.append(f"Regression test written: {path}")
    return "\n".join(lines)
