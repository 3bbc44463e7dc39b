"""The pure helpers of bench/modes.py: what its page counts and shows."""

from __future__ import annotations

import importlib.util
from types import ModuleType
from typing import Any

import pytest
from runs import ROOT

from impl.zoo import DEFECTS


@pytest.fixture(scope="module")
def modes() -> ModuleType:
    path = ROOT / "bench" / "modes.py"
    spec = importlib.util.spec_from_file_location("bench_modes", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(target: str, req: str, sure: str, verdict: str) -> dict[str, Any]:
    return {"target": target, "requirement": req, "sure": sure, "verdict": verdict,
            "detail": "", "seconds": 1.0}  # fmt: skip


def test_tally_most_frequent_first(modes: ModuleType) -> None:
    assert modes.tally(["pass"] * 5) == "pass ×5"
    assert modes.tally(["not-run", "fail", "fail", "fail", "fail"]) == "fail ×4, not-run ×1"


def test_judge_counts_only_the_opposite_verdict_and_crashes_as_wrong(modes: ModuleType) -> None:
    judged = {v: modes.judge(row("t", "ECHO-1", "pass", v)) for v in
              ("pass", "fail", "not-run", "inconclusive", "crash")}  # fmt: skip
    assert judged == {"pass": "ok", "fail": "FALSE FAIL", "not-run": "not judged",
                      "inconclusive": "inconclusive", "crash": "CRASH"}  # fmt: skip
    assert modes.judge(row("t", "ECHO-7", "fail", "pass")) == "FALSE PASS"
    wrong = [v for v in judged if modes.is_wrong(row("t", "ECHO-1", "pass", v))]
    assert wrong == ["fail", "crash"]
    assert not modes.is_wrong(None)


def test_cells_line_up_runs_and_mark_a_missing_check(modes: ModuleType) -> None:
    runs = [
        [row("a", "ECHO-1", "pass", "pass"), row("b", "ECHO-5", "fail", "fail")],
        [row("a", "ECHO-1", "pass", "fail"), {"capabilities": {}}],
    ]
    cells = modes.cells(runs)
    assert list(cells) == [("a", "ECHO-1", "pass"), ("b", "ECHO-5", "fail")]
    assert modes.verdicts(cells[("b", "ECHO-5", "fail")]) == ["fail", "missing"]
    assert not modes.same_every_run(cells[("a", "ECHO-1", "pass")])
    assert modes.wrong_per_run(runs) == [0, 1]


def test_plan_checks_a_defect_only_under_its_own_requirement(modes: ModuleType) -> None:
    plan = modes.plan("python")
    for name in ("sendall-echo", "blocking-connections", "ignore-send-result",
                 "close-at-eof", "uncaught-reset"):  # fmt: skip
        mine = [(req, sure) for target, _, req, sure in plan if target == name]
        assert mine == [(DEFECTS[name].requirement, "fail")]
    for name in ("reference", "asyncio", "socat-tr"):
        assert [req for target, _, req, _ in plan if target == name] == modes.MUSTS
    assert all("{py}" not in command and "{port}" in command for _, command, _, _ in plan)
