"""The guard: no violation any program showed is missing from the verdict.

Each requirement's check runs only its own plan's steps, and sets aside a
program that breaks another requirement first (spec/machine.py).  Set aside
must never mean lost: the checker reports it as a finding, and the run's
verdict fails that requirement (spec/matrix.py `with_findings`).  This test
runs every requirement's programs against every zoo defect, the tutorial's
servers and the correct designs, in-process; records every violation any
program showed (`EchoConformance._fail`, during Hypothesis' search); and
fails if one of them is not a FAIL in the merged verdict.

Then the two defects that were once lost this way, checked under the
requirement their cause names, in-process and as processes.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import Phase, settings
from hypothesis.control import currently_in_test_context

from impl.zoo import DEFECTS
from spec import checker, machine
from spec.checker import check
from spec.drivers.inprocess import InProcessDriver
from spec.matrix import TargetResult
from spec.plans import RULES
from spec.pytest_plugin import evidence
from spec.targets import Target

#: Every requirement checked by programs, in-process (ECHO-10's measurement is left out:
#: it is no program, and takes a minute).
PROGRAMS = [r for r in RULES if r != "ECHO-10"]

#: Small and derandomized: the guard is about what happens to what is seen, not
#: about finding much (tests/checker/test_zoo.py and bench/killrate.py do that).
SMALL = settings(
    max_examples=4,
    stateful_step_count=8,
    database=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
)

#: Seconds per requirement: searches are short here; a finding is shrunk for a
#: quarter of it.
BUDGET = 3.0

SERVERS = [
    *(d.target for d in DEFECTS.values()),
    "impl.seed_upper_server:SeedUpperServer",
    "impl.seed_echo_server:SeedEchoServer",
    "impl.select_server:SelectEchoServer",
    "impl.selectors_server:SelectorsEchoServer",
]


def _entries(target: Target) -> dict[str, dict[str, object]]:
    """Check every requirement; the report entries, as the plugin records them."""
    entries = {}
    for req_id in PROGRAMS:
        outcome = check(target, req_id, hypothesis_settings=SMALL, budget=BUDGET)
        entry = {
            **outcome.as_report(),
            "evidence": evidence(outcome.program, outcome.violation),
            "findings": [
                {**f.as_report(), "evidence": evidence(f.program, f.violation)}
                for f in outcome.findings
            ],
        }
        entries[req_id] = json.loads(json.dumps(entry, default=str))
    return entries


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str | None]]:
    """(requirement, symptom's own requirement) of every violation a program showed
    during a search: an attribution by cause the checker withdrew (the symptom
    showed without the cause too) is reported under the symptom's requirement.

    A server blocked in one call is cut off after 0.5 s instead of 2, and the
    idle program idles 1 s: whatever is seen, the guard asks only that it reach
    the verdict.
    """
    monkeypatch.setattr(InProcessDriver, "watchdog", 0.5)
    monkeypatch.setattr(checker, "idle_seconds", lambda: 1)  # the idle program: 1 s, not 6
    found: list[tuple[str, str | None]] = []
    fail = machine.EchoConformance._fail

    def spy(self: machine.EchoConformance, v):  # type: ignore[no-untyped-def]
        try:
            fail(self, v)
        finally:
            v = self.last_violation
            if currently_in_test_context() and v is not None:
                found.append((v.requirement, v.symptom))

    monkeypatch.setattr(machine.EchoConformance, "_fail", spy)
    return found


@pytest.mark.parametrize("spec", SERVERS, ids=lambda s: s.rpartition(":")[2])
def test_every_violation_seen_is_in_the_verdict(
    spec: str, seen: list[tuple[str, str | None]]
) -> None:
    target = Target("impl", spec, name="t")
    result = TargetResult(target, _entries(target))  # type: ignore[arg-type]

    def failed(req_id: str | None) -> bool:
        return req_id is not None and (result.entries.get(req_id) or {}).get("verdict") == "fail"

    def masked(req_id: str) -> str | None:
        """What the check withdrew its failure for (the fault was another's), if anything."""
        return (result.entries.get(req_id) or {}).get("masked_by")  # type: ignore[return-value]

    lost = {
        req_id: (result.entries.get(req_id) or {}).get("verdict")
        for req_id, symptom in set(seen)
        if not (failed(req_id) or failed(symptom) or failed(masked(req_id)))
    }
    assert not lost, f"seen in programs, missing from the verdict: {lost}"


# -- the two defects once lost, rejected under the requirement their cause names ----------

ONCE_LOST = [
    ("impl.zoo.resilience:CloseAllOnErrorServer", "ECHO-5", "reset"),
    ("impl.zoo.halfclose:RequeueTailAtEofServer", "ECHO-4", "half-closed"),
]


@pytest.mark.parametrize(("spec", "req_id", "cause"), ONCE_LOST, ids=["close-all", "requeue"])
@pytest.mark.parametrize(
    "kind",
    ["impl", pytest.param("cmd", marks=pytest.mark.slow)],  # as processes: 20-25 s each
)
def test_once_lost_defects_fail_under_their_cause(
    spec: str, req_id: str, cause: str, kind: str
) -> None:
    target = Target("impl", spec)
    if kind == "cmd":
        target = target.as_process()
    outcome = check(
        target,
        req_id,
        hypothesis_settings=settings(max_examples=60, database=None, derandomize=True),
        budget=45,  # a bound: in-process it takes 5-10 s; under load, floods replay slowly
    )
    assert outcome.verdict == "fail", outcome.detail
    assert outcome.detail.startswith(f"{req_id}: "), outcome.detail
    assert cause in outcome.detail.splitlines()[0]
    assert len(outcome.program) <= 5, outcome.program


# -- the merge: a finding fails its requirement, its own failure stands -------------------


def _finding(req_id: str, verdict: str = "fail") -> dict[str, object]:
    return {
        "requirement": req_id,
        "found_by": "ECHO-5",
        "verdict": verdict,
        "detail": f"found by the programs that check ECHO-5\n{req_id}: server closed",
        "counterexample": "c0 = state.connect()",
        "replay": "python -m spec.replay ... --plan ECHO-5",
    }


def _result(entries: dict[str, dict[str, object]]) -> TargetResult:
    return TargetResult(Target("impl", "m:C", name="t"), entries)  # type: ignore[arg-type]


def test_a_finding_fails_a_requirement_that_passed_or_did_not_run() -> None:
    result = _result(
        {
            "ECHO-2": {"verdict": "pass", "detail": "no violation in 100 programs"},
            "ECHO-5": {"verdict": "pass", "findings": [_finding("ECHO-2"), _finding("ECHO-4")]},
        }
    )
    echo2, echo4 = result.entries["ECHO-2"], result.entries["ECHO-4"]
    assert echo2["verdict"] == echo4["verdict"] == "fail"
    assert echo2["found_by"] == "ECHO-5" and "--plan ECHO-5" in echo2["replay"]
    assert "ECHO-2's own programs: no violation in 100 programs" in echo2["detail"]
    assert result.verdict(strict=False) == "fail"
    assert set(result.found_elsewhere()) == {"ECHO-2", "ECHO-4"}


def test_an_own_failure_stands_and_an_unconfirmed_finding_is_no_verdict() -> None:
    own = {"verdict": "fail", "detail": "ECHO-2: lost"}
    result = _result(
        {
            "ECHO-2": own,
            "ECHO-5": {"verdict": "pass", "findings": [_finding("ECHO-2")]},
            "ECHO-6": {"verdict": "pass", "findings": [_finding("ECHO-4", "unconfirmed")]},
        }
    )
    assert result.entries["ECHO-2"] == own
    assert "ECHO-4" not in result.entries
    assert not result.found_elsewhere()


def _masked_outcome(finding_verdict: str) -> checker.Outcome:
    from spec.machine import CheckLog
    from spec.model import Symptom, Violation

    seen = Violation("ECHO-2", "138329 echo bytes never arrived", waited=True, kind=Symptom.MISSING)
    log = CheckLog()
    log.masked["ECHO-2"] += 3
    log.masking["ECHO-2"] = seen
    masked = checker._masked("ECHO-1", log)
    assert masked.masked_by == "ECHO-2"
    masked.findings = [
        checker.Finding("ECHO-2", "ECHO-1", finding_verdict, seen, ["c0 = state.connect()"], "")
    ]
    return checker._masked_only_by_a_verdict("ECHO-1", masked, log)


def test_only_a_verdict_masks_another_requirement() -> None:
    """An observation that did not show again on a fresh server masks nothing:
    "fix ECHO-2 first" would send the user after a failure that is not one."""
    assert _masked_outcome("fail").masked_by == "ECHO-2"
    unmasked = _masked_outcome("unconfirmed")
    assert (unmasked.verdict, unmasked.masked_by) == ("not-run", None)
    assert "did not show again on a fresh server" in unmasked.detail
    assert "fix ECHO-2" not in unmasked.detail
    assert [f.verdict for f in unmasked.findings] == ["unconfirmed"]


def test_a_withdrawn_failure_stands_when_its_mask_is_no_verdict() -> None:
    """A cause test masks an ECHO-4 FAIL by ECHO-2 (the program without the
    half-close broke ECHO-2); if that ECHO-2, shrunk and run again, is no
    verdict, the ECHO-4 FAIL stands: an unconfirmed finding masks nothing."""
    from spec.checker import Finding, Outcome, _masked_only_by_a_verdict
    from spec.machine import CheckLog as Log
    from spec.model import Violation
    from spec.verdicts import Verdict

    failed = Outcome("ECHO-4", "", Verdict.FAIL, detail="ECHO-4: closed after half-close")
    lost = Violation("ECHO-2", "1 echo bytes never arrived", connection="c0", waited=True)
    unconfirmed = Finding("ECHO-2", "ECHO-4", Verdict.UNCONFIRMED, lost, [], "", "seen once")
    masked = Outcome(
        "ECHO-4", "", Verdict.NOT_RUN, masked_by="ECHO-2", withdrawn=failed, findings=[unconfirmed]
    )
    log = Log()
    log.masked["ECHO-2"] += 1
    log.masking["ECHO-2"] = lost
    kept = _masked_only_by_a_verdict("ECHO-4", masked, log)
    assert kept is failed and kept.verdict == "fail" and kept.findings == [unconfirmed]
    # A confirmed ECHO-2 keeps the mask.
    confirmed = Finding("ECHO-2", "ECHO-4", Verdict.FAIL, lost, [], "", "")
    masked.findings = [confirmed]
    assert _masked_only_by_a_verdict("ECHO-4", masked, log) is masked
