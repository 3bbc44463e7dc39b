"""The same verdicts in every mode?  Checks servers in each witness mode and writes docs/modes.md.

    python bench/modes.py                                   # the modes root can make
    python bench/modes.py --user echotest --user-python /home/echotest/venv/bin/python \\
        --user-checkout /home/echotest/wt                   # and the modes of a user
    python bench/modes.py --runs 5                          # each mode's checks 5 times
    python bench/modes.py --targets reference,uncaught-reset --page ''   # print, write nothing

(The user modes run ``bench/modes.py`` of ``--user-checkout``: keep it at this commit.)

Each mode runs in a child process of its own (``--child MODE``), made the way
the mode arises (spec/drivers/witness.py):

- ``root``: as this process is (root: private network, PID namespace, /proc, sock_diag);
- ``user-namespaces``: as `--user` (not root), who gets a user namespace of its own;
- ``user-host``: as `--user`, with the user namespace refused (simulated: the
  helper's unshare fails): the host's network, a process group;
- ``netlink-refused``: ``socket(AF_NETLINK)`` raises EPERM (simulated, as a
  seccomp filter does);
- ``proc-hidden``: a mount namespace with an empty tmpfs over /proc (real;
  needs root and ``unshare``);
- ``not-linux``: a socket module without AF_NETLINK and TCP_QUICKACK (simulated).

In each, a correct server (the reference, the asyncio design, a forking socat +
tr) must pass its MUSTs or be "not judged" with the reason (never a FAIL), and
the seed's server and each zoo defect must be rejected under its own ID or be
"not judged" (never a PASS).  `--hogs` CPU-bound processes run beside it; with
`--runs N` the page shows, per check, the verdicts of all N runs.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import errno
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

PY = sys.executable
MUSTS = ["ECHO-1", "ECHO-2", "ECHO-3", "ECHO-4", "ECHO-5", "ECHO-6", "ECHO-7"]
SOCAT = "socat TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork SYSTEM:'stdbuf -o0 tr a-z A-Z'"


def _zoo(name: str) -> str:
    """A zoo defect of DEFECTS (impl/zoo/__init__.py) as a process: its command and its ID."""
    from impl.zoo import DEFECTS

    d = DEFECTS[name]
    return f"{{py}} -m spec.drivers.run_impl {d.target} --port {{port}}", d.requirement


def targets() -> dict[str, tuple[str, str, list[str], list[str]]]:
    """name: (command with {py} and {port}, the sure verdict, requirements, programs it needs).

    A correct server is checked against every MUST, the seed's server against
    what it breaks, a zoo defect only against its own requirement.
    """
    rows: dict[str, tuple[str, str, list[str], list[str]]] = {
        "reference": ("{py} -m impl.select_server --port {port} --log-level WARNING", "pass",
                      MUSTS, []),
        "asyncio": ("{py} -m impl.asyncio_server --port {port}", "pass", MUSTS, []),
        "socat-tr": (SOCAT, "pass", MUSTS, ["socat", "stdbuf"]),
        "seed-upper": ("{py} -m impl.seed_upper_server --port {port}", "fail",
                       ["ECHO-4", "ECHO-5", "ECHO-6"], []),
    }  # fmt: skip
    for name in (
        "sendall-echo",
        "blocking-connections",
        "ignore-send-result",
        "close-at-eof",
        "uncaught-reset",
    ):
        command, req_id = _zoo(name)
        rows[name] = (command, "fail", [req_id], [])
    return rows


TARGETS = list(targets())


def missing(names: list[str]) -> dict[str, str]:
    """The targets among `names` that cannot run here, and why."""
    why = {}
    for name in names:
        absent = [p for p in targets()[name][3] if shutil.which(p) is None]
        if absent:
            why[name] = f"{', '.join(absent)} not installed (Debian: apt-get install socat)"
    return why


def plan(py: str, names: list[str] | None = None) -> list[tuple[str, str, str, str]]:
    """(name, command, requirement, what a sure verdict is) to check in each mode."""
    table = targets()
    return [
        (name, table[name][0].replace("{py}", py), req_id, table[name][1])
        for name in (TARGETS if names is None else names)
        for req_id in table[name][2]
    ]


# -- the child: one mode ---------------------------------------------------------------------


def simulate(mode: str) -> None:
    """Make this process's mode (the simulated parts; the real ones are made by the parent)."""
    from spec.drivers import network, sock_diag

    if mode == "user-host":

        def refused(cls: type) -> None:
            raise OSError(
                errno.EPERM, "unshare(CLONE_NEWUSER): Operation not permitted (simulated)"
            )

        network.PrivateNetwork._create_in_user_namespace = classmethod(refused)  # type: ignore[assignment,method-assign]
    elif mode == "netlink-refused":

        def no_netlink(*args: Any, **kwargs: Any) -> Any:
            raise PermissionError(errno.EPERM, "Operation not permitted (simulated seccomp)")

        sock_diag.open_netlink = no_netlink  # type: ignore[assignment]
    elif mode == "not-linux":
        import socket

        del socket.AF_NETLINK
        del socket.TCP_QUICKACK


