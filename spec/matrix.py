"""The verdicts of a run over many targets: per target, the matrix, the JSON.

Design note
-----------
Everything here is pure data, shared by the terminal summary, the JSON
report and the HTML report, so the three always agree.  A run's results are
``{target name: {requirement id: entry}}`` where an entry is the checker's
``Outcome.as_report()`` passed through untouched (plus ``evidence``, the
program and violation the HTML diagram is drawn from).  A requirement with
no entry was not run (deselected, or the run stopped early).

A target's verdict counts the MUST requirements (every requirement with
``--echo-strict``):

    pass        every counted requirement was judged and passed
    fail        a counted requirement failed
    incomplete  none failed, but some were not judged (not run, "not-run",
                "inconclusive", or any verdict other than pass/fail)

The JSON report of a single target keeps the original shape and adds two
keys::

    {"target": SPEC, "name": NAME, "transform": NAME, "verdict": ...,
     "not_judged": {ID: WHY}, "requirements": {ID: ENTRY, ...}}

(``transform``: what ECHO-1 judged the echo by, "upper", "identity" or MODULE:FUNC.)

Several targets::

    {"verdict": WORST, "strict": BOOL,
     "targets": {NAME: {"target": SPEC, "kind": "cmd"|"impl", "transform": NAME, "verdict": ...,
                        "not_judged": {ID: WHY}, "requirements": {ID: ENTRY}}}}

WORST is "fail" if any target fails, else "incomplete" if any is
incomplete, else "pass".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

from spec.requirements import BY_ID, IDS, Level
from spec.targets import Target
from spec.verdicts import Overall, Verdict

JUDGED = (Verdict.PASS, Verdict.FAIL)
#: The order of badness of target verdicts.
VERDICTS = (Overall.PASS, Overall.INCOMPLETE, Overall.FAIL)


class ViolationEvidence(TypedDict):
    """A violation as the HTML diagram reads it (bytes as hex: it passes through JSON)."""

    requirement: str
    summary: str
    offset: int | None
    connection: str | None
    expected_hex: str | None
    received_hex: str | None


class Evidence(TypedDict, total=False):
    """What the HTML sequence diagram is drawn from: the program and the violation.

    Not total, like `Entry`: readers use `.get` and an entry may have no evidence.
    """

    program: list[str]
    violation: ViolationEvidence | None


class FindingEntry(TypedDict, total=False):
    """A violation of `requirement` shown by the programs of another requirement's
    check (`found_by`): `checker.Finding.as_report()` plus `evidence`."""

    requirement: str
    found_by: str
    #: "fail", or "unconfirmed" (a wait that ran out once, never again: no verdict).
    verdict: str
    detail: str
    counterexample: str
    replay: str
    evidence: Evidence


class Entry(TypedDict, total=False):
    """One target's entry for one requirement: `Outcome.as_report()` plus `evidence`.

    Not total: an entry read back from JSON (or written by hand) may lack any key,
    so readers use `.get` with a default.
    """

    level: str
    verdict: str
    detail: str
    counterexample: str
    replay: str
    seconds: float
    masked_by: str | None
    environment: dict[str, object]
    evidence: Evidence
    #: Other requirements' violations this requirement's programs showed.
    findings: list[FindingEntry]
    #: Set when this entry's failure was found by another requirement's programs.
    found_by: str


class TargetReport(TypedDict):
    """The JSON report of one target (shape in the module docstring)."""

    target: str
    name: str
    kind: str
    transform: str
    verdict: str
    not_judged: dict[str, str]
    requirements: dict[str, Entry]


class RunReport(TypedDict):
    """The JSON report of several targets (shape in the module docstring)."""

    verdict: str
    strict: bool
    targets: dict[str, TargetReport]


def counts(req_id: str, strict: bool) -> bool:
    """Whether this requirement decides a target's verdict."""
    return strict or BY_ID[req_id].level is Level.MUST


def cell(entry: Entry | None, req_id: str, strict: bool) -> str:
    """What the matrix shows for one target and requirement."""
    if entry is None or entry.get("verdict") not in JUDGED:
        return "not judged"
    if entry["verdict"] == Verdict.PASS:
        return "PASS"
    return "FAIL" if counts(req_id, strict) else "xfail"


def first_line(text: str, limit: int = 200) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def why_not_judged(entry: Entry | None, not_run: str) -> str:
    """One line: why this requirement has no verdict."""
    if entry is None:
        return not_run
    verdict = entry.get("verdict", "not-run")
    masked_by = entry.get("masked_by")
    if masked_by:
        return f"{verdict}: masked by {masked_by}"
    return f"{verdict}: {first_line(entry.get('detail', '')) or 'no reason given'}"


