"""How fast is the checker?  Prints figures; asserts nothing.

    python bench/checker_speed.py            # figures 1-3, about 6 minutes
    python bench/checker_speed.py --suite    # and 4: the self-suite twice, 5 more minutes
    python bench/checker_speed.py --quick    # fewer examples, one seed

1. State-machine steps per second against the reference server, for each
   driver and each machine-checked requirement (a step is one rule run:
   connect, send, read, drain, half-close, abort, close, flood, burst), and
   the ceiling: Hypothesis alone, drawing the same rules and arguments for
   steps that do nothing.
2. Seconds to find, shrink and report each seed defect (one worker), with the
   length of the shrunk program.
3. Seconds to reject each zoo defect under its ID, median and max over 5
   seeds (one worker, no shrinking: the time until the verdict is known; the
   kill-rate table, ``python bench/killrate.py``, times the shrunk report).
4. Wall time of the self-suite, ``CI=true pytest -n N`` with 1 and 2 workers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    precondition,
    rule,
    run_state_machine_as_test,
)

from impl.zoo import DEFECTS
from spec.checker import check
from spec.machine import FLOODS, PAYLOADS, RULES, SMALL, EchoConformance
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


class EmptySteps(RuleBasedStateMachine):
    """The checker's rules, strategies and client limit, with steps that do nothing."""

    clients = Bundle("clients")

    def __init__(self) -> None:
        super().__init__()
        self.connected = 0

    def _step(self) -> None:
        STEPS["n"] += 1

    @precondition(lambda self: self.connected < EchoConformance.max_clients)
    @rule(target=clients)
    def connect(self) -> int:
        self._step()
        self.connected += 1
        return self.connected

    @rule(client=clients, payload=PAYLOADS, writes=st.integers(1, 4))
    def send(self, client: int, payload: object, writes: int) -> None:
        self._step()

    @rule(client=clients, size=st.integers(1, 64 * 1024))
    def read(self, client: int, size: int) -> None:
        self._step()

    @rule(client=clients)
    def drain(self, client: int) -> None:
        self._step()

    @rule(client=clients)
    def half_close(self, client: int) -> None:
        self._step()

    @rule(client=clients, payload=SMALL)
    def send_and_half_close(self, client: int, payload: object) -> None:
        self._step()

    @rule(client=consumes(clients))
    def abort(self, client: int) -> None:
        self._step()
        self.connected -= 1

    @rule(client=consumes(clients))
    def close(self, client: int) -> None:
        self._step()
        self.connected -= 1

    @rule(client=clients, payload=FLOODS)
    def flood(self, client: int, payload: object) -> None:
        self._step()

    @rule(n=st.integers(2, 6), payload=SMALL)
    def burst(self, n: int, payload: object) -> None:
        self._step()


def hypothesis_alone(examples: int) -> float:
    """Steps per second of `EmptySteps`: what drawing the steps costs, no I/O at all."""
    STEPS["n"] = 0
    start = time.perf_counter()
    run_state_machine_as_test(EmptySteps, settings=settings(
        max_examples=examples * len(MACHINE), stateful_step_count=15, derandomize=True,
        database=None))
    return STEPS["n"] / (time.perf_counter() - start)


def zoo_rejections(seeds: int) -> None:
    print(f"# Zoo defects: seconds to reject under the expected ID ({seeds} seeds)\n")
    print("| defect | requirement | rejected | median s | max s |")
    print("|---|---|---:|---:|---:|")
    # The default profile's budget, without shrinking.
    budget = settings(max_examples=40, stateful_step_count=15, database=None,
                      phases=[Phase.explicit, Phase.generate])
    medians = []
    for d in DEFECTS.values():
        times, rejected = [], 0
        for seed in range(seeds):
            outcome = check(Target("impl", d.target), d.requirement, hypothesis_settings=budget,
                            seed=seed)
            rejected += (outcome.verdict == "fail" and outcome.violation is not None
                         and outcome.violation.requirement == d.requirement)
            times.append(outcome.seconds)
        medians.append(statistics.median(times))
        print(f"| {d.name} | {d.requirement} | {rejected}/{seeds} | "
              f"{statistics.median(times):.2f} | {max(times):.2f} |", flush=True)
    slow = sum(m >= 5 for m in medians)
    print(f"\n{len(medians) - slow} of {len(medians)} defects rejected in under 5 s (median).\n")


def suite_wall_times() -> None:
    print("# Self-suite wall time (CI=true pytest -q -n N)\n")
    walls = {}
    for workers in (1, 2):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rf", "-n", str(workers)],
                              env={**os.environ, "CI": "true"}, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, cwd=Path(__file__).resolve().parent.parent)
        walls[workers] = time.perf_counter() - start
        lines = done.stdout.strip().splitlines() or ["(no output)"]
        label = f"{workers} worker{'s' if workers > 1 else ''}"
        print(f"- {label}: {walls[workers]:.0f} s ({lines[-1]})")
        for line in lines:
            if line.startswith("FAILED"):
                print(f"  - {line}")
    print(f"\nScaling, 1 worker / 2 workers: {walls[1] / walls[2]:.2f}x\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer examples, one seed")
    parser.add_argument("--suite", action="store_true",
                        help="also time the self-suite with 1 and 2 workers (~5 min)")
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
    print(f"The ceiling, Hypothesis alone (every rule enabled, the same arguments, steps "
          f"that do nothing): {hypothesis_alone(examples):,.0f} steps/s\n")
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
    print()
    zoo_rejections(1 if args.quick else 5)
    if args.suite:
        suite_wall_times()


if __name__ == "__main__":
    main()