def child(mode: str, budget: float, names: list[str]) -> None:
    simulate(mode)
    from hypothesis import settings

    from spec.checker import check
    from spec.drivers import witness
    from spec.judge import overrule
    from spec.targets import Target

    small = settings(max_examples=15, stateful_step_count=10, database=None, deadline=None)
    print(json.dumps({"capabilities": witness.capabilities().describe()}), flush=True)
    for name, command, req_id, sure in plan(sys.executable, names):
        since = witness.mark()
        start = time.monotonic()
        try:
            outcome = overrule(
                check(Target("cmd", command), req_id, hypothesis_settings=small, budget=budget),
                kind="cmd",
                since=since,
            )
            verdict, detail, environment = outcome.verdict, outcome.detail, outcome.environment
        except Exception as e:  # a crash is a result here, and a bad one
            verdict, detail, environment = "crash", f"{type(e).__name__}: {e}", {}
        row = {
            "target": name,
            "requirement": req_id,
            "sure": sure,
            "verdict": verdict,
            "detail": " ".join(detail.split())[:300],
            "seconds": round(time.monotonic() - start, 1),
            "mode": environment.get("mode", ""),
        }
        print(json.dumps(row), flush=True)


# -- the parent: every mode, the page ------------------------------------------------------


MODES = ["root", "user-namespaces", "user-host", "netlink-refused", "proc-hidden", "not-linux"]


def unavailable(mode: str, args: argparse.Namespace) -> str:
    """Why this mode cannot be made here ("" if it can): the same for every run."""
    if mode in ("user-namespaces", "user-host"):
        if not (args.user and args.user_python and args.user_checkout):
            return "no --user, --user-python, --user-checkout given"
    elif mode == "proc-hidden" and (os.geteuid() != 0 or not shutil.which("unshare")):
        return "needs root and unshare(1) to mount a tmpfs over /proc"
    return ""


def run_mode(
    mode: str, args: argparse.Namespace, names: list[str]
) -> tuple[list[dict[str, Any]], str]:
    """The rows of one run of one mode, and why it did not finish ("" if it did)."""
    me = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        mode,
        "--budget",
        str(args.budget),
        "--targets",
        ",".join(names),
    ]
    cwd = ROOT
    if mode in ("user-namespaces", "user-host"):
        checkout = Path(args.user_checkout)
        me = [args.user_python, str(checkout / "bench" / "modes.py"), *me[2:]]
        me = ["runuser", "-u", args.user, "--", *me]
        cwd = checkout
    elif mode == "proc-hidden":
        inner = shlex.join(me)
        me = ["unshare", "-m", "--propagation", "private", "sh", "-c",
              f"mount -t tmpfs -o mode=0700 none /proc && exec {inner}"]  # fmt: skip
    limit = max(3600.0, 600 + 6 * args.budget * len(plan(PY, names)))
    try:
        done = subprocess.run(
            me, cwd=cwd, capture_output=True, text=True, timeout=limit, check=False
        )
        out, code, err = done.stdout, done.returncode, done.stderr
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        code, err = -1, f"timed out after {limit:.0f} s"
    rows = []
    for line in out.splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            rows.append(json.loads(line))
    if code != 0:
        return rows, f"the child exited with {code}: {err.strip()[-300:]}"
    return rows, ""


# -- the page: pure functions of the rows ------------------------------------------------------

#: What `judge` calls a verdict that is neither the sure one, nor "not judged", nor inconclusive.
NOT_WRONG = ("ok", "not judged", "inconclusive")


def judge(row: dict[str, Any] | None) -> str:
    """ok, not judged (said so, with the reason), inconclusive, or what is wrong with it.

    Wrong: a FAIL where PASS is sure, a PASS where FAIL is sure, a crash (or any
    verdict the checker does not give); ``missing``: the run ended before this check.
    """
    if row is None:
        return "missing"
    verdict, sure = row["verdict"], row["sure"]
    if verdict == sure:
        return "ok"
    if verdict == "not-run":
        return "not judged"
    if verdict == "inconclusive":
        return "inconclusive"
    return {"pass": "FALSE PASS", "fail": "FALSE FAIL"}.get(verdict, verdict.upper())


