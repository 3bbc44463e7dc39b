"""Is a seeded verdict reproducible on a busy machine?  The same seed, five times, under load.

    python bench/determinism.py                  # 5 runs, seed 1, 2 CPU hogs, 3 servers
    python bench/determinism.py --runs 3 --seed 7 --hogs 0
    python bench/determinism.py --servers epoll-strlen --requirements ECHO-2,ECHO-3

Each server of `--servers` is checked against each requirement of
`--requirements` (default all ten) `--runs` times with the same seed
(``check(..., seed=N)``, what pytest's ``--hypothesis-seed`` sets): random
programs, the developers' budget (40 programs of up to 15 steps), shrinking
on, the default time budget.  The servers:

- ``seed``: the seed's server (``python -m impl.seed_upper_server --port {port}``,
  a process, as ``--echo-server-cmd`` runs it);
- ``epoll-sigpipe``: tests/servers/epoll_echo.c built with no flags (dies of
  SIGPIPE when a client resets: ECHO-5);
- ``epoll-strlen``: the same built with ``-DIGNORE_SIGPIPE -DSTRLEN_ECHO``
  (echoes strlen(buf) bytes: ECHO-2, ECHO-3).

The C servers are compiled into a temporary directory with cc (or gcc).
Meanwhile `--hogs` CPU-bound processes run beside the checker (killed at the
end, whatever happens).  Identical runs give the same failing set of
requirements and, for each failure, the same shrunk program.  The page goes
to docs/determinism.md, one section per server.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import multiprocessing
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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
EPOLL_SOURCE = Path(__file__).resolve().parent.parent / "tests" / "servers" / "epoll_echo.c"
#: The C servers: their build flags for tests/servers/epoll_echo.c, and what is wrong.
EPOLL = {
    "epoll-sigpipe": ([], "SIGPIPE not ignored: dies when a client resets (ECHO-5)"),
    "epoll-strlen": (
        ["-DIGNORE_SIGPIPE", "-DSTRLEN_ECHO"],
        "echoes strlen(buf) bytes of each read (ECHO-2, ECHO-3)",
    ),
}
SERVERS = ["seed", *EPOLL]


class BuildError(Exception):
    """A C server that cannot be built, with a message for the user."""


@contextlib.contextmanager
def servers(names: list[str]) -> Iterator[dict[str, tuple[str, str]]]:
    """name -> (command with {port}, how it is shown on the page); C servers built in a temp dir."""
    with tempfile.TemporaryDirectory(prefix="determinism-") as tmp:
        built: dict[str, tuple[str, str]] = {}
        for name in names:
            if name == "seed":
                built[name] = (
                    SEED_CMD,
                    "`python -m impl.seed_upper_server --port {port}`: the seed's server",
                )
                continue
            flags, story = EPOLL[name]
            cc = shutil.which("cc") or shutil.which("gcc")
            if cc is None:
                raise BuildError(
                    f"--servers {name}: no C compiler (cc or gcc) on PATH to build {EPOLL_SOURCE}"
                )
            binary = Path(tmp) / name
            cmd = [cc, "-O1", *flags, "-o", str(binary), str(EPOLL_SOURCE)]
            try:
                subprocess.run(cmd, check=True, timeout=120, capture_output=True, text=True)
            except subprocess.CalledProcessError as e:
                raise BuildError(f"{' '.join(cmd)} failed:\n{e.stderr}") from e
            except subprocess.TimeoutExpired as e:
                raise BuildError(f"{' '.join(cmd)} took over 120 s") from e
            shown = " ".join(["cc", "-O1", *flags])
            built[name] = (
                f"{binary} {{port}}",
                f"`tests/servers/epoll_echo.c` built with `{shown}`, run as `<binary> {{port}}`: "
                f"{story}",
            )
        yield built


def _one(server: str, cmd: str, run: int, req: str, seed: int) -> dict[str, object]:
    start = time.monotonic()
    base = {"server": server, "run": run, "req": req}
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            o = check(Target("cmd", cmd, name=server), req, hypothesis_settings=BUDGET, seed=seed)
    except Exception as e:
        return {
            **base,
            "verdict": f"error: {type(e).__name__}",
            "under": "",
            "program": [],
            "detail": str(e),
            "seconds": time.monotonic() - start,
        }
    return {
        **base,
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


def _section(
    server: str, shown: str, reqs: list[str], runs: range, cell: dict[tuple, dict[str, object]]
) -> tuple[list[str], bool, bool]:
    """The page's section for one server; and whether its failing sets, its cells are the same."""
    lines = [
        "| requirement | " + " | ".join(f"run {i}" for i in runs) + " | identical |",
        "|---|" + "---|" * len(runs) + "---|",
    ]
    same_all = True
    differ: list[str] = []
    for req in reqs:
        keys = [_key(cell[(server, i, req)]) for i in runs]
        same = len(set(keys)) == 1
        same_all &= same
        if not same:
            differ.append(req)
        lines.append(f"| {req} | " + " | ".join(keys) + f" | {'yes' if same else '**NO**'} |")
    # The failing set is the requirements that fail; a requirement not judged (not-run:
    # masked by another) or inconclusive is listed beside it, not counted as failing.
    failing = [
        frozenset(req for req in reqs if cell[(server, i, req)]["verdict"] == "fail") for i in runs
    ]
    sets = []
    for i, f in zip(runs, failing, strict=True):
        other: dict[str, list[str]] = {}
        for req in reqs:
            verdict = str(cell[(server, i, req)]["verdict"])
            if verdict not in ("pass", "fail"):
                other.setdefault(verdict, []).append(req)
        sets.append(
            f"- run {i}: {{{', '.join(sorted(f, key=IDS.index))}}}"
            + "".join(f"; {v}: {', '.join(rs)}" for v, rs in other.items())
        )
    same_sets = len(set(failing)) == 1
    budget_cut = [
        f"{req} (run {i})"
        for req in reqs
        for i in runs
        if "time budget" in str(cell[(server, i, req)]["detail"])
    ]
    secs = [float(cell[(server, i, req)]["seconds"]) for i in runs for req in reqs]  # type: ignore[arg-type]
    out = [
        f"## {server}",
        "",
        shown + f". {len(secs)} checks, {sum(secs) / 60:.1f} min of checking in all.",
        "",
        "Failing set (the requirements that fail) per run, and the requirements not judged:",
        "",
        *sets,
        "",
        f"Same failing set in every run: **{'yes' if same_sets else 'NO'}**. "
        f"Same verdicts and shrunk programs in every run: "
        f"**{'yes' if same_all else 'NO'}**"
        + (f" (differ: {', '.join(differ)})." if differ else "."),
        "",
        *lines,
        "",
    ]
    out += [
        "Checks the 60 s time budget cut short (a pass after fewer programs than asked, "
        "or shrinking stopped early): " + (", ".join(budget_cut) if budget_cut else "none") + ".",
        "",
        f"### {server}: the shrunk programs",
        "",
    ]
    for req in reqs:
        progs: dict[str, list[int]] = {}
        for i in runs:
            r = cell[(server, i, req)]
            if r["verdict"] != "pass":
                progs.setdefault("\n".join(r["program"]) or "(no program)", []).append(i)  # type: ignore[arg-type]
        for prog, which in progs.items():
            first = cell[(server, which[0], req)]
            out += [
                f"#### {server}, {req}, runs {', '.join(map(str, which))}: {_key(first)}",
                "",
                "```",
                prog,
                "```",
                "",
                "Detail: " + str(first["detail"]).splitlines()[0] if first["detail"] else "",
                "",
            ]
    if not any(cell[(server, i, req)]["verdict"] != "pass" for i in runs for req in reqs):
        out += ["(none: every check passed)", ""]
    return out, same_sets, same_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs (default 5)")
    parser.add_argument("--seed", type=int, default=1, help="the one seed (default 1)")
    parser.add_argument("--workers", type=int, default=2, help="parallel checks (default 2)")
    parser.add_argument("--hogs", type=int, default=2, help="CPU hogs beside (default 2)")
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help=f"comma list of {', '.join(SERVERS)} (default all)",
    )
    parser.add_argument(
        "--requirements", default=",".join(IDS), help="comma list of IDs (default all ten)"
    )
    parser.add_argument("--page", default="determinism.md", help="page under docs/ ('' none)")
    args = parser.parse_args(argv)
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    reqs = [r.strip() for r in args.requirements.split(",") if r.strip()]
    for bad, known, what in (
        ([n for n in names if n not in SERVERS], SERVERS, "--servers"),
        ([r for r in reqs if r not in IDS], IDS, "--requirements"),
    ):
        if bad:
            parser.error(f"{what}: unknown {', '.join(bad)} (known: {', '.join(known)})")
    if not names or not reqs:
        parser.error("--servers and --requirements need at least one each")
    reqs.sort(key=IDS.index)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    from _page import Page
    from false_alarms import cpu_hogs

    page = Page(
        f"Determinism: {len(names)} server{'s' * (len(names) > 1)}, seed {args.seed}, "
        f"{args.runs} runs under load"
    )
    results: list[dict[str, object]] = []
    start = time.monotonic()
    try:
        with (
            servers(names) as built,
            cpu_hogs(args.hogs),
            ProcessPoolExecutor(
                args.workers, mp_context=multiprocessing.get_context("spawn")
            ) as pool,
        ):
            futures = [
                pool.submit(_one, name, built[name][0], run, req, args.seed)
                for run in range(1, args.runs + 1)
                for name in names
                for req in reqs
            ]
            for future in as_completed(futures):
                r = future.result()
                results.append(r)
                print(
                    f"  [{len(results)}/{len(futures)} {time.monotonic() - start:.0f} s] "
                    f"{r['server']} run {r['run']} {r['req']}: {_key(r)} ({r['seconds']:.1f} s)",
                    file=sys.stderr,
                    flush=True,
                )
            shown = {name: built[name][1] for name in names}
    except BuildError as e:
        print(f"determinism: {e}", file=sys.stderr)
        return 2
    wall = time.monotonic() - start
    cell = {(r["server"], r["run"], r["req"]): r for r in results}
    runs = range(1, args.runs + 1)
    sections: list[str] = []
    summary = [
        "| server | same failing set in every run | same verdicts and shrunk programs |",
        "|---|---|---|",
    ]
    same_everywhere = True
    for name in names:
        text, same_sets, same_all = _section(name, shown[name], reqs, runs, cell)
        sections += text
        same_everywhere &= same_all
        summary.append(
            f"| {name} | {'yes' if same_sets else '**NO**'} | {'yes' if same_all else '**NO**'} |"
        )
    every = (
        "all ten requirements" if reqs == IDS else f"{len(reqs)} requirements ({', '.join(reqs)})"
    )
    out = [
        f"`check(Target('cmd', SERVER), ID, seed={args.seed})` for each of {len(names)} "
        f"server{'s' * (len(names) > 1)} and {every}, {args.runs} times, on {args.workers} "
        f"workers, with {args.hogs} CPU-bound processes beside the checker; 40 random "
        "programs of up to 15 steps, shrinking on, the default 60 s time budget; "
        f"{len(results)} checks, {wall / 60:.1f} min wall. In each server's table a cell "
        "is the verdict, the requirement of the violation, the length of the shrunk "
        "program and a hash of it.",
        "",
        *summary,
        "",
        *sections,
        "## Reading",
        "",
        "READING",
        "",
    ]
    body = "\n".join(out)
    if args.page:
        page.write(args.page, body)
    else:
        print(page.header() + "\n" + body)
    return 0 if same_everywhere else 1


if __name__ == "__main__":
    sys.exit(main())
