"""How fast is the checker?  Prints figures; asserts nothing.

    python bench/checker_speed.py            # the user's figures (A-C), docs/checker-speed.md
    python bench/checker_speed.py --drivers --zoo   # and figures 1-3, about 6 more minutes
    python bench/checker_speed.py --suite    # and 4: the self-suite twice, 5 more minutes
    python bench/checker_speed.py --quick    # fewer examples, one seed (figures 1-3)
    python bench/checker_speed.py --rest --quick   # only the cost of a rest and rules/s

The user's figures (goals of issue 21), written to docs/checker-speed.md:

A. Wall time of a correct server's full verdict as a user runs it:
   ``pytest -n 2 -p no:cacheprovider --echo-server-cmd "<python> -m impl.select_server
   --port {port}"``, in a fresh directory (no example database), with the
   load average before and after.  Goal: <= 15 s.
B. The same for the seed's server (``impl.seed_upper_server``): every one of
   the ten requirements decided (pass or fail).  Goal: <= 30 s.
C. Process steps per second against the reference run as a process: the
   rules the state machine ran (connect, send, ...) over the seconds its
   programs took (`check()` less its preflight and ECHO-2's fixed idle
   program), for ECHO-1..7, one seed, and the share of those seconds spent
   waiting for a server to start (`ServerProcess.ready`).  Goal: >= 300 steps/s.
   With it, the median cost of a rest and its parts (/proc, sock_diag, pauses,
   pumping; goal: about a millisecond), and the in-process driver's rules/s.

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
import contextlib
import io
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

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

import spec.checker as checker
from impl.zoo import DEFECTS
from spec.checker import Outcome, check
from spec.drivers.network import PrivateNetwork
from spec.drivers.server_process import ServerProcess
from spec.machine import FLOODS, PAYLOADS, RULES, SMALL, EchoConformance
from spec.measure import MEASURES
from spec.requirements import IDS
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
        outcome, elapsed = _timed_check(target, req_id, examples, settle=settle, derandomize=True)
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
    run_state_machine_as_test(
        EmptySteps,
        settings=settings(
            max_examples=examples * len(MACHINE),
            stateful_step_count=15,
            derandomize=True,
            database=None,
        ),
    )
    return STEPS["n"] / (time.perf_counter() - start)


def zoo_rejections(seeds: int) -> None:
    print(f"# Zoo defects: seconds to reject under the expected ID ({seeds} seeds)\n")
    print("| defect | requirement | rejected | median s | max s |")
    print("|---|---|---:|---:|---:|")
    # The default profile's budget, without shrinking.
    budget = settings(
        max_examples=40,
        stateful_step_count=15,
        database=None,
        phases=[Phase.explicit, Phase.generate],
    )
    medians = []
    for d in DEFECTS.values():
        times, rejected = [], 0
        for seed in range(seeds):
            outcome = check(
                Target("impl", d.target), d.requirement, hypothesis_settings=budget, seed=seed
            )
            rejected += (
                outcome.verdict == "fail"
                and outcome.violation is not None
                and outcome.violation.requirement == d.requirement
            )
            times.append(outcome.seconds)
        medians.append(statistics.median(times))
        print(
            f"| {d.name} | {d.requirement} | {rejected}/{seeds} | "
            f"{statistics.median(times):.2f} | {max(times):.2f} |",
            flush=True,
        )
    slow = sum(m >= 5 for m in medians)
    print(f"\n{len(medians) - slow} of {len(medians)} defects rejected in under 5 s (median).\n")


def suite_wall_times() -> None:
    print("# Self-suite wall time (CI=true pytest -q -n N)\n")
    walls = {}
    for workers in (1, 2):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-rf", "-n", str(workers)],
            env={**os.environ, "CI": "true"},
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parent.parent,
        )
        walls[workers] = time.perf_counter() - start
        lines = done.stdout.strip().splitlines() or ["(no output)"]
        label = f"{workers} worker{'s' if workers > 1 else ''}"
        print(f"- {label}: {walls[workers]:.0f} s ({lines[-1]})")
        for line in lines:
            if line.startswith("FAILED"):
                print(f"  - {line}")
    print(f"\nScaling, 1 worker / 2 workers: {walls[1] / walls[2]:.2f}x\n")


# -- the user's figures (A-C) ------------------------------------------------------

PY = sys.executable
REFERENCE_CMD = f"{PY} -m impl.select_server --port {{port}}"
SEED_CMD = f"{PY} -m impl.seed_upper_server --port {{port}}"


def full_verdict(command: str, timeout: float = 900) -> dict[str, object]:
    """Time ``pytest -n 2 -p no:cacheprovider --echo-server-cmd COMMAND`` in a fresh directory."""
    with tempfile.TemporaryDirectory(prefix="speed-") as tmp:
        report = Path(tmp) / "report.json"
        argv = [
            PY,
            "-m",
            "pytest",
            "-n",
            "2",
            "-p",
            "no:cacheprovider",
            "--echo-server-cmd",
            command,
            "--echo-report",
            str(report),
        ]
        before = os.getloadavg()[0]
        start = time.perf_counter()
        try:
            done = subprocess.run(
                argv,
                cwd=tmp,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                env={k: v for k, v in os.environ.items() if k != "CI"},
            )
            status = done.returncode
            tail = done.stdout.strip().splitlines()[-14:]
        except subprocess.TimeoutExpired:
            status, tail = "timeout", []
        wall = time.perf_counter() - start
        try:
            requirements = json.loads(report.read_text())["requirements"]
        except (OSError, ValueError, KeyError):
            requirements = {}
    display = "pytest -n 2 -p no:cacheprovider --echo-server-cmd " + shlex.quote(
        command.replace(PY, "python")
    )
    return {
        "command": display,
        "wall": wall,
        "status": status,
        "load": (before, os.getloadavg()[0]),
        "requirements": requirements,
        "tail": tail,
    }


class Clock:
    """Counts rules and settles, and times preflight, start-up waits and the idle program."""

    def __init__(self) -> None:
        self.rules = self.settles = self.starts = 0
        self.preflight = self.ready = self.idle = 0.0
        self._in_preflight = False

    @contextlib.contextmanager
    def installed(self):
        originals = (
            checker.preflight,
            checker._check_idle,
            ServerProcess.ready,
            EchoConformance._step,
            EchoConformance.teardown,
        )
        clock = self
        preflight, check_idle, ready, step, teardown = originals

        def timed_preflight(target):
            t = time.perf_counter()
            clock._in_preflight = True
            try:
                return preflight(target)
            finally:
                clock._in_preflight = False
                clock.preflight += time.perf_counter() - t

        def timed_idle(*a, **k):
            t = time.perf_counter()
            try:
                return check_idle(*a, **k)
            finally:
                clock.idle += time.perf_counter() - t

        def timed_ready(self_):
            t = time.perf_counter()
            try:
                return ready(self_)
            finally:
                if not clock._in_preflight:
                    clock.ready += time.perf_counter() - t
                    clock.starts += 1

        def counted_step(self_, *a, **k):
            clock.settles += 1
            return step(self_, *a, **k)

        def counted_teardown(self_):
            clock.rules += sum(1 for line in self_.program if line != "state.teardown()")
            return teardown(self_)

        checker.preflight = timed_preflight
        checker._check_idle = timed_idle
        ServerProcess.ready = timed_ready
        EchoConformance._step = counted_step
        EchoConformance.teardown = counted_teardown
        try:
            yield self
        finally:
            (
                checker.preflight,
                checker._check_idle,
                ServerProcess.ready,
                EchoConformance._step,
                EchoConformance.teardown,
            ) = originals


#: The parts of a rest, each timed where the process driver calls it: (module, attribute, part).
#: A part missing from the code (renamed, gone) is simply not timed.
REST_PARTS = (
    ("spec.drivers.threads", "look", "proc"),
    ("spec.drivers.threads", "Watcher.look", "proc"),
    ("spec.drivers.sock_diag", "lookup", "sock_diag"),
    ("spec.drivers.sock_diag", "dump", "sock_diag"),
    ("spec.drivers.sock_diag", "lookup_many", "sock_diag"),
    ("spec.drivers.process", "ProcessDriver._wait_for_io", "pauses"),
    ("spec.drivers.clients", "Client.pump", "pumping"),
    ("spec.drivers.process", "ProcessDriver._look", "look"),
)


class RestClock:
    """Times every `ProcessDriver.settle` (a rest) and, within it, each of `REST_PARTS`."""

    def __init__(self) -> None:
        #: One dict per rest: its seconds in total and in each part, and its looks.
        self.rests: list[dict[str, float]] = []
        self._current: dict[str, float] | None = None

    @contextlib.contextmanager
    def installed(self):
        import importlib

        from spec.drivers.process import ProcessDriver

        clock = self
        undo = []

        def timed(part, f):
            def wrapper(*a, **k):
                current = clock._current
                if current is None:
                    return f(*a, **k)
                t = time.perf_counter()
                try:
                    return f(*a, **k)
                finally:
                    current[part] = current.get(part, 0.0) + time.perf_counter() - t
                    if part == "look":
                        current["looks"] = current.get("looks", 0) + 1

            return wrapper

        for module, name, part in REST_PARTS:
            owner = importlib.import_module(module)
            *path, attr = name.split(".")
            for step in path:
                owner = getattr(owner, step, None)
            if owner is None or not hasattr(owner, attr):
                continue
            original = owner.__dict__[attr] if attr in vars(owner) else getattr(owner, attr)
            wrapped = timed(
                part, original.__func__ if isinstance(original, staticmethod) else original
            )
            setattr(
                owner,
                attr,
                staticmethod(wrapped) if isinstance(original, staticmethod) else wrapped,
            )
            undo.append((owner, attr, original))

        settle = ProcessDriver.settle

        def timed_settle(self_, *a, **k):
            if clock._current is not None:  # a rest inside a rest: one rest
                return settle(self_, *a, **k)
            clock._current = {}
            t = time.perf_counter()
            try:
                return settle(self_, *a, **k)
            finally:
                clock._current["total"] = time.perf_counter() - t
                clock.rests.append(clock._current)
                clock._current = None

        ProcessDriver.settle = timed_settle
        undo.append((ProcessDriver, "settle", settle))
        try:
            yield self
        finally:
            for owner, attr, original in reversed(undo):
                setattr(owner, attr, original)

    def medians(self) -> dict[str, float]:
        """The median of each part over all rests (0 where a rest did not spend on it)."""
        keys = ("total", "look", "proc", "sock_diag", "pauses", "pumping", "looks")
        if not self.rests:
            return {k: 0.0 for k in keys}
        found = {k: statistics.median(r.get(k, 0.0) for r in self.rests) for k in keys}
        found["mean"] = statistics.fmean(r["total"] for r in self.rests)
        looks = [r.get("look", 0.0) / r["looks"] for r in self.rests if r.get("looks")]
        found["one look"] = statistics.median(looks) if looks else 0.0
        return found


def inprocess_rate(seed: int, examples: int) -> tuple[int, float]:
    """Rules and seconds of the in-process driver against the reference, ECHO-1..7."""
    target = Target("impl", BUNDLED["reference"])
    rules, seconds = 0, 0.0
    for req_id in MACHINE:
        clock = Clock()
        with clock.installed(), contextlib.redirect_stdout(io.StringIO()):
            _, total = _timed_check(target, req_id, examples, seed=seed, deadline=None)
        rules += clock.rules
        seconds += total - clock.preflight - clock.idle
    return rules, seconds


def process_steps(
    seed: int, examples: int, rests: RestClock | None = None
) -> list[dict[str, object]]:
    """Steps per second of the process driver against the reference, ECHO-1..7.

    `rests`: times every rest of the run and its parts (`RestClock`).
    """
    target = Target("cmd", REFERENCE_CMD)
    rows = []
    for req_id in MACHINE:
        clock = Clock()
        timing = rests.installed() if rests is not None else contextlib.nullcontext()
        with clock.installed(), timing, contextlib.redirect_stdout(io.StringIO()):
            start = time.perf_counter()
            o = check(
                target,
                req_id,
                seed=seed,
                hypothesis_settings=settings(
                    max_examples=examples, stateful_step_count=15, deadline=None, database=None
                ),
            )
            total = time.perf_counter() - start
        machine = total - clock.preflight - clock.idle
        rows.append(
            {
                "req": req_id,
                "verdict": o.verdict,
                "detail": o.detail.splitlines()[0],
                "total": total,
                "machine": machine,
                "rules": clock.rules,
                "settles": clock.settles,
                "starts": clock.starts,
                "ready": clock.ready,
                "preflight": clock.preflight,
                "idle": clock.idle,
            }
        )
        print(
            f"  {req_id}: {o.verdict}, {clock.rules} rules in {machine:.1f} s, "
            f"{clock.starts} server starts, {clock.ready:.1f} s waiting",
            file=sys.stderr,
            flush=True,
        )
    return rows


def rest_table(
    rests: RestClock, rules: int, machine: float, inprocess: tuple[int, float]
) -> list[str]:
    """The median rest and its parts, and the rules/s of both drivers, as Markdown lines."""
    m = rests.medians()
    ms = 1000
    n_rules, n_seconds = inprocess
    return [
        "| | median per rest |",
        "|---|---:|",
        f"| a rest (`ProcessDriver.settle`), in all | **{m['total'] * ms:.2f} ms** "
        f"(mean {m['mean'] * ms:.2f} ms) |",
        f"| looking, in all (`_look`) | {m['look'] * ms:.2f} ms |",
        f"| one look (median over rests of a rest's mean look) | {m['one look'] * ms:.2f} ms |",
        f"| reading /proc (threads) | {m['proc'] * ms:.2f} ms |",
        f"| sock_diag (netlink) | {m['sock_diag'] * ms:.2f} ms |",
        f"| pauses between looks (`_wait_for_io`) | {m['pauses'] * ms:.2f} ms |",
        f"| pumping the clients | {m['pumping'] * ms:.2f} ms |",
        f"| looks per rest | {m['looks']:.0f} |",
        f"| all rests, share of the machine seconds | "
        f"{100 * sum(r['total'] for r in rests.rests) / machine if machine else 0:.0f} % |",
        "",
        f"{len(rests.rests)} rests; parts are medians each on its own, so they need not add "
        "up to the median rest (the rest is Python around them: the model, the judging).",
        "",
        "| driver | rules | machine s | rules/s |",
        "|---|---:|---:|---:|",
        f"| process (reference, ECHO-1..7) | {rules} | {machine:.1f} | "
        f"**{rules / machine if machine else 0:,.0f}** |",
        f"| in-process (reference, ECHO-1..7) | {n_rules} | {n_seconds:.1f} | "
        f"**{n_rules / n_seconds if n_seconds else 0:,.0f}** |",
    ]


def rest_only(seed: int, examples: int) -> None:
    """`--rest`: the rest table and both drivers' rules/s, printed (no page)."""
    rests = RestClock()
    rows = process_steps(seed, examples, rests)
    rules = sum(int(r["rules"]) for r in rows)  # type: ignore[call-overload]
    machine = sum(float(r["machine"]) for r in rows)  # type: ignore[arg-type]
    print(f"load {os.getloadavg()[0]:.2f}; {examples} programs per requirement, seed {seed}\n")
    print("\n".join(rest_table(rests, rules, machine, inprocess_rate(seed, examples))))