def is_wrong(row: dict[str, Any] | None) -> bool:
    return judge(row) not in (*NOT_WRONG, "missing")


def tally(words: list[str]) -> str:
    """ "pass ×5", "fail ×4, not-run ×1": most frequent first, ties in order of appearance."""
    return ", ".join(f"{w} ×{n}" for w, n in collections.Counter(words).most_common())


Cell = tuple[str, str, str]  # target, requirement, sure


def cells(runs: list[list[dict[str, Any]]]) -> dict[Cell, list[dict[str, Any] | None]]:
    """Each (target, requirement, sure) seen in any run: its row in each run (None: missing)."""
    keys: dict[Cell, None] = {}
    for rows in runs:
        for r in rows:
            if "target" in r:
                keys[(r["target"], r["requirement"], r["sure"])] = None
    by_run = [
        {(r["target"], r["requirement"], r["sure"]): r for r in rows if "target" in r}
        for rows in runs
    ]
    return {key: [found.get(key) for found in by_run] for key in keys}


def verdicts(row_per_run: list[dict[str, Any] | None]) -> list[str]:
    return [r["verdict"] if r else "missing" for r in row_per_run]


def same_every_run(row_per_run: list[dict[str, Any] | None]) -> bool:
    return len(set(verdicts(row_per_run))) == 1


def wrong_per_run(runs: list[list[dict[str, Any]]]) -> list[int]:
    return [sum(is_wrong(r) for r in rows if "target" in r) for rows in runs]


