"""`--echo-gradescope`: Gradescope's results.json, checked against its documented fields.

The fields and values are those of Gradescope's autograder specification
(https://gradescope-autograders.readthedocs.io/en/latest/specs/, "Output
Format"): `validate` below fails on any key or value it does not document.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from runs import pytest_run

from spec.gradescope import VISIBILITIES, Grading, GradingError, load_grading, results
from spec.matrix import TargetResult
from spec.requirements import IDS
from spec.targets import Target

TOP_LEVEL = {
    "score",
    "execution_time",
    "output",
    "output_format",
    "test_output_format",
    "test_name_format",
    "visibility",
    "stdout_visibility",
    "extra_data",
    "tests",
    "leaderboard",
}
TEST = {
    "score",
    "max_score",
    "status",
    "name",
    "name_format",
    "number",
    "output",
    "output_format",
    "tags",
    "visibility",
    "extra_data",
}


def validate(data: dict[str, Any]) -> None:
    """Fail on anything Gradescope's results.json specification does not document."""
    assert set(data) <= TOP_LEVEL, set(data) - TOP_LEVEL
    assert isinstance(data["score"], int | float)
    assert isinstance(data["execution_time"], int | float)
    for key in ("visibility", "stdout_visibility"):
        assert data.get(key, "visible") in VISIBILITIES
    assert isinstance(data["tests"], list) and data["tests"]
    for test in data["tests"]:
        assert set(test) <= TEST, set(test) - TEST
        assert {"name", "score", "max_score", "status", "output", "visibility"} <= set(test)
        assert isinstance(test["name"], str) and test["name"]
        assert isinstance(test["output"], str)
        assert test["status"] in ("passed", "failed")
        assert test["visibility"] in VISIBILITIES
        assert 0 <= test["score"] <= test["max_score"]
    assert data["score"] == sum(t["score"] for t in data["tests"])


def _result(name: str, entries: dict[str, dict[str, Any]]) -> TargetResult:
    target = Target("impl", "impl.select_server:SelectEchoServer", name=name)
    return TargetResult(target, entries)  # type: ignore[arg-type]


FAILED = {
    "verdict": "fail",
    "detail": "ECHO-5: the server died",
    "counterexample": "c0 = state.connect()\nstate.abort(c0)",
    "replay": "python -m spec.replay --impl x:Y --expect ECHO-5 'c0 = state.connect()'",
}


def test_points_outputs_and_fields() -> None:
    grading = Grading(points={"MUST": 2, "ECHO-4": 5})
    run = [
        _result("alice", {r: {"verdict": "pass", "detail": "ok"} for r in IDS}),
        _result("bob", {"ECHO-5": FAILED, "ECHO-4": {"verdict": "not-run", "masked_by": "ECHO-5"}}),
    ]
    data = results(run, grading, strict=False, not_run="deselected", seconds=3.5, verdict="fail")
    validate(data)
    tests = {t["name"]: t for t in data["tests"]}
    assert len(tests) == 2 * len(IDS)
    assert tests["alice: ECHO-4 Half-close (MUST)"]["max_score"] == 5
    assert tests["alice: ECHO-1 Transform (MUST)"]["score"] == 2
    assert tests["alice: ECHO-9 Idle (SHOULD)"]["max_score"] == 1
    failed = tests["bob: ECHO-5 Resilience (MUST)"]
    assert (failed["status"], failed["score"]) == ("failed", 0)
    assert "the server died" in failed["output"] and "state.abort(c0)" in failed["output"]
    assert "python -m spec.replay" in failed["output"]
    assert "masked by ECHO-5" in tests["bob: ECHO-4 Half-close (MUST)"]["output"]
    assert "deselected" in tests["bob: ECHO-1 Transform (MUST)"]["output"]
    assert data["score"] == 7 * 2 + 3 + 3  # alice: 6 MUSTs at 2, ECHO-4 at 5, 3 SHOULDs at 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[points]\nECHO-99 = 1\n", "is not a requirement or level"),
        ("[points]\nMUST = -1\n", "should be a number >= 0"),
        ("[points]\nMUST = 'two'\n", "should be a number >= 0"),
        ("[gradescope]\nvisibility = 'sometimes'\n", "should be one of hidden"),
        ("[gradescope]\nleaderboard = true\n", "takes visibility and stdout_visibility"),
    ],
)
def test_a_bad_grading_table_is_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "targets.toml"
    path.write_text(text + "[[target]]\nname = 'a'\ncmd = 'x {port}'\n")
    with pytest.raises(GradingError, match=message):
        load_grading(path)


def test_a_run_writes_results_json(tmp_path: Path) -> None:
    targets, out = tmp_path / "targets.toml", tmp_path / "results.json"
    targets.write_text(
        "[points]\nECHO-5 = 4\n[gradescope]\nvisibility = 'after_due_date'\n"
        "[[target]]\nname = 'student'\nimpl = 'impl.seed_upper_server:SeedUpperServer'\n"
    )
    done = pytest_run(
        f"--echo-targets={targets}", "-k", "ECHO-5 or ECHO-1 and not ECHO-10",
        f"--echo-gradescope={out}",
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    data = json.loads(out.read_text())
    validate(data)
    tests = {t["name"]: t for t in data["tests"]}
    assert tests["ECHO-1 Transform (MUST)"]["status"] == "passed"
    resilience = tests["ECHO-5 Resilience (MUST)"]
    assert (resilience["score"], resilience["max_score"]) == (0, 4)
    assert "ConnectionResetError" in resilience["output"]
    assert resilience["visibility"] == "after_due_date"
    assert data["score"] == 1 and data["execution_time"] > 0