def cold_start(command: str, n: int = 10) -> list[float]:
    """Seconds `ServerProcess.start()` takes (launch to listening), `n` times in a row."""
    times = []
    for _ in range(n):
        server = ServerProcess(command, network=PrivateNetwork.shared())
        t = time.perf_counter()
        try:
            server.start()
            times.append(time.perf_counter() - t)
        finally:
            server.close()
    return times


def _verdicts(result: dict[str, object]) -> str:
    reqs = result["requirements"]
    assert isinstance(reqs, dict)
    if not reqs:
        return "(no report written)"
    return ", ".join(
        f"{r} {reqs[r]['verdict']} {float(reqs[r].get('seconds', 0)):.1f} s"
        for r in IDS
        if r in reqs
    )


def users_figures(seed: int, examples: int, page_name: str | None) -> None:
    from _page import Page

    page = Page("Checker speed: what a user waits for")
    print("A: the reference's full verdict ...", file=sys.stderr, flush=True)
    ref = full_verdict(REFERENCE_CMD)
    print(f"  {ref['wall']:.1f} s", file=sys.stderr, flush=True)
    print("B: the seed's server's full verdict ...", file=sys.stderr, flush=True)
    seed_run = full_verdict(SEED_CMD)
    print(f"  {seed_run['wall']:.1f} s", file=sys.stderr, flush=True)
    print("C: process steps per second ...", file=sys.stderr, flush=True)
    starts = cold_start(REFERENCE_CMD)
    rests = RestClock()
    rows = process_steps(seed, examples, rests)
    print("C: in-process steps per second ...", file=sys.stderr, flush=True)
    inprocess = inprocess_rate(seed, examples)

    seed_reqs = seed_run["requirements"]
    assert isinstance(seed_reqs, dict)
    decided = [r for r in IDS if seed_reqs.get(r, {}).get("verdict") in ("pass", "fail")]
    rules = sum(r["rules"] for r in rows)
    machine = sum(r["machine"] for r in rows)
    ready = sum(r["ready"] for r in rows)
    n_starts = sum(r["starts"] for r in rows)
    rate = rules / machine if machine else 0.0
    rate_free = rules / (machine - ready) if machine > ready else 0.0

    def goal(ok: bool) -> str:
        return "met" if ok else "**not met**"

    out = [
        "| figure | measured | goal (issue 21) | |",
        "|---|---:|---:|---|",
        f"| A. reference, full verdict (`pytest -n 2`), wall | {ref['wall']:.1f} s | <= 15 s "
        f"| {goal(ref['wall'] <= 15)} |",
        f"| B. seed's server, full verdict, wall ({len(decided)}/10 decided) | "
        f"{seed_run['wall']:.1f} s | <= 30 s | "
        f"{goal(seed_run['wall'] <= 30 and len(decided) == 10)} |",
        f"| C. process steps/s, reference, ECHO-1..7 | {rate:,.0f} | >= 300 | "
        f"{goal(rate >= 300)} |",
        f"| C'. the same, less the waits for server start-up | {rate_free:,.0f} | | |",
        f"| a rest, median (`ProcessDriver.settle`) | {rests.medians()['total'] * 1000:.2f} ms "
        f"| about 1 ms | {goal(rests.medians()['total'] <= 0.0015)} |",
        f"| in-process steps/s, reference, ECHO-1..7 | "
        f"{inprocess[0] / inprocess[1] if inprocess[1] else 0:,.0f} | | |",
        f"| share of machine time waiting in `ServerProcess.ready` | "
        f"{100 * ready / machine if machine else 0:.0f} % | | |",
        "",
        "## A and B: the full verdict as a user runs it",
        "",
        "Both in a fresh directory (no `.hypothesis/` example database, so nothing is "
        "replayed), `CI` unset (the `dev` profile: 40 random programs of up to 15 steps per "
        "requirement, the 60 s time budget), two xdist workers.",
        "",
    ]
    for label, r in (("A", ref), ("B", seed_run)):
        out += [
            f"- {label}: `{r['command']}`: **{r['wall']:.1f} s** wall, exit status "
            f"{r['status']}, load average (1 min) {r['load'][0]:.2f} before, "
            f"{r['load'][1]:.2f} after.",
            f"  Verdicts (per-test seconds): {_verdicts(r)}",
        ]
    out += [
        "",
        "## C: process steps per second (reference as a process)",
        "",
        f"`check(Target('cmd', 'python -m impl.select_server --port {{port}}'), ID, "
        f"seed={seed})`, {examples} programs of up to 15 steps. *Rules* are the state "
        "machine's steps (connect, send, read, drain, flood, burst, ...; the end-of-program "
        "steps not counted); *settles* are the times the driver brought the server to "
        "rest and judged (every rule, and the end of every program). *Machine seconds* "
        "are `check()`'s less its preflight and ECHO-2's idle program (a fixed 6 s "
        "program). *Start-up* is the time the machine spent in `ServerProcess.ready` "
        "(each program gets a fresh server from `ServerSupply`, launched in advance).",
        "",
        "| requirement | verdict | rules | settles | programs (server starts) | machine s "
        "| rules/s | start-up wait s | share | preflight s | idle program s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r['req']} | {r['verdict']} | {r['rules']} | {r['settles']} | "
            f"{r['starts']} | {r['machine']:.1f} | "
            f"{r['rules'] / r['machine'] if r['machine'] else 0:,.0f} | "
            f"{r['ready']:.1f} | "
            f"{100 * r['ready'] / r['machine'] if r['machine'] else 0:.0f} % | "
            f"{r['preflight']:.2f} | {r['idle']:.1f} |"
        )
    out += [
        f"| **all** | | {rules} | {sum(r['settles'] for r in rows)} | {n_starts} | "
        f"{machine:.1f} | **{rate:,.0f}** | {ready:.1f} | "
        f"{100 * ready / machine if machine else 0:.0f} % | | |",
        "",
        "## The cost of a rest",
        "",
        "Every `ProcessDriver.settle` of C (a *rest*: pump the clients, look at the server's "
        "threads and sockets until the kernel shows it at rest), timed with its parts where "
        "the driver calls them (`RestClock`). Beside it, the in-process driver's rules/s on "
        "the same programs (`Target('impl', reference)`).",
        "",
        *rest_table(rests, rules, machine, inprocess),
        "",
        f"One reference server started alone (`ServerProcess.start()`, launch to "
        f"listening, in the private network), {len(starts)} times: median "
        f"{statistics.median(starts) * 1000:.0f} ms, min {min(starts) * 1000:.0f} ms, max "
        f"{max(starts) * 1000:.0f} ms.",
        "",
        "## Reading",
        "",
        "READING",
        "",
    ]
    body = "\n".join(out)
    if page_name:
        page.write(page_name, body)
    else:
        print(page.header() + "\n" + body)


