"""`--echo-shard K/N`: which part of a run a (target, requirement) test belongs to.

The tests are the run's targets × requirements in order (each target's ten
requirements, target after target); test i (from 0) belongs to part
``i % N + 1``.  So every part gets about as many tests, each target's slow
measured requirements (ECHO-8 … 10) fall in different parts, and the split
depends only on the targets and N, not on -k or on which machine runs it.
`spec.merge` puts the parts' JSON reports back together.
"""

from __future__ import annotations

from spec.requirements import IDS


def part_of(target_index: int, req_id: str, count: int) -> int:
    """The part (1..count) that checks this target's requirement."""
    return (target_index * len(IDS) + IDS.index(req_id)) % count + 1
