"""Is a seeded verdict reproducible on a busy machine?  The same seed, five times, under load.

    python bench/determinism.py                  # 5 runs, seed 1, 2 CPU hogs
    python bench/determinism.py --runs 3 --seed 7 --hogs 0

The seed's server (``python -m impl.seed_upper_server --port {port}``, a
process, as ``--echo-server-cmd`` runs it) is checked against all ten
requirements `--runs` times with the same seed (``check(..., seed=N)``, what
pytest's ``--hypothesis-seed`` sets): random programs, the developers' budget
(40 programs of up to 15 steps), shrinking on, the default time budget.
Meanwhile `--hogs` CPU-bound processes run beside the checker (killed at the
end, whatever happens).  Identical runs give the same failing set of
requirements and, for each failure, the same shrunk program.  The page goes
to docs/determinism.md.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import multiprocessing
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hypothesis import settings

from spec.checker import check
from spec.requirements import IDS
from spec.targets import Target

PY = sys.executable
SEED_CMD = f"{PY} -m impl.seed_upper_server --port {{port}}"
BUDGET = settings(max_examples=40, stateful_step_count=15, deadline=None, database=None)


def _one(run: int, req: str, seed: int) -> dict[str, object]:
    start = time.monotonic()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            o = check(Target("cmd", SEED_CMD), req, hypothesis_settings=BUDGET, seed=seed)
    except Exception as e:
        return {
            "run": run,
            "req": req,
            "verdict": f"error: {type(e).__name__}",
            "under": "",
            "program": [],
            "detail": str(e),
            "seconds": time.monotonic() - start,
        }
    return {
        "run": run,
        "req": req,
        "verdict": o.verdict,
        "under": o.violation.requirement if o.violation else "",
        "program": [line for line in o.program if line != "state.teardown()"],
        "detail": o.detail,
        "seconds": o.seconds,
    }


def _key(r: dict[str, object]) -> str:
    """What must be the same from run to run: verdict, ID, shrunk program."""
    if r["verdict"] == "pass":
        return "pass"
    prog = "\n".join(r["program"])  # type: ignore[arg-type]
    digest = hashlib.sha1(prog.encode()).hexdigest()[:6] if prog else "-"
    return f"{r['verdict']} {r['under'] or ''} {len(r['program'])} steps #{digest}".replace(
        "  ", " "
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs (default 5)")
    parser.add_argument("--seed", type=int, default=1, help="the one seed (default 1)")
    parser.add_argument("--workers", type=int, default=2, help="parallel checks (default 2)")
    parser.add_argument("--hogs", type=int, default=2, help="CPU hogs beside (default 2)")
    parser.add_argument("--page", default="determinism.md", help="page under docs/ ('' none)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    from _page import Page
    from false_alarms import cpu_hogs

    page = Page(f"Determinism: the seed's server, seed {args.seed}, {args.runs} runs under load")
    results: list[dict[str, object]] = []
    start = time.monotonic()
    with (
        cpu_hogs(args.hogs),
        ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool,
    ):
        futures = [
            pool.submit(_one, run, req, args.seed) for run in range(1, args.runs + 1) for req in IDS
        ]
        for future in as_completed(futures):
            r = future.result()
            results.append(r)
            print(
                f"  [{len(results)}/{len(futures)} {time.monotonic() - start:.0f} s] run "
                f"{r['run']} {r['req']}: {_key(r)} ({r['seconds']:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
    wall = time.monotonic() - start
    cell = {(r["run"], r["req"]): r for r in results}
    runs = range(1, args.runs + 1)
    lines = [
        "| requirement | " + " | ".join(f"run {i}" for i in runs) + " | identical |",
        "|---|" + "---|" * args.runs + "---|",
    ]
    same_all = True
    for req in IDS:
        keys = [_key(cell[(i, req)]) for i in runs]
        same = len(set(keys)) == 1
        same_all &= same
        lines.append(f"| {req} | " + " | ".join(keys) + f" | {'yes' if same else '**NO**'} |")
    failing = [frozenset(req for req in IDS if cell[(i, req)]["verdict"] != "pass") for i in runs]
    sets = "\n".join(
        f"- run {i}: {{{', '.join(sorted(f))}}}" for i, f in zip(runs, failing, strict=True)
    )
    same_sets = len(set(failing)) == 1
    budget_cut = sorted(
        {f"{r['req']} (run {r['run']})" for r in results if "time budget" in str(r["detail"])}
    )
    out = [
        f"`check(Target('cmd', 'python -m impl.seed_upper_server --port {{port}}'), ID, "
        f"seed={args.seed})` for each of the {len(IDS)} requirements, {args.runs} times, "
        f"on {args.workers} workers, with {args.hogs} CPU-bound processes beside the "
        "checker; 40 random programs of up to 15 steps, shrinking on, the default 60 s "
        f"time budget; {wall / 60:.1f} min wall. Each cell is the verdict, the "
        "requirement of the violation, the length of the shrunk program and a hash of it.",
        "",
        "Failing set of requirements per run:",
        "",
        sets,
        "",
        f"Same failing set in every run: **{'yes' if same_sets else 'NO'}**. "
        f"Same verdicts and shrunk programs in every run: "
        f"**{'yes' if same_all else 'NO'}**.",
        "",
        *lines,
        "",
    ]
    if budget_cut:
        out += [
            "Checks the 60 s time budget cut short (a pass after fewer programs than "
            f"asked, or shrinking stopped early): {', '.join(budget_cut)}.",
            "",
        ]
    out += ["## The shrunk programs", ""]
    for req in IDS:
        progs: dict[str, list[int]] = {}
        for i in runs:
            r = cell[(i, req)]
            if r["verdict"] != "pass":
                progs.setdefault("\n".join(r["program"]) or "(no program)", []).append(i)  # type: ignore[arg-type]
        for prog, which in progs.items():
            first = cell[(which[0], req)]
            out += [
                f"### {req}, runs {', '.join(map(str, which))}: {first['verdict']}",
                "",
                "```",
                prog,
                "```",
                "",
                "Detail: " + str(first["detail"]).splitlines()[0] if first["detail"] else "",
                "",
            ]
    out += ["## Reading", "", "READING", ""]
    body = "\n".join(out)
    if args.page:
        page.write(args.page, body)
    else:
        print(page.header() + "\n" + body)
    return 0 if same_all else 1


if __name__ == "__main__":
    sys.exit(main())
