"""Does the checker ever cry wolf?  Runs it over and over against correct servers.

    python bench/false_alarms.py                 # 20 seeded runs of every correct target
    python bench/false_alarms.py --runs 3 --targets reference selectors
    python bench/false_alarms.py --list

One *run* is the checker's full verdict on one target: every requirement,
ECHO-1 to ECHO-10, the machine-checked ones with the developers' budget
(40 programs of up to 15 steps) and Hypothesis seed = the run's number, so
each run explores different programs and any run can be repeated exactly
(`--first-seed N --runs 1`).  A correct server must pass every run; any
failure is printed with the command that replays it, and the exit status is 1.

Runs go to `--workers` processes (default 2) one requirement at a time, so a
slow process-driven check does not hold up the rest.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import settings

from spec.checker import check
from spec.requirements import IDS
from spec.targets import Target

#: The correct servers: name -> (kind, spec).  In-process where the design is
#: steppable (the driver with no timing at all), as a process otherwise.
TARGETS: dict[str, tuple[str, str]] = {
    "reference": ("impl", "impl.select_server:SelectEchoServer"),
    "reference-process": ("cmd", "python -m impl.select_server --port {port}"),
    "selectors": ("impl", "impl.selectors_server:SelectorsEchoServer"),
    "selectors-process": ("cmd", "python -m impl.selectors_server --port {port}"),
    "asyncio": ("cmd", "python -m impl.asyncio_server --port {port}"),
    "threaded": ("cmd", "python -m impl.threaded_server --port {port}"),
    "node": ("cmd", "node examples/echo_server.js {port}"),
}

BUDGET = settings(max_examples=40, stateful_step_count=15, deadline=None, database=None)


def _one(name: str, req: str, seed: int) -> tuple[str, str, int, str, float, str, str]:
    kind, spec = TARGETS[name]
    outcome = check(Target(kind, spec), req, hypothesis_settings=BUDGET, seed=seed)
    return (name, req, seed, outcome.verdict, outcome.seconds, outcome.detail, outcome.replay)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per target (default 20)")
    parser.add_argument("--first-seed", type=int, default=1,
                        help="seed of the first run; run i uses first-seed + i (default 1)")
    parser.add_argument("--targets", nargs="+", choices=list(TARGETS), default=None,
                        help="which correct servers (default: all; node only if installed)")
    parser.add_argument("--workers", type=int, default=2, help="parallel checks (default 2)")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, (kind, spec) in TARGETS.items():
            print(f"{name:18} {'--impl' if kind == 'impl' else '--server-cmd'} {spec}")
        return 0
    if args.runs < 1 or args.workers < 1:
        parser.error("--runs and --workers must be at least 1")
    names = args.targets or [n for n in TARGETS if n != "node" or shutil.which("node")]

    seeds = range(args.first_seed, args.first_seed + args.runs)
    failures: list[tuple[str, str, int, str, str]] = []
    passed: dict[str, int] = defaultdict(int)
    seconds: dict[str, float] = defaultdict(float)
    start = time.monotonic()
    with ProcessPoolExecutor(args.workers) as pool:
        jobs = [pool.submit(_one, n, r, s) for n in names for s in seeds for r in IDS]
        for done, job in enumerate(as_completed(jobs), 1):
            name, req, seed, verdict, secs, detail, replay = job.result()
            seconds[name] += secs
            if verdict == "pass":
                passed[name] += 1
            else:
                failures.append((name, req, seed, verdict, detail + "\n  replay: " + replay))
                print(f"  {name} {req} seed {seed}: {verdict}: {detail.splitlines()[0]}",
                      flush=True)
            if done % 50 == 0:
                print(f"  ... {done}/{len(jobs)} checks, {time.monotonic() - start:.0f} s",
                      flush=True)

    per_target = len(IDS) * args.runs
    print(f"\n{args.runs} runs (seeds {seeds.start}..{seeds.stop - 1}) x {len(IDS)} requirements"
          f" per target, {args.workers} workers, {time.monotonic() - start:.0f} s in all\n")
    print(f"{'target':18} {'checks passed':>14} {'check-seconds':>14}")
    for name in names:
        print(f"{name:18} {passed[name]:>8}/{per_target:<5} {seconds[name]:>14.0f}")
    for name, req, seed, verdict, detail in failures:
        print(f"\nFALSE ALARM? {name} {req} seed {seed}: {verdict}\n{detail}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