def _timed_check(
    target: Target,
    req_id: str,
    examples: int,
    *,
    seed: int | None = None,
    settle: float | None = None,
    **given: object,
) -> tuple[Outcome, float]:
    """check() with `examples` programs of up to 15 steps and no database, and its seconds."""
    start = time.perf_counter()
    outcome = check(
        target,
        req_id,
        seed=seed,
        **({} if settle is None else {"settle": settle}),
        hypothesis_settings=settings(
            max_examples=examples, stateful_step_count=15, database=None, **given
        ),
    )
    return outcome, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer examples, one seed")
    parser.add_argument(
        "--suite",
        action="store_true",
        help="also time the self-suite with 1 and 2 workers (~5 min)",
    )
    parser.add_argument(
        "--drivers",
        action="store_true",
        help="also figure 1 (steps/s per driver) and 2 (seed defects)",
    )
    parser.add_argument("--zoo", action="store_true", help="also figure 3 (zoo rejections)")
    parser.add_argument("--no-user", action="store_true", help="skip figures A-C")
    parser.add_argument(
        "--rest",
        action="store_true",
        help="only the cost of a rest and both drivers' rules/s, printed (about a minute "
        "with --quick)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed for figure C (default 1)")
    parser.add_argument(
        "--page", default="checker-speed.md", help="the page under docs/ for A-C ('' for none)"
    )
    args = parser.parse_args()
    examples = 10 if args.quick else 40
    if args.rest:
        rest_only(args.seed, examples)
        return
    if not args.no_user:
        users_figures(args.seed, examples, args.page or None)
    if args.drivers:
        drivers_and_seeds(examples)
    if args.zoo:
        zoo_rejections(1 if args.quick else 5)
    if args.suite:
        suite_wall_times()


