"""The verdicts, as the reports spell them.

A requirement's verdict on one target is a `Verdict`; a target's verdict
over its requirements, and a run's over its targets, is an `Overall` (see
`spec.matrix` for how one follows from the others).  Both are `str`
enumerations, so the JSON report and anything comparing with the spelled
value ("pass") read them unchanged.
"""

from __future__ import annotations

import enum


class Verdict(enum.StrEnum):
    """One requirement, one target."""

    PASS = "pass"
    FAIL = "fail"
    #: Not judged: the outcome's detail says why (masked by another
    #: requirement, deselected, the budget, the mode).
    NOT_RUN = "not-run"
    #: Violated once, from a wait that ran out, and not again on a replay.
    INCONCLUSIVE = "inconclusive"
    #: A finding (another requirement's programs showed it) judged from a
    #: wait that ran out once and never again: noted, no verdict.
    UNCONFIRMED = "unconfirmed"


class Overall(enum.StrEnum):
    """A target over its requirements, or a run over its targets."""

    PASS = "pass"
    #: None failed, but some were not judged.
    INCOMPLETE = "incomplete"
    FAIL = "fail"