def with_findings(entries: dict[str, Entry]) -> dict[str, Entry]:
    """The entries with every confirmed finding failing its own requirement.

    Nothing is set aside: a violation of Y that only X's programs could show
    fails Y, even where Y's own programs found nothing (or Y was not run).
    Y's own failure, if it has one, stands; of several findings of Y, the one
    found by the first requirement in ID order is shown.
    """
    merged = dict(entries)
    for found_by in [r for r in IDS if r in entries]:
        for finding in entries[found_by].get("findings", []):
            req = finding.get("requirement", "")
            if req not in BY_ID or finding.get("verdict") != "fail":
                continue
            own = merged.get(req) or {}
            if own.get("verdict") == "fail":
                continue
            detail = finding.get("detail", "")
            if own:
                own_said = first_line(own.get("detail", "")) or own.get("verdict", "")
                detail += f"\n  ({req}'s own programs: {own_said})"
            merged[req] = {
                "level": BY_ID[req].level.value,
                "verdict": "fail",
                "detail": detail,
                "counterexample": finding.get("counterexample", ""),
                "replay": finding.get("replay", ""),
                "seconds": own.get("seconds", 0.0),
                "masked_by": None,
                "environment": own.get("environment") or entries[found_by].get("environment", {}),
                "evidence": finding.get("evidence", {}),
                "findings": own.get("findings", []),
                "found_by": found_by,
            }
    return merged


@dataclass
class TargetResult:
    """One target's entries, each confirmed finding merged in (`with_findings`)."""

    target: Target
    entries: dict[str, Entry]

    def __post_init__(self) -> None:
        self.entries = with_findings(self.entries)

    def found_elsewhere(self) -> dict[str, Entry]:
        """The failures that another requirement's programs found."""
        return {r: e for r, e in self.entries.items() if e.get("found_by")}

    def verdict(self, strict: bool) -> Overall:
        counted = [req_id for req_id in IDS if counts(req_id, strict)]
        if any((self.entries.get(r) or {}).get("verdict") == Verdict.FAIL for r in counted):
            return Overall.FAIL
        if any(cell(self.entries.get(r), r, strict) == "not judged" for r in counted):
            return Overall.INCOMPLETE
        return Overall.PASS

    def not_judged(self, not_run: str) -> dict[str, str]:
        return {
            req_id: why_not_judged(self.entries.get(req_id), not_run)
            for req_id in IDS
            if self.entries.get(req_id, {}).get("verdict") not in JUDGED
        }

    def report(self, strict: bool, not_run: str) -> TargetReport:
        requirements: dict[str, Entry] = {}
        for req_id in IDS:
            entry: Entry = {
                "level": BY_ID[req_id].level.value,
                "verdict": Verdict.NOT_RUN,
                "detail": not_run,
                "counterexample": "",
            }
            entry.update(self.entries.get(req_id, {}))
            requirements[req_id] = entry
        return {
            "target": self.target.spec,
            "name": self.target.name,
            "kind": self.target.kind,
            "transform": self.target.echo.name,
            "verdict": self.verdict(strict),
            "not_judged": self.not_judged(not_run),
            "requirements": requirements,
        }


def overall(results: Sequence[TargetResult], strict: bool) -> Overall:
    if not results:
        return Overall.INCOMPLETE
    return max((r.verdict(strict) for r in results), key=VERDICTS.index)


def report(results: Sequence[TargetResult], strict: bool, not_run: str) -> TargetReport | RunReport:
    """The JSON report (shapes in the module docstring)."""
    if len(results) == 1:
        return results[0].report(strict, not_run)
    return {
        "verdict": overall(results, strict),
        "strict": strict,
        "targets": {r.target.name: r.report(strict, not_run) for r in results},
    }


def terminal_lines(results: Sequence[TargetResult], strict: bool) -> list[str]:
    """Requirements down, targets across, each target's verdict at the bottom."""
    names = [r.target.name for r in results]
    # Each target's transform is named once one is not the default's.
    transforms = [res.target.echo.name for res in results]
    shown = transforms if set(transforms) != {"upper"} else []
    width = max([10, *(len(n) for n in names + shown)]) + 2
    head = 8 + 1 + 6 + 1 + 17
    lines = [f"{'':{head}} " + "".join(f"{n:<{width}}" for n in names).rstrip()]
    if shown:
        lines.append(f"{'transform':{head}} " + "".join(f"{t:<{width}}" for t in shown).rstrip())
    for req_id in IDS:
        r = BY_ID[req_id]
        row = [cell(res.entries.get(req_id), req_id, strict) for res in results]
        lines.append(
            f"{req_id:8} {r.level.value:6} {r.title:17} "
            + "".join(f"{c:<{width}}" for c in row).rstrip()
        )
    scope = "all requirements" if strict else "MUST requirements"
    verdicts = [res.verdict(strict).upper() for res in results]
    lines.append(
        f"{'verdict (' + scope + ')':{head}} " + "".join(f"{v:<{width}}" for v in verdicts).rstrip()
    )
    return lines
