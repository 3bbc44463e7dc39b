"""How fast is the checker?  Prints figures; asserts nothing.

    python bench/checker_speed.py            # all figures, about 2 minutes
    python bench/checker_speed.py --quick    # fewer examples

1. State-machine steps per second against the reference server, for each
   driver and each machine-checked requirement (a step is one rule run:
   connect, send, read, drain, half-close, abort, close, flood, burst).
2. Seconds to find, shrink and report each seed defect (one worker), with the
   length of the shrunk program.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import settings

from spec.checker import check
from spec.machine import RULES, EchoConformance
from spec.measure import MEASURES
from spec.targets import BUNDLED, Target

#: The requirements judged by the machine alone (ECHO-10 is mostly measured).
MACHINE = [r for r in RULES if r not in MEASURES]
STEPS = {"n": 0}
_teardown = EchoConformance.teardown


def _counting_teardown(self: EchoConformance) -> None:
    STEPS["n"] += sum(1 for line in self.program if line != "state.teardown()")
    _teardown(self)


EchoConformance.teardown = _counting_teardown


def steps_per_second(target: Target, examples: int, settle: float) -> list[tuple[str, float]]:
    rows = []
    for req_id in MACHINE:
        STEPS["n"] = 0
        start = time.perf_counter()
        outcome = check(target, req_id, settle=settle, hypothesis_settings=settings(
            max_examples=examples, stateful_step_count=15, derandomize=True, database=None))
        elapsed = time.perf_counter() - start
        assert outcome.verdict == "pass", outcome.detail
        rows.append((req_id, STEPS["n"] / elapsed))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer examples")
    args = parser.parse_args()
    examples = 10 if args.quick else 40
    py = sys.executable
    targets = {
        "in-process": Target("impl", BUNDLED["reference"]),
        "process": Target("cmd", f"{py} -m impl.select_server --port {{port}} "
                                 "--log-level WARNING"),
    }
    print(f"# Checker speed ({examples} examples per requirement, derandomized)\n")
    print("| driver | " + " | ".join(MACHINE) + " | median |")
    print("|---" * (len(MACHINE) + 2) + "|")
    for name, target in targets.items():
        rows = steps_per_second(target, examples, settle=0.5)
        rates = [r for _, r in rows]
        print(f"| {name} | " + " | ".join(f"{r:,.0f}" for r in rates)
              + f" | **{statistics.median(rates):,.0f}** |")
    print("\n(steps per second, one worker)\n")
    print("# Seed defects: found, shrunk and reported\n")
    print("| server | requirement | verdict | seconds | shrunk steps |")
    print("|---|---|---|---|---|")
    for seed in ("seed-upper", "seed-echo"):
        target = Target("impl", BUNDLED[seed])
        for req_id in ("ECHO-1", "ECHO-4", "ECHO-5", "ECHO-6"):
            outcome = check(target, req_id, hypothesis_settings=settings(
                max_examples=examples, stateful_step_count=15, derandomize=True,
                database=None))
            steps = len([line for line in outcome.program if line != "state.teardown()"])
            print(f"| {seed} | {req_id} | {outcome.verdict} | {outcome.seconds:.2f} | "
                  f"{steps if outcome.program else '-'} |")


if __name__ == "__main__":
    main()