def _median(rows: list[dict[str, Any]]) -> float | None:
    seconds = [float(r["seconds"]) for r in rows if "target" in r]
    return statistics.median(seconds) if seconds else None


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def page_body(
    results: dict[str, list[tuple[list[dict[str, Any]], str]]],
    cannot: dict[str, str],
    skipped: dict[str, str],
    args: argparse.Namespace,
) -> tuple[str, int]:
    """The page under its header, and the number of wrong verdicts.

    `results`: each mode's runs (its rows, and why the run did not finish);
    `cannot`: why a mode could not be made ("" if it could); `skipped`: why a
    target was not checked.
    """
    lines = [
        f"{args.runs} run{'s' if args.runs != 1 else ''} per mode (the modes in turn, one run "
        f"of each before the next), {args.hogs} CPU-bound processes beside the checker; each "
        f"check: random programs (up to 15 of up to 10 steps, budget {args.budget:g} s per "
        "check). A correct server is checked against the MUSTs (ECHO-1..7), the seed's server "
        "against what it breaks, a zoo defect against its own requirement only. `sure` is the "
        "verdict the server deserves; a mode may answer it or say *not judged* with the "
        "reason, never the opposite verdict. *Wrong*: a FAIL where PASS is sure, a PASS where "
        "FAIL is sure, a crash; *inconclusive* (violated once, not again on a replay) is "
        "counted apart.",
        "",
    ]
    for name, why in skipped.items():
        lines += [f"Target `{name}` not checked: {why}.", ""]
    wrong = 0
    glance: dict[Cell, dict[str, list[dict[str, Any] | None]]] = {}
    for mode, runs in results.items():
        lines += [f"## {mode}", ""]
        if cannot.get(mode):
            lines += [f"Not run: {cannot[mode]}", ""]
        for i, (_, why) in enumerate(runs, 1):
            if why:
                lines += [f"Run {i} not complete: {_md(why)}", ""]
        if not runs:
            continue
        rows_per_run = [rows for rows, _ in runs]
        reported = {r.get("mode") for rows in rows_per_run for r in rows if r.get("mode")}
        if reported:
            lines += [f"Mode as reported: {', '.join(sorted(reported))}", ""]
        per_run = wrong_per_run(rows_per_run)
        wrong += sum(per_run)
        lines += [
            f"Wrong verdicts per run: {', '.join(map(str, per_run))}.",
            "",
            "| target | requirement | sure | verdicts | same every run | judged | median s "
            "| detail |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for (target, req_id, sure), row_per_run in cells(rows_per_run).items():
            glance.setdefault((target, req_id, sure), {})[mode] = row_per_run
            judged = [judge(r) for r in row_per_run]
            odd = next(
                ((i, r) for i, r in enumerate(row_per_run, 1) if r and r["verdict"] != sure),
                None,
            )
            detail = f"run {odd[0]}: {_md(odd[1]['detail'][:140])}" if odd else ""
            median = _median([r for r in row_per_run if r])
            lines.append(
                f"| {target} | {req_id} | {sure} | {tally(verdicts(row_per_run))} | "
                f"{'yes' if same_every_run(row_per_run) else '**no**'} | "
                f"{tally(judged) if set(judged) != {'ok'} else 'ok'} | "
                f"{'' if median is None else f'{median:.1f}'} | {detail} |"
            )
        lines.append("")
    lines.append(f"Wrong verdicts (a false PASS or FAIL, a crash), all runs: **{wrong}**.")
    shown = [m for m, runs in results.items() if runs]
    lines += [
        "",
        "## Every mode at a glance",
        "",
        "The verdicts of all runs; in bold a cell with a wrong verdict.",
        "",
        "| target | requirement | sure | " + " | ".join(shown) + " |",
        "|---|---|---|" + "---|" * len(shown),
    ]
    for (target, req_id, sure), by_mode in glance.items():
        row_cells = []
        for mode in shown:
            row_per_run = by_mode.get(mode, [])
            text = tally(verdicts(row_per_run)) if row_per_run else ""
            row_cells.append(f"**{text}**" if any(map(is_wrong, row_per_run)) else text)
        lines.append(f"| {target} | {req_id} | {sure} | " + " | ".join(row_cells) + " |")
    all_rows = {
        m: [r for rows, _ in runs for r in rows if "target" in r] for m, runs in results.items()
    }
    root = _median(all_rows.get("root", []))
    lines += [
        "",
        "## Summary",
        "",
        "| mode | runs | checks | ok | not judged | inconclusive | wrong | wrong per run "
        "| not the same every run | median s per check | root's | × root's | total s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, runs in results.items():
        checked = all_rows[mode]
        if not checked:
            continue
        rows_per_run = [rows for rows, _ in runs]
        judged = [judge(r) for r in checked]
        complete = sum(not why for _, why in runs)
        median = _median(checked)
        assert median is not None
        varies = sum(not same_every_run(c) for c in cells(rows_per_run).values())
        lines.append(
            f"| {mode} | {complete if complete == len(runs) else f'{complete} of {len(runs)}'} | "
            f"{len(checked)} | {judged.count('ok')} | {judged.count('not judged')} | "
            f"{judged.count('inconclusive')} | {sum(map(is_wrong, checked))} | "
            f"{', '.join(map(str, wrong_per_run(rows_per_run)))} | {varies} | "
            f"{median:.1f} | {'' if root is None else f'{root:.1f}'} | "
            f"{'' if not root else f'{median / root:.2f}'} | "
            f"{sum(float(r['seconds']) for r in checked):.0f} |"
        )
    return "\n".join(lines), wrong


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per check (20)")
    parser.add_argument("--modes", nargs="*", default=MODES, choices=MODES)
    parser.add_argument("--runs", type=int, default=1, help="runs of each mode's checks (1)")
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help=f"servers to check, comma-separated (all: {','.join(TARGETS)})",
    )
    parser.add_argument("--user", help="a user who is not root, for the user modes")
    parser.add_argument(
        "--user-python", help="a Python with the checker installed that --user can run"
    )
    parser.add_argument("--user-checkout", help="a copy of this checkout --user can read and write")
    parser.add_argument("--hogs", type=int, default=2, help="CPU-bound processes beside (2)")
    parser.add_argument(
        "--page", default="modes.md", help="the page under docs/ (modes.md); '': print only"
    )
    args = parser.parse_args()
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown targets {', '.join(unknown)} (known: {', '.join(TARGETS)})")
    if args.child:
        child(args.child, args.budget, names)
        return 0
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    from _page import Page

    page = Page("Verdicts in every witness mode")
    skipped = missing(names)
    names = [n for n in names if n not in skipped]
    for name, why in skipped.items():
        print(f"{name}: not checked, {why}", flush=True)
    results: dict[str, list[tuple[list[dict[str, Any]], str]]] = {m: [] for m in args.modes}
    cannot = {m: unavailable(m, args) for m in args.modes}
    hogs = [subprocess.Popen([PY, "-c", "while True: pass"]) for _ in range(args.hogs)]
    try:
        for run in range(1, args.runs + 1):
            for mode in args.modes:
                if cannot[mode]:
                    if run == 1:
                        print(f"{mode}: not run, {cannot[mode]}", flush=True)
                    continue
                started = time.monotonic()
                rows, why = run_mode(mode, args, names)
                results[mode].append((rows, why))
                print(f"run {run}, {mode}: {time.monotonic() - started:.0f} s, {why or 'ran'}",
                      flush=True)  # fmt: skip
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    body, wrong = page_body(results, cannot, skipped, args)
    if args.page:
        page.write(args.page, body)
    else:
        print(page.header() + "\n" + body.rstrip(), flush=True)
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