def drivers_and_seeds(examples: int) -> None:
    py = sys.executable
    targets = {
        "in-process": Target("impl", BUNDLED["reference"]),
        "process": Target("cmd", f"{py} -m impl.select_server --port {{port}} --log-level WARNING"),
    }
    print(f"# Checker speed ({examples} examples per requirement, derandomized)\n")
    print("| driver | " + " | ".join(MACHINE) + " | median |")
    print("|---" * (len(MACHINE) + 2) + "|")
    for name, target in targets.items():
        rows = steps_per_second(target, examples, settle=0.5)
        rates = [r for _, r in rows]
        print(
            f"| {name} | "
            + " | ".join(f"{r:,.0f}" for r in rates)
            + f" | **{statistics.median(rates):,.0f}** |"
        )
    print("\n(steps per second, one worker)\n")
    print(
        f"The ceiling, Hypothesis alone (every rule enabled, the same arguments, steps "
        f"that do nothing): {hypothesis_alone(examples):,.0f} steps/s\n"
    )
    print("# Seed defects: found, shrunk and reported\n")
    print("| server | requirement | verdict | seconds | shrunk steps |")
    print("|---|---|---|---|---|")
    for seed in ("seed-upper", "seed-echo"):
        target = Target("impl", BUNDLED[seed])
        for req_id in ("ECHO-1", "ECHO-4", "ECHO-5", "ECHO-6"):
            outcome = check(
                target,
                req_id,
                hypothesis_settings=settings(
                    max_examples=examples, stateful_step_count=15, derandomize=True, database=None
                ),
            )
            steps = len([line for line in outcome.program if line != "state.teardown()"])
            print(
                f"| {seed} | {req_id} | {outcome.verdict} | {outcome.seconds:.2f} | "
                f"{steps if outcome.program else '-'} |"
            )
    print()


if __name__ == "__main__":
    main()
