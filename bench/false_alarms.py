"""Does the checker ever cry wolf?  Runs it over and over against correct servers, under load.

    python bench/false_alarms.py                 # every target, up to 20 runs, 30 minutes
    python bench/false_alarms.py --runs 3 --targets reference selectors --hogs 0
    python bench/false_alarms.py --list

One *run* is the checker's full verdict on one target: every requirement,
ECHO-1 to ECHO-10, judged SHOULD-strict (every verdict must be "pass"), the
machine-checked ones with the developers' budget (40 programs of up to 15
steps, the default time budget) and Hypothesis seed = the run's number, so
each run explores different programs and any run can be repeated exactly
(`--first-seed N --runs 1`).  A correct server must pass every check; any
other verdict ("fail", "not-run", "inconclusive", or an exception such as
FlakyFailure) is printed with its detail and the command that replays it,
and the exit status is 1.

While it runs, `--hogs` (default 2) CPU-bound processes
(``python -c 'while True: pass'``) run beside the checker, so the servers and
the checker compete for the CPUs as on a busy CI machine; they are killed at
the end, whatever happens.  Runs are started in seed order until `--minutes`
have passed (then the checks already started finish, the rest are dropped),
so a run is counted only if all its ten checks finished.  Checks go to
`--workers` processes (default 2).  The page goes to docs/false-alarms.md.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import io
import multiprocessing
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hypothesis import settings

from spec.checker import check
from spec.requirements import IDS
from spec.targets import Target

PY = sys.executable

#: The correct servers: name -> (kind, spec).  Processes, as a user checks
#: them with --echo-server-cmd; the reference and selectors also in-process (--echo-impl).
TARGETS: dict[str, tuple[str, str]] = {
    "reference": ("cmd", f"{PY} -m impl.select_server --port {{port}}"),
    "selectors": ("cmd", f"{PY} -m impl.selectors_server --port {{port}}"),
    "asyncio": ("cmd", f"{PY} -m impl.asyncio_server --port {{port}}"),
    "threaded": ("cmd", f"{PY} -m impl.threaded_server --port {{port}}"),
    "node": ("cmd", "node examples/echo_server.js {port}"),
    "java": ("cmd", "java examples/EchoServer.java {port}"),
    "socat-tr": (
        "cmd",
        "socat TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork SYSTEM:'stdbuf -o0 tr a-z A-Z'",
    ),
    # socat's listen backlog is 5 by default: 1,000 simultaneous connections
    # then wait on SYN retries, which ECHO-10 rejects (as it rejects the seed's
    # listen(5)).  With a backlog it serves them all.
    "socat-tr-backlog": (
        "cmd",
        "socat TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,"
        "backlog=1024 SYSTEM:'stdbuf -o0 tr a-z A-Z'",
    ),
    "reference-impl": ("impl", "impl.select_server:SelectEchoServer"),
    "selectors-impl": ("impl", "impl.selectors_server:SelectorsEchoServer"),
}
#: What runs without --targets: the six process targets of issue 11.
DEFAULT = ["reference", "selectors", "asyncio", "threaded", "node", "socat-tr"]
NEEDS = {"node": "node", "java": "java", "socat-tr": "socat", "socat-tr-backlog": "socat"}

BUDGET = settings(max_examples=40, stateful_step_count=15, deadline=None, database=None)


def _one(name: str, req: str, seed: int) -> tuple[str, str, int, str, float, str, str]:
    kind, spec = TARGETS[name]
    target = Target(kind, spec)
    start = time.monotonic()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            o = check(target, req, hypothesis_settings=BUDGET, seed=seed)
    except Exception as e:  # FlakyFailure and friends: a non-pass too
        option = "--echo-impl" if kind == "impl" else "--echo-server-cmd"
        return (
            name,
            req,
            seed,
            f"error: {type(e).__name__}",
            time.monotonic() - start,
            (str(e).splitlines() or [""])[0],
            f"python bench/false_alarms.py --targets {name} --first-seed {seed} --runs 1"
            f"  # or: pytest --echo-strict --hypothesis-seed {seed} {option} '{spec}' "
            f"-k '{req}'",
        )
    option = "--echo-impl" if kind == "impl" else "--echo-server-cmd"
    # A measured requirement has no program to replay: its pytest run repeats it.
    replay = o.replay or (
        f"pytest --echo-strict -p no:cacheprovider {option} {shlex.quote(spec)} -k '{req}]'"
    )
    return (name, req, seed, o.verdict, o.seconds, o.detail, replay)


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)


@contextlib.contextmanager
def cpu_hogs(n: int):
    """`n` busy loops beside the checker; always killed (by their own PIDs) on the way out."""
    hogs = [
        subprocess.Popen(
            [PY, "-c", "while True: pass"], stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        for _ in range(n)
    ]
    try:
        yield hogs
    finally:
        for h in hogs:
            h.kill()
        for h in hogs:
            h.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="most runs per target (default 20)")
    parser.add_argument(
        "--minutes",
        type=float,
        default=30,
        help="start no run after this many minutes (default 30)",
    )
    parser.add_argument(
        "--first-seed",
        type=int,
        default=1,
        help="seed of the first run; run i uses first-seed + i (default 1)",
    )
    parser.add_argument(
        "--targets",
        nargs="+",
        choices=list(TARGETS),
        default=None,
        help=f"which correct servers (default: {' '.join(DEFAULT)})",
    )
    parser.add_argument("--workers", type=int, default=2, help="parallel checks (default 2)")
    parser.add_argument(
        "--hogs", type=int, default=2, help="CPU-bound processes run beside the checker (default 2)"
    )
    parser.add_argument(
        "--page", default="false-alarms.md", help="the page under docs/ ('' for none)"
    )
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, (kind, spec) in TARGETS.items():
            print(f"{name:15} {'--echo-impl' if kind == 'impl' else '--echo-server-cmd'} {spec}")
        return 0
    if args.runs < 1 or args.workers < 1 or args.hogs < 0:
        parser.error("--runs and --workers must be at least 1, --hogs at least 0")
    names = args.targets or DEFAULT
    missing = [n for n in names if n in NEEDS and not shutil.which(NEEDS[n])]
    names = [n for n in names if n not in missing]
    # SIGTERM (timeout, kill) unwinds like Ctrl-C, so the hogs and the pool end too.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    from _page import Page

    page = Page(f"False alarms under load ({args.hogs} CPU hogs)")
    seeds = list(range(args.first_seed, args.first_seed + args.runs))
    results: list[tuple[str, str, int, str, float, str, str]] = []
    start = time.monotonic()
    deadline = start + args.minutes * 60
    interrupted = False
    with (
        cpu_hogs(args.hogs),
        ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool,
    ):
        todo = [(n, r, s) for s in seeds for n in names for r in IDS]
        running: dict = {}
        try:
            while todo or running:
                while todo and len(running) < args.workers and time.monotonic() < deadline:
                    job = todo.pop(0)
                    running[pool.submit(_one, *job)] = job
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    running.pop(future)
                    r = future.result()
                    results.append(r)
                    name, req, seed, verdict, secs, detail, _ = r
                    mark = "" if verdict == "pass" else f": {(detail.splitlines() or [''])[0]}"
                    print(
                        f"  [{len(results)} {time.monotonic() - start:.0f} s] {name} {req} "
                        f"seed {seed}: {verdict} {secs:.1f} s{mark}",
                        file=sys.stderr,
                        flush=True,
                    )
        except KeyboardInterrupt:
            interrupted = True
            for f in running:
                f.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
    wall = time.monotonic() - start

    by_run: dict[tuple[str, int], list] = defaultdict(list)
    for r in results:
        by_run[(r[0], r[2])].append(r)
    complete = {key for key, rs in by_run.items() if len(rs) == len(IDS)}
    rows = [
        "| target | command | complete runs (seeds) | checks passed | not pass "
        "| inconclusive | FlakyFailure / other errors | passes cut by the time budget "
        "| check-seconds (median per run) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    non_pass = []
    for n in names:
        rs = [r for r in results if r[0] == n and (n, r[2]) in complete]
        runs = sorted({r[2] for r in rs})
        passed = sum(r[3] == "pass" for r in rs)
        verdicts = Counter(r[3] for r in rs if r[3] != "pass")
        errors = sum(c for v, c in verdicts.items() if v.startswith("error"))
        budget_cut = sum(r[3] == "pass" and "time budget ran out" in r[5] for r in rs)
        per_run = sorted(sum(r[4] for r in rs if r[2] == s) for s in runs)
        median = per_run[len(per_run) // 2] if per_run else 0
        span = f"{len(runs)} ({runs[0]}..{runs[-1]})" if runs else "0"
        rows.append(
            f"| {n} | `{TARGETS[n][1]}` | {span} | {passed}/{len(rs)} | "
            f"{len(rs) - passed} | {verdicts.get('inconclusive', 0)} | {errors} | "
            f"{budget_cut} | {median:.0f} |"
        )
        non_pass += [r for r in rs if r[3] != "pass"]
    partial = [r for r in results if (r[0], r[2]) not in complete and r[3] != "pass"]
    total = sum(1 for r in results if (r[0], r[2]) in complete)
    out = [
        f"Targets checked as a user would, `--echo-server-cmd` (PID namespace, private network, "
        f"32 KiB buffers), each run the full verdict on all {len(IDS)} requirements, "
        'SHOULD-strict (anything but "pass" counts): 40 programs of up to 15 steps, '
        "seed = run number, shrinking on, the default time budget and settle. "
        f"{args.hogs} CPU-bound processes (`python -c 'while True: pass'`) ran beside "
        f"the checker's {args.workers} workers the whole time, on {len(names)} targets"
        + (f" (skipped, not installed: {', '.join(missing)})" if missing else "")
        + ". "
        f"Runs started in seed order for {args.minutes:g} minutes (at most {args.runs} "
        f"per target); {wall / 60:.1f} min wall" + (" (interrupted)" if interrupted else "") + ".",
        "",
        *rows,
        "",
        f"{total - len(non_pass)} of {total} checks in complete runs passed.",
        "",
    ]
    if non_pass or partial:
        out += ["## Every check that did not pass", ""]
        for name, req, seed, verdict, _secs, detail, replay in non_pass + partial:
            where = "" if (name, seed) in complete else " (in a run cut short)"
            out += [
                f"### {name} {req} seed {seed}: {verdict}{where}",
                "",
                "```",
                detail.strip(),
                "```",
                "",
                f"Replay: `{replay}`",
                "",
            ]
    out += ["## Reading", "", "READING", ""]
    body = "\n".join(out)
    if args.page:
        page.write(args.page, body)
    else:
        print(page.header() + "\n" + body)
    return 1 if non_pass or partial or interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
