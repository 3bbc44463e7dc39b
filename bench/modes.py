"""The same verdicts in every mode?  Checks servers in each witness mode and writes docs/modes.md.

    python bench/modes.py                                   # the modes root can make
    python bench/modes.py --user echotest --user-python /home/echotest/venv/bin/python \\
        --user-checkout /home/echotest/wt                   # and the modes of a user

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

In each, the reference must pass its MUSTs or be "not judged" with the
reason (never a FAIL), and each defect must be rejected under its own ID or
be "not judged" (never a PASS).  `--hogs` CPU-bound processes run beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
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


def _zoo(name: str, py: str) -> str:
    return f"{py} -m spec.drivers.run_impl {name} --port {{port}}"


def plan(py: str) -> list[tuple[str, str, str, str]]:
    """(name, command, requirement, what a sure verdict is) to check in each mode."""
    reference = f"{py} -m impl.select_server --port {{port}} --log-level WARNING"
    rows = [("reference", reference, r, "pass") for r in MUSTS]
    rows += [
        ("seed-upper", f"{py} -m impl.seed_upper_server --port {{port}}", r, "fail")
        for r in ("ECHO-4", "ECHO-5", "ECHO-6")
    ]
    rows += [
        ("sendall-echo", _zoo("impl.zoo.liveness:SendallEchoServer", py), "ECHO-7", "fail"),
        ("uncaught-reset", _zoo("impl.zoo.resilience:UncaughtResetServer", py), "ECHO-5", "fail"),
    ]
    return rows


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


def child(mode: str, budget: float) -> None:
    simulate(mode)
    from hypothesis import settings

    from spec.checker import check
    from spec.drivers import witness
    from spec.targets import Target

    small = settings(max_examples=15, stateful_step_count=10, database=None, deadline=None)
    print(json.dumps({"capabilities": witness.capabilities().describe()}), flush=True)
    for name, command, req_id, sure in plan(sys.executable):
        since = witness.mark()
        start = time.monotonic()
        try:
            outcome = witness.overrule(
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


def run_mode(mode: str, args: argparse.Namespace) -> tuple[list[dict[str, Any]], str]:
    """The rows of one mode, and why it was not run ("" if it was)."""
    me = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        mode,
        "--budget",
        str(args.budget),
    ]
    cwd = ROOT
    if mode in ("user-namespaces", "user-host"):
        if not (args.user and args.user_python and args.user_checkout):
            return [], "no --user, --user-python, --user-checkout given"
        checkout = Path(args.user_checkout)
        me = [args.user_python, str(checkout / "bench" / "modes.py"), *me[2:]]
        me = ["runuser", "-u", args.user, "--", *me]
        cwd = checkout
    elif mode == "proc-hidden":
        if os.geteuid() != 0 or not shutil.which("unshare"):
            return [], "needs root and unshare(1) to mount a tmpfs over /proc"
        inner = " ".join(me)
        me = ["unshare", "-m", "--propagation", "private", "sh", "-c",
              f"mount -t tmpfs -o mode=0700 none /proc && exec {inner}"]  # fmt: skip
    done = subprocess.run(me, cwd=cwd, capture_output=True, text=True, timeout=3600, check=False)
    rows = []
    for line in done.stdout.splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            rows.append(json.loads(line))
    if done.returncode != 0:
        return rows, f"the child exited with {done.returncode}: {done.stderr.strip()[-300:]}"
    return rows, ""


def judge(row: dict[str, Any]) -> str:
    """ok, not judged (said so, with the reason), or what is wrong with this verdict."""
    verdict, sure = row["verdict"], row["sure"]
    if verdict == sure:
        return "ok"
    if verdict == "not-run":
        return "not judged"
    return {"pass": "FALSE PASS", "fail": "FALSE FAIL"}.get(verdict, verdict.upper())


MODES = ["root", "user-namespaces", "user-host", "netlink-refused", "proc-hidden", "not-linux"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per check (20)")
    parser.add_argument("--modes", nargs="*", default=MODES, choices=MODES)
    parser.add_argument("--user", help="a user who is not root, for the user modes")
    parser.add_argument(
        "--user-python", help="a Python with the checker installed that --user can run"
    )
    parser.add_argument("--user-checkout", help="a copy of this checkout --user can read and write")
    parser.add_argument("--hogs", type=int, default=2, help="CPU-bound processes beside (2)")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.budget)
        return 0

    from _page import Page

    page = Page("Verdicts in every witness mode")
    hogs = [subprocess.Popen([PY, "-c", "while True: pass"]) for _ in range(args.hogs)]
    results: dict[str, tuple[list[dict[str, Any]], str]] = {}
    try:
        for mode in args.modes:
            started = time.monotonic()
            results[mode] = run_mode(mode, args)
            print(f"{mode}: {time.monotonic() - started:.0f} s, {results[mode][1] or 'ran'}",
                  flush=True)  # fmt: skip
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    lines = [
        f"One run per mode, {args.hogs} CPU-bound processes beside the checker; each check: "
        f"random programs (up to 15 of up to 10 steps, budget {args.budget:g} s per check). "
        "`sure` is the verdict the server deserves; a mode may answer it or say "
        "*not judged* with the reason, never the opposite verdict.",
        "",
    ]
    wrong = 0
    for mode, (rows, why) in results.items():
        lines += [f"## {mode}", ""]
        if why:
            lines += [f"Not run completely: {why}", ""]
        modes = {r.get("mode") for r in rows if r.get("mode")}
        if modes:
            lines += [f"Mode as reported: {', '.join(sorted(modes))}", ""]
        lines += ["| target | requirement | sure | verdict | seconds | judged | detail |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in rows:
            if "target" not in r:
                continue
            verdict = judge(r)
            wrong += verdict not in ("ok", "not judged")
            detail = r["detail"][:140].replace("|", "\\|") if r["verdict"] != r["sure"] else ""
            lines.append(
                f"| {r['target']} | {r['requirement']} | {r['sure']} | {r['verdict']} | "
                f"{r['seconds']:g} | {verdict} | {detail} |"
            )
        lines.append("")
    lines.append(f"Wrong verdicts (a false PASS or FAIL, a crash): **{wrong}**.")
    lines += [
        "",
        "## Summary",
        "",
        "| mode | checks | ok | not judged | wrong | median s per check | total s |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, (rows, _) in results.items():
        checked = [r for r in rows if "target" in r]
        if not checked:
            continue
        verdicts = [judge(r) for r in checked]
        seconds = [float(r["seconds"]) for r in checked]
        lines.append(
            f"| {mode} | {len(checked)} | {verdicts.count('ok')} | "
            f"{verdicts.count('not judged')} | "
            f"{sum(v not in ('ok', 'not judged') for v in verdicts)} | "
            f"{statistics.median(seconds):.1f} | {sum(seconds):.0f} |"
        )
    page.write("modes.md", "\n".join(lines))
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
