"""`pytest --echo-list`: every requirement and what checks it, without running anything.

One line per requirement, from `spec.requirements` (ID, level, title) and
`spec.plans` (how the checker looks for a violation), then the test each
target gets for it.
"""

from __future__ import annotations

from spec.plans import PLANS, Plan
from spec.requirements import REQUIREMENTS

#: The end-of-program flags of a plan, as the listing words them.
_FLAGS = (
    ("probe_after_end", "a new connection is served after each one ends"),
    ("released_after_each_step", "nothing held for an ended connection after each step"),
    ("half_close_at_end", "every client half-closes at the end"),
    ("close_server_at_end", "the server's close() releases everything"),
    ("plays_idle_program", "plus the idle program"),
)


def checked_by(p: Plan) -> str:
    """What checks a requirement, in words."""
    parts = []
    if p.rules:
        where = " (in-process targets only)" if p.in_process_only else ""
        parts.append(f"programs of {', '.join(sorted(p.rules))}{where}")
    if p.scenarios:
        parts.append(f"scenarios of {', '.join(p.scenarios)}")
    parts += [text for name, text in _FLAGS if getattr(p, name)]
    if p.measured:
        parts.append("a measurement (spec/measure.py)")
    return "; ".join(parts)


def requirement_lines() -> list[str]:
    lines = [f"{'ID':8} {'LEVEL':6} {'TITLE':17} CHECKED BY"]
    for r in REQUIREMENTS:
        lines.append(f"{r.id:8} {r.level.value:6} {r.title:17} {checked_by(PLANS[r.id])}")
    lines += [
        "",
        f"{len(REQUIREMENTS)} requirements (spec/PROTOCOL.md); each target gets one test per "
        "requirement: spec/test_conformance.py::test_requirement[TARGET-ID]",
    ]
    return lines
