"""The races C servers die in: is each variant of the epoll server judged the same way every time?

    python bench/races.py                   # 5 seeds per variant, 2 CPU hogs
    python bench/races.py --seeds 3 --hogs 0

`tests/servers/epoll_echo.c` is built four ways (see its header): SIGPIPE not
ignored, ECONNRESET on write taken for fatal, strlen(buf) bytes echoed, and
correct.  Each variant is checked against the requirement its fault breaks
(ECHO-5 for the two that die, ECHO-2 for strlen; the correct one against
ECHO-5 and ECHO-2) with `--seeds` different seeds, no example database, the
developers' budget and the default time budget, while `--hogs` CPU-bound
processes run beside.  Each failure's shrunk program is then replayed
`--replays` times on fresh servers (what `python -m spec.replay` does).  The
page goes to docs/races.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hypothesis import settings

from spec.checker import check
from spec.machine import ConformanceFailure
from spec.replay import run_program
from spec.targets import Target

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests" / "servers" / "epoll_echo.c"
#: variant: (compiler flags, the requirements checked, the verdict it deserves)
VARIANTS: dict[str, tuple[list[str], list[str], str]] = {
    "sigpipe": ([], ["ECHO-5"], "fail"),
    "exit-on-econnreset": (["-DIGNORE_SIGPIPE", "-DEXIT_ON_ECONNRESET"], ["ECHO-5"], "fail"),
    "strlen": (["-DIGNORE_SIGPIPE", "-DSTRLEN_ECHO"], ["ECHO-2"], "fail"),
    "correct": (["-DIGNORE_SIGPIPE"], ["ECHO-5", "ECHO-2"], "pass"),
}
BUDGET = settings(max_examples=40, stateful_step_count=15, deadline=None, database=None)


def build(out: Path) -> dict[str, Target]:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("bench/races.py: no C compiler (cc or gcc) to build epoll_echo.c")
    targets = {}
    for name, (flags, _, _) in VARIANTS.items():
        binary = out / name
        subprocess.run([cc, "-O1", *flags, "-o", str(binary), str(SOURCE)], check=True, timeout=60)
        targets[name] = Target("cmd", f"{binary} {{port}}", name=name)
    return targets


def one(target: Target, req: str, seed: int, replays: int) -> dict[str, object]:
    start = time.monotonic()
    with contextlib.redirect_stdout(io.StringIO()):
        o = check(target, req, hypothesis_settings=BUDGET, seed=seed)
    seconds = time.monotonic() - start
    shown = 0
    if o.verdict == "fail" and o.program:
        for _ in range(replays):
            with contextlib.suppress(ConformanceFailure):  # another requirement's: not this
                shown += run_program(target, req, o.program) is not None
    first = (o.detail or "").splitlines()[0] if o.detail else ""
    return {
        "verdict": o.verdict,
        "steps": len(o.program or []),
        "program": o.program or [],
        "seconds": seconds,
        "replayed": shown,
        "first": first,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per variant (default 5)")
    parser.add_argument("--replays", type=int, default=5, help="replays of each failure")
    parser.add_argument("--hogs", type=int, default=2, help="CPU hogs beside (default 2)")
    parser.add_argument("--page", default="races.md", help="page under docs/ ('' none)")
    args = parser.parse_args(argv)

    from _page import Page
    from false_alarms import cpu_hogs

    page = Page("Races: the epoll C server's variants, judged seed after seed")
    rows = []
    programs: dict[tuple[str, ...], list[str]] = {}
    with tempfile.TemporaryDirectory() as tmp, cpu_hogs(args.hogs):
        targets = build(Path(tmp))
        for name, (_, reqs, deserved) in VARIANTS.items():
            for req in reqs:
                for seed in range(1, args.seeds + 1):
                    r = one(targets[name], req, seed, args.replays)
                    print(
                        f"  {name} {req} seed {seed}: {r['verdict']} {r['seconds']:.1f} s",
                        file=sys.stderr,
                        flush=True,
                    )
                    replayed = (
                        f"{r['replayed']} of {args.replays}" if r["verdict"] == "fail" else ""
                    )
                    ok = "yes" if r["verdict"] == deserved else "**no**"
                    rows.append(
                        f"| {name} | {req} | {seed} | {deserved} | {r['verdict']} | {ok} | "
                        f"{r['steps'] or ''} | {replayed} | {r['seconds']:.1f} | {r['first']} |"
                    )
                    if r["program"]:
                        programs.setdefault(tuple(r["program"]), []).append(
                            f"{name} {req} seed {seed}"
                        )
    body = [
        f"Each variant of `tests/servers/epoll_echo.c` checked against the requirement its "
        f"fault breaks, with seeds 1 to {args.seeds}, no example database, 40 programs of up to "
        f"15 steps, the default time budget, {args.hogs} CPU-bound processes beside; each "
        f"failure's shrunk program replayed {args.replays} times on fresh servers.",
        "",
        "| variant | requirement | seed | deserved | verdict | right | steps | replayed | "
        "seconds | diagnosis |",
        "|---|---|---:|---|---|---|---:|---|---:|---|",
        *rows,
        "",
        "## The shrunk programs",
        "",
    ]
    for program, where in programs.items():
        body += [f"{', '.join(where)}:", "", "```", *program, "```", ""]
    if args.page:
        page.write(args.page, "\n".join(body))
    else:
        print("\n".join(body))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
