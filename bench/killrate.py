"""Print the kill-rate table: is each zoo defect rejected, under which ID, how fast?

    python bench/killrate.py                # every defect, the CI budget
    python bench/killrate.py --only lifo-queue,dup-leak --examples 10 --steps 10
    python bench/killrate.py --search       # also try the other IDs on misses

Each defect is checked with `spec.checker.check` under its own requirement:
ECHO-1..7 by the state machine, in-process, derandomized, with full shrinking
(so "seconds" is the time to the *shrunk* report and "steps" the length of the
shrunk program); ECHO-8..10 measured against the class run as a process.  A
defect the in-process machine misses is checked once more through the process
driver (``--no-process``: don't).  The table is Markdown, on stdout; progress
goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from dataclasses import dataclass

from hypothesis import Phase, settings

from impl.zoo import DEFECTS, Defect
from spec.checker import check
from spec.machine import RULES
from spec.measure import MEASURES
from spec.targets import Target

#: The process driver's budget and settle time (each example starts a process).
PROCESS_EXAMPLES, PROCESS_STEPS, PROCESS_SETTLE = 12, 10, 0.5


@dataclass
class Row:
    defect: Defect
    verdict: str  # "fail" (rejected), "pass", "not-run" or "error: ..."
    under: str = ""
    via: str = ""
    seconds: float = 0.0
    #: Seconds to the first failing program (before shrinking), when rejected.
    first: float | None = None
    steps: int | None = None
    detail: str = ""

    @property
    def killed(self) -> bool:
        return self.verdict == "fail" and self.under == self.defect.requirement


def _settings(examples: int, steps: int, shrink: bool) -> settings:
    phases = list(Phase) if shrink else [Phase.explicit, Phase.generate]
    return settings(max_examples=examples, stateful_step_count=steps, database=None,
                    derandomize=True, phases=phases)


def _run(d: Defect, req: str, target: Target, via: str, s: settings, settle: float) -> Row:
    start = time.monotonic()
    try:
        o = check(target, req, settle=settle, hypothesis_settings=s)
    except BaseException as e:  # e.g. Hypothesis' FlakyFailure: report it, go on
        if isinstance(e, KeyboardInterrupt):
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        return Row(d, f"error: {type(e).__name__}", via=via,
                   seconds=round(time.monotonic() - start, 3), detail=first)
    under = o.violation.requirement if o.violation else ""
    steps = len(o.program) if o.program else None
    if not o.program and req in MEASURES:
        via = "process"  # judged by the measurement, not the machine
    return Row(d, o.verdict, under, via, o.seconds, o.first_failure, steps,
               o.detail.splitlines()[0])


def measure(d: Defect, args: argparse.Namespace) -> Row:
    """Check `d` under its ID; on a miss, through the process driver, then (--search)
    under the other machine IDs.  `seconds` is the total spent."""
    target = Target("impl", d.target)
    s = _settings(args.examples, args.steps, not args.no_shrink)
    machine_only = d.requirement in RULES and d.requirement not in MEASURES
    via = "in-process" if d.requirement in RULES else "process"
    row = _run(d, d.requirement, target, via, s, args.settle)
    if row.verdict == "fail" or not machine_only:
        return row
    spent = row.seconds
    if not args.no_process:
        ps = _settings(min(args.examples, PROCESS_EXAMPLES), min(args.steps, PROCESS_STEPS),
                       not args.no_shrink)
        prow = _run(d, d.requirement, target.as_process(), "process", ps, PROCESS_SETTLE)
        if prow.first is not None:
            prow.first = round(spent + prow.first, 3)
        spent += prow.seconds
        row.via = "in-process, process"
        if prow.verdict == "fail" or prow.verdict.startswith("error"):
            prow.via = "process only" if prow.verdict == "fail" else "process"
            prow.seconds = round(spent, 3)
            return prow
    if args.search:
        for req in RULES:
            if req == d.requirement:
                continue
            other = _run(d, req, target, "in-process", s, args.settle)
            if other.first is not None:
                other.first = round(spent + other.first, 3)
            spent += other.seconds
            if other.verdict == "fail":
                other.seconds = round(spent, 3)
                return other
    row.seconds = round(spent, 3)
    return row


def table(rows: list[Row]) -> str:
    lines = ["| defect | expected | rejected | under | via | first failure, s | shrunk report, s "
             "| steps | diagnosis |",
             "|---|---|---|---|---|---:|---:|---:|---|"]
    for r in rows:
        rejected = "yes" if r.killed else ("other ID" if r.verdict == "fail" else
                                           "NO" if r.verdict == "pass" else r.verdict)
        steps = "" if r.steps is None else str(r.steps)
        detail = r.detail.replace("|", "\\|")
        if len(detail) > 110:
            detail = detail[:107] + "..."
        first = "" if r.first is None else f"{r.first:.2f}"
        lines.append(f"| {r.defect.name} | {r.defect.requirement} | {rejected} | "
                     f"{r.under or '-'} | {r.via} | {first} | {r.seconds:.2f} | {steps} "
                     f"| {detail} |")
    killed = sum(r.killed for r in rows)
    only_process = sum(r.killed and r.via == "process only" for r in rows)
    lines.append("")
    lines.append(f"Killed {killed} of {len(rows)} under the expected ID"
                 + (f" ({only_process} only through the process driver)" if only_process else "")
                 + f"; {sum(r.seconds for r in rows):.0f} s in all.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=40,
                        help="Hypothesis max_examples (default: 40, the ci profile)")
    parser.add_argument("--steps", type=int, default=15,
                        help="Hypothesis stateful_step_count (default: 15, the ci profile)")
    parser.add_argument("--no-shrink", action="store_true",
                        help="report the first failing program, unshrunk (much faster)")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="settle seconds for the measured (process) checks (default: 2)")
    parser.add_argument("--only", help="comma-separated defect names")
    parser.add_argument("--no-process", action="store_true",
                        help="do not retry in-process misses through the process driver")
    parser.add_argument("--search", action="store_true",
                        help="for a miss, try every other machine ID and report the first "
                        "that rejects it")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(DEFECTS)
    unknown = [n for n in names if n not in DEFECTS]
    if unknown:
        parser.error(f"unknown defect(s): {', '.join(unknown)}; known: {', '.join(DEFECTS)}")
    print(f"# Defect zoo kill rate (max_examples={args.examples}, "
          f"stateful_step_count={args.steps}, derandomized, "
          f"{'no shrinking' if args.no_shrink else 'shrunk'})\n")
    rows = []
    for name in names:
        print(f"checking {name} ...", file=sys.stderr, flush=True)
        with contextlib.redirect_stdout(sys.stderr):  # Hypothesis' own warnings
            rows.append(measure(DEFECTS[name], args))
        print(f"  {rows[-1].verdict} {rows[-1].under} {rows[-1].seconds:.1f} s",
              file=sys.stderr, flush=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
