"""Join the JSON reports of a sharded run's parts into the report of the whole run.

    pytest --echo-targets targets.toml --echo-shard 1/3 --echo-report=part1.json   # machine 1
    pytest --echo-targets targets.toml --echo-shard 2/3 --echo-report=part2.json   # machine 2
    pytest --echo-targets targets.toml --echo-shard 3/3 --echo-report=part3.json   # machine 3
    python -m spec.merge part1.json part2.json part3.json -o all.json --html all.html

Each part's report lists the tests it ran (its ``shard`` key); the merge
takes every (target, requirement) entry from the part that ran it and
computes the verdicts again (`spec.matrix`), so the JSON, the HTML and the
matrix printed are those a single run over every target would give.  It
refuses parts of different runs (other targets, another N, a part missing
or given twice).

Exit status: 0 the merged verdict is pass, 1 fail or incomplete, 2 a usage
error (a file that is not a part's report, or parts that do not fit).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from spec import matrix
from spec.model import TRANSFORMS, UPPER, Transform
from spec.targets import Target
from spec.verdicts import Overall

USAGE_ERROR = 2
#: Why a requirement no part ran has no outcome.
NOT_RUN = "not run: deselected in its part, or its part stopped before it"


class MergeError(Exception):
    """Parts that cannot be joined, with a message for the user."""


def _targets(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """name -> the target's report, for either shape of report (spec/matrix.py)."""
    if "targets" in report:
        return dict(report["targets"])
    return {report["name"]: report}


def merge(reports: list[dict[str, Any]]) -> tuple[list[matrix.TargetResult], bool]:
    """The whole run's results and its strictness, from its parts' reports."""
    shards: list[dict[str, Any]] = [r.get("shard") or {} for r in reports]
    if not all(isinstance(s, dict) and {"part", "of", "strict", "ran"} <= set(s) for s in shards):
        raise MergeError("every report must be a part's: written with --echo-shard K/N")
    count = shards[0]["of"]
    parts = sorted(s["part"] for s in shards)
    if {s["of"] for s in shards} != {count} or parts != list(range(1, count + 1)):
        raise MergeError(
            f"the parts given are {', '.join(f'{p}/{count}' for p in parts)}: give parts 1 to "
            f"{count} of one run, each once"
        )
    if len({s["strict"] for s in shards}) != 1:
        raise MergeError("the parts were run with and without --echo-strict")
    first = _targets(reports[0])
    order = [(name, t["kind"], t["target"]) for name, t in first.items()]
    transforms = {name: _transform(t.get("transform")) for name, t in first.items()}
    entries: dict[str, dict[str, matrix.Entry]] = {name: {} for name in first}
    for report, shard in zip(reports, shards, strict=True):
        targets = _targets(report)
        if [(name, t["kind"], t["target"]) for name, t in targets.items()] != order:
            raise MergeError(f"part {shard['part']}/{count} checked other targets")
        for name, ran in shard["ran"].items():
            for req_id in ran:
                if req_id in entries[name]:
                    raise MergeError(f"{name} {req_id} was checked by two parts")
                entries[name][req_id] = targets[name]["requirements"][req_id]
    results = [
        matrix.TargetResult(
            Target(kind, spec, name=name, transform=transforms[name]), entries[name]
        )
        for name, kind, spec in order
    ]
    return results, bool(shards[0]["strict"])


def _transform(name: object) -> Transform | None:
    """The transform a part's report names: its name is all a merged report
    shows (a MODULE:FUNC need not import where the parts are merged)."""
    if not isinstance(name, str) or name == UPPER.name:
        return None
    return TRANSFORMS.get(name) or Transform(name, bytes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spec.merge",
        description="Join the --echo-report files of a sharded run's parts (--echo-shard K/N).",
    )
    parser.add_argument("parts", nargs="+", metavar="PART.json", help="the parts' reports")
    parser.add_argument("-o", "--output", metavar="PATH", help="write the whole run's JSON here")
    parser.add_argument("--html", metavar="PATH", help="write the whole run's HTML report here")
    args = parser.parse_args(argv)
    try:
        reports = [json.loads(Path(p).read_text()) for p in args.parts]
        results, strict = merge(reports)
    except (OSError, ValueError, KeyError, TypeError, MergeError) as e:
        print(f"{parser.prog}: {e}", file=sys.stderr)
        return USAGE_ERROR
    if args.output:
        report = matrix.report(results, strict, NOT_RUN)
        Path(args.output).write_text(json.dumps(report, indent=2, default=str) + "\n")
    if args.html:
        from spec.report_html import render

        Path(args.html).write_text(render(results, strict=strict, not_run=NOT_RUN))
    for line in matrix.terminal_lines(results, strict):
        print(line)
    verdict = matrix.overall(results, strict)
    print(f"verdict: {verdict.upper()}")
    return 0 if verdict == Overall.PASS else 1


if __name__ == "__main__":
    sys.exit(main())
