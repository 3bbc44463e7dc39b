"""`--echo-gradescope=PATH`: the run as Gradescope's ``results.json``.

Gradescope's autograder reads ``/autograder/results/results.json``
(https://gradescope-autograders.readthedocs.io/en/latest/specs/): a top-level
``score``, ``execution_time``, ``visibility``, ``stdout_visibility`` and
``output``, and ``tests``, a list of ``{name, number, score, max_score,
status, output, visibility}``.  Each (target, requirement) is one test: its
full points if it passed, 0 otherwise (failed, or not judged: the output
says why); a failure's output holds the diagnosis, the shrunk program and
the command that replays it.

Points and visibility come from the targets file (``--echo-targets``)::

    [points]            # optional: points per requirement, or per level
    MUST = 2            # every MUST requirement (default 1)
    SHOULD = 1          # every SHOULD requirement (default 1)
    ECHO-4 = 5          # this one

    [gradescope]        # optional
    visibility = "visible"            # the tests' (default "visible")
    stdout_visibility = "hidden"      # the run's output (default "hidden")
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spec.matrix import TargetResult, counts
from spec.requirements import BY_ID, IDS, Level
from spec.verdicts import Verdict

#: Gradescope's visibility values.
VISIBILITIES = ("hidden", "after_due_date", "after_published", "visible")
DEFAULT_POINTS = 1.0


class GradingError(Exception):
    """A [points] or [gradescope] table that cannot be used, with a message for the user."""


@dataclass(frozen=True)
class Grading:
    #: Requirement ID or level ("MUST", "SHOULD") -> points.
    points: dict[str, float] = field(default_factory=dict)
    visibility: str = "visible"
    stdout_visibility: str = "hidden"

    def max_score(self, req_id: str) -> float:
        level = BY_ID[req_id].level.value
        return self.points.get(req_id, self.points.get(level, DEFAULT_POINTS))


def load_grading(path: str | Path | None) -> Grading:
    """The [points] and [gradescope] tables of a targets file (defaults without one)."""
    if path is None:
        return Grading()
    where = f"--echo-targets {path}"
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise GradingError(f"{where}: {e}") from None
    points = data.get("points", {})
    known = set(IDS) | {level.value for level in Level}
    if not isinstance(points, dict):
        raise GradingError(f"{where}: [points] should be a table")
    for key, value in points.items():
        if key not in known:
            raise GradingError(
                f"{where}: [points] {key!r} is not a requirement or level "
                f"(known: MUST, SHOULD, {', '.join(IDS)})"
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise GradingError(f"{where}: [points] {key} should be a number >= 0, not {value!r}")
    options = data.get("gradescope", {})
    if not isinstance(options, dict) or set(options) - {"visibility", "stdout_visibility"}:
        raise GradingError(
            f"{where}: [gradescope] takes visibility and stdout_visibility, nothing else"
        )
    for key, value in options.items():
        if value not in VISIBILITIES:
            raise GradingError(
                f"{where}: [gradescope] {key} should be one of {', '.join(VISIBILITIES)}, "
                f"not {value!r}"
            )
    return Grading({k: float(v) for k, v in points.items()}, **options)


def _output(entry: dict[str, Any], req_id: str, strict: bool, not_run: str) -> str:
    if not entry:
        return f"not judged: {not_run}"
    verdict, detail = entry.get("verdict", Verdict.NOT_RUN), entry.get("detail", "")
    if verdict == Verdict.PASS:
        return f"PASS: {detail}".strip()
    if verdict != Verdict.FAIL:
        masked = entry.get("masked_by")
        why = f"masked by {masked} (fix that one first)" if masked else detail
        return f"not judged ({verdict}): {why}"
    lines = [f"{'FAIL' if counts(req_id, strict) else 'FAIL (a SHOULD: expected)'}: {detail}"]
    if entry.get("counterexample"):
        program = "\n".join(f"    {line}" for line in entry["counterexample"].splitlines())
        lines += ["", "Shrunk program:", program]
    if entry.get("replay"):
        lines += ["", "Replay it (exit 0 = reproduced):", f"    {entry['replay']}"]
    return "\n".join(lines)


def results(
    run: Sequence[TargetResult],
    grading: Grading,
    *,
    strict: bool,
    not_run: str,
    seconds: float,
    verdict: str,
) -> dict[str, Any]:
    """Gradescope's results.json for this run."""
    tests = []
    several = len(run) > 1
    for t, result in enumerate(run, 1):
        for r, req_id in enumerate(IDS, 1):
            requirement = BY_ID[req_id]
            entry: dict[str, Any] = dict(result.entries.get(req_id) or {})
            passed = entry.get("verdict") == Verdict.PASS
            max_score = grading.max_score(req_id)
            name = f"{req_id} {requirement.title} ({requirement.level.value})"
            tests.append(
                {
                    "name": f"{result.target.name}: {name}" if several else name,
                    "number": f"{t}.{r}",
                    "score": max_score if passed else 0.0,
                    "max_score": max_score,
                    "status": "passed" if passed else "failed",
                    "output": _output(entry, req_id, strict, not_run),
                    "visibility": grading.visibility,
                }
            )
    return {
        "score": sum(test["score"] for test in tests),
        "execution_time": round(seconds, 3),
        "output": f"echo-conformance verdict: {verdict.upper()}",
        "visibility": grading.visibility,
        "stdout_visibility": grading.stdout_visibility,
        "tests": tests,
    }
