"""Server throughput and latency, every server in the same run, as medians and ratios.

    python bench/throughput/run.py            # full matrix, about 13 minutes; writes docs/
    python bench/throughput/run.py --quick    # 1 KiB at 10/100/1,000 connections, ~1.5 minutes

A load generator in C (`loadgen.c`, compiled here with the system ``cc -O2``)
runs closed-loop ping-pong over N connections with M-byte messages and checks
every echo byte against the message uppercased; any error invalidates the run.
Each server is started fresh for every run as a process in its own process
group (`spec.drivers.server_process.ServerProcess`, which always ends it), the
generator and the server pinned to different cores with ``taskset``.  Runs are
interleaved (repeat 1 of every server and configuration, then repeat 2, ...)
so that load from other jobs falls on every server alike; medians are
reported, and ratios are medians of the ratios within each repeat.  Besides
round trips/s the generator reads the server's CPU time and minor page faults
from /proc over the measured window: round trips per server CPU-second is
what a server does with a whole core, the steadier figure when other jobs
share the machine.

The servers: the reference select() server, the seed's uppercase server, the
three alternative designs in impl/, and the peers a user would pick instead
(`peers.py`: asyncio streams, asyncio Protocol, that Protocol on uvloop) plus
a minimal C epoll server (`cecho.c`) as the ceiling of the machine.

Writes docs/throughput.md (tables, ratios, goals) and docs/throughput.png
(round trips/s, p99 latency and round trips per server CPU-second against
connections at 1 KiB) after a full run; ``--quick`` only prints unless
``--write`` is given.  ``--replot results.json`` rewrites both from a saved
``--json`` dump without running.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from spec.drivers.server_process import ServerProcess, ServerStartError  # noqa: E402

KIB = 1024
SELECT_LIMIT = 1000  # select() watches descriptors below FD_SETSIZE = 1024


@dataclass(frozen=True)
class Server:
    key: str
    label: str
    command: str  # with {port}; {py} this interpreter, {build} the build dir, {peers} peers.py
    max_conns: int | None = None
    limit_note: str = ""
    kind: str = "python"  # or "c"
    default: bool = True  # run unless --servers names others


PY = sys.executable
SERVERS = [
    Server(
        "reference",
        "reference select",
        "{py} -m impl.select_server --port {port} --log-level WARNING",
        SELECT_LIMIT,
        "select() watches descriptors below 1024; beyond that the reference refuses",
    ),
    Server(
        "seed",
        "seed select (defects)",
        "{py} -m impl.seed_upper_server --port {port} --log-level WARNING",
        SELECT_LIMIT,
        "select() watches descriptors below 1024; beyond that the seed dies",
    ),
    Server(
        "selectors",
        "impl selectors (epoll)",
        "{py} -m impl.selectors_server --port {port} --log-level WARNING",
    ),
    Server(
        "asyncio",
        "impl asyncio Protocol",
        "{py} -m impl.asyncio_server --port {port} --log-level WARNING",
    ),
    Server(
        "threaded",
        "impl threaded",
        "{py} -m impl.threaded_server --port {port} --log-level WARNING",
    ),
    Server("streams", "asyncio streams", "{py} {peers} streams --port {port}"),
    Server("protocol", "asyncio Protocol", "{py} {peers} protocol --port {port}"),
    Server("uvloop", "uvloop Protocol", "{py} {peers} uvloop --port {port}"),
    Server("c", "C epoll (ceiling)", "{build}/cecho {port}", kind="c"),
]
PYTHON_KEYS = [s.key for s in SERVERS if s.kind == "python"]

# The goals: (numerator, denominator, minimum, connection counts), 1 KiB messages.
GOALS = [
    ("reference", "protocol", 2.5, (10, 100)),
    ("reference", "uvloop", 0.9, (10, 100)),
    ("reference", "c", 0.75, (10, 100)),
    ("selectors", "uvloop", 1.0, (100, 1000)),
    ("selectors", "c", 0.75, (10, 100)),
]
# Shown beside them, no goal.
EXTRA_RATIOS = [
    ("reference", "asyncio"),
    ("reference", "selectors"),
    ("protocol", "uvloop"),
    ("uvloop", "c"),
]


# -- building and running ----------------------------------------------------------


def build(notes: list[str]) -> tuple[Path, bool]:
    """Compile loadgen (required) and cecho (optional) into a temporary directory."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        raise SystemExit("no C compiler (cc): the load generator is C; install gcc or set CC")
    out = Path(tempfile.mkdtemp(prefix="echo-throughput-"))
    for name, required in (("loadgen", True), ("cecho", False)):
        proc = subprocess.run(
            [cc, "-O2", "-o", str(out / name), str(HERE / f"{name}.c")],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            if required:
                raise SystemExit(f"compiling {name}.c failed:\n{proc.stderr}")
            notes.append(
                f"the C epoll server did not compile, so it is skipped: "
                f"{proc.stderr.strip().splitlines()[-1]}"
            )
            return out, False
    return out, True


def pinning(notes: list[str]) -> tuple[list[str], str]:
    """taskset prefixes for the generator and the server, on different cores."""
    cpus = sorted(os.sched_getaffinity(0))
    if shutil.which("taskset") is None:
        notes.append("taskset (util-linux) is missing: generator and server are not pinned")
        return [], ""
    if len(cpus) < 2:
        notes.append("only one core is available: generator and server share it, not pinned")
        return [], ""
    notes.append(
        f"generator pinned to core {cpus[0]}, server to core {cpus[1]} (taskset); "
        "other processes on the machine are not"
    )
    return ["taskset", "-c", str(cpus[0])], f"taskset -c {cpus[1]} "


def run_one(
    server: Server,
    conns: int,
    size: int,
    args,
    bindir: Path,
    gen_prefix: list[str],
    server_prefix: str,
) -> dict:
    command = server_prefix + server.command.format(
        py=shlex.quote(PY),
        build=shlex.quote(str(bindir)),
        peers=shlex.quote(str(HERE / "peers.py")),
        here=shlex.quote(str(HERE)),
        port="{port}",
    )
    result: dict = {"server": server.key, "conns": conns, "size": size}
    try:
        with ServerProcess(command, start_timeout=15) as sp:
            gen = [
                *gen_prefix,
                str(bindir / "loadgen"),
                "--port",
                str(sp.port),
                "--conns",
                str(conns),
                "--size",
                str(size),
                "--duration",
                str(args.duration),
                "--warmup",
                str(args.warmup),
                "--connect-timeout",
                "20",
                "--server-pid",
                str(sp.process.pid),
            ]
            try:
                proc = subprocess.run(
                    gen,
                    capture_output=True,
                    text=True,
                    timeout=20 + args.warmup + 10 + args.duration + 10,
                )
            except subprocess.TimeoutExpired:
                return {**result, "valid": False, "error": "the load generator timed out"}
            alive = sp.alive
    except ServerStartError as e:
        return {**result, "valid": False, "error": f"server did not start: {e}"}
    lines = proc.stdout.strip().splitlines()
    if not lines:
        return {
            **result,
            "valid": False,
            "error": f"load generator exit {proc.returncode}: {proc.stderr.strip()[-300:]}",
        }
    result.update(json.loads(lines[-1]))
    if not result["samples"]:  # no round trip completed within the window: no latency
        result["p50_us"] = result["p99_us"] = None
    result["valid"] = result["errors"] == 0 and alive
    if result["errors"]:
        result["error"] = f"{result['errors']} error(s), first: {result['first_error']}"
    elif not alive:
        result["error"] = "the server died during the run"
    return result


# -- summarising -----------------------------------------------------------------------


def per_cpu(r: dict) -> float | None:
    """Round trips per second of server CPU time: what the server does with a whole core."""
    cpu = r.get("server_cpu", -1.0)
    return r["rps"] / cpu if cpu > 0.05 else None


def summarise(results: list[dict]) -> dict:
    """(server, conns, size) -> medians over the valid repeats, and the raw runs."""
    cells: dict[tuple, dict] = {}
    for r in results:
        cells.setdefault((r["server"], r["conns"], r["size"]), {"runs": []})["runs"].append(r)
    for cell in cells.values():
        valid = [r for r in cell["runs"] if r["valid"]]
        cell["valid"] = len(valid)
        cell["errors"] = [r["error"] for r in cell["runs"] if not r["valid"]]
        if valid:
            rps = [r["rps"] for r in valid]
            cell["rps"] = statistics.median(rps)
            timed = [r for r in valid if r["samples"]]  # runs with a round trip in the window
            cell["p50"] = statistics.median(r["p50_us"] for r in timed) if timed else None
            cell["p99"] = statistics.median(r["p99_us"] for r in timed) if timed else None
            cell["gen_cpu"] = statistics.median(r["gen_cpu"] for r in valid)
            cell["server_cpu"] = statistics.median(r.get("server_cpu", 0.0) for r in valid)
            faults = [
                r["server_faults_per_rt"] for r in valid if r.get("server_faults_per_rt", -1) >= 0
            ]
            cell["faults"] = statistics.median(faults) if faults else None
            cell["thrash_runs"] = sum(f >= 0.5 for f in faults)
            pc = [v for v in map(per_cpu, valid) if v is not None]
            cell["per_cpu"] = statistics.median(pc) if pc else None
            cell["spread"] = (max(rps) - min(rps)) / cell["rps"] if cell["rps"] else 0.0
    return cells


def ratio(
    results: list[dict], a: str, b: str, conns: int, size: int, metric=lambda r: r["rps"]
) -> tuple | None:
    """Median, min and max over repeats of metric(a)/metric(b) within the same repeat."""

    def by_rep(key: str) -> dict[int, float]:
        out = {}
        for r in results:
            if r["server"] == key and r["conns"] == conns and r["size"] == size and r["valid"]:
                v = metric(r)
                if v:
                    out[r["repeat"]] = v
        return out

    ra, rb = by_rep(a), by_rep(b)
    paired = [ra[k] / rb[k] for k in ra if k in rb]
    if not paired:
        return None
    return statistics.median(paired), min(paired), max(paired)


def fmt_us(us: float | None) -> str:
    if us is None:
        return "–"
    if us < 1000:
        return f"{us:.0f} µs"
    if us < 100_000:
        return f"{us / 1000:.1f} ms"
    return f"{us / 1000:.0f} ms"


def fmt_size(size: int) -> str:
    return f"{size // KIB} KiB" if size >= KIB else f"{size} B"


def label(key: str) -> str:
    return next(s.label for s in SERVERS if s.key == key)


def report(data: dict) -> str:
    results, meta = data["results"], data["meta"]
    cells = summarise(results)
    conns_list, sizes = meta["connections"], meta["sizes"]
    keys = [s.key for s in SERVERS if any(k[0] == s.key for k in cells)]
    out: list[str] = []
    w = out.append
    w(
        f"Closed-loop ping-pong, {meta['duration']:g} s measured after {meta['warmup']:g} s "
        f"warm-up per run, median of {meta['repeats']} interleaved runs, every echo byte "
        f"checked. {meta['machine']}"
    )
    w("")
    for note in meta["notes"]:
        w(f"- {note}")
    w("")

    for size in sizes:
        w(
            f"### {fmt_size(size)} messages: round trips/s · per server CPU-second; "
            "p50 / p99 latency"
        )
        w("")
        w("| server | " + " | ".join(f"{c:,} conn." for c in conns_list) + " |")
        w("|---|" + "---:|" * len(conns_list))
        for key in keys:
            row = []
            for c in conns_list:
                cell = cells.get((key, c, size))
                if cell is None:
                    row.append("skipped")
                elif not cell["valid"]:
                    row.append("invalid")
                else:
                    flag = (
                        ""
                        if cell["valid"] == len(cell["runs"])
                        else f" ({len(cell['runs']) - cell['valid']} invalid)"
                    )
                    pc = f" · {cell['per_cpu'] / 1000:,.0f}k/CPU-s" if cell["per_cpu"] else ""
                    row.append(
                        f"**{cell['rps']:,.0f}**{flag}{pc}<br>{fmt_us(cell['p50'])} / "
                        f"{fmt_us(cell['p99'])}"
                    )
            w(f"| {label(key)} | " + " | ".join(row) + " |")
        w("")

    w("### Ratios, 1 KiB messages")
    w("")
    w(
        "Each ratio is the median over repeats of the ratio within one repeat (min–max "
        "over repeats), first of round trips/s as measured, then of round trips per second "
        "of server CPU time, which does not count the time other jobs took the server's "
        "core and is the steadier figure on a shared machine."
    )
    verdicts: dict[tuple, list] = {}
    rows = [*GOALS, *((a, b, None, ()) for a, b in EXTRA_RATIOS)]
    for title, metric in (
        ("round trips/s", lambda r: r["rps"]),
        ("round trips per server CPU-second", per_cpu),
    ):
        w("")
        w(f"| ratio of {title} | " + " | ".join(f"{c:,} conn." for c in conns_list) + " | goal |")
        w("|---|" + "---:|" * len(conns_list) + "---|")
        for a, b, goal, at in rows:
            row = []
            for c in conns_list:
                rt = ratio(results, a, b, c, KIB, metric)
                if c in at:
                    verdicts.setdefault((a, b, goal, c), []).append(rt and rt[0])
                if rt is None:
                    row.append("–")
                    continue
                text = f"{rt[0]:.2f} ({rt[1]:.2f}–{rt[2]:.2f})"
                row.append(f"**{text}**" if c in at and rt[0] >= goal else text)
            if all(t == "–" for t in row) and not goal:
                continue  # neither server was run
            goal_text = f"≥ {goal:g}× at {', '.join(f'{c:,}' for c in at)}" if goal else "–"
            w(f"| {label(a)} / {label(b)} | " + " | ".join(row) + f" | {goal_text} |")
    w("")
    w("### Goals (1 KiB)")
    w("")
    w("Met when both ratios reach the goal, missed when neither does, unclear otherwise.")
    w("")
    for (a, b, goal, c), (measured, cpu) in verdicts.items():
        if measured is None:
            w(f"- {label(a)} ≥ {goal:g}× {label(b)} at {c:,} connections: not measured")
            continue
        both = [v for v in (measured, cpu) if v is not None]
        mark = (
            "met"
            if all(v >= goal for v in both)
            else "**missed**"
            if all(v < goal for v in both)
            else "unclear"
        )
        cpu_text = f", {cpu:.2f}× per CPU-second" if cpu is not None else ""
        w(
            f"- {label(a)} ≥ {goal:g}× {label(b)} at {c:,} connections: {measured:.2f}× "
            f"measured{cpu_text} — {mark}"
        )
    w("")

    w("### Is the load generator the bottleneck?")
    w("")
    w(
        "The same generator against the C server and against the fastest Python server "
        "(by round trips per server CPU-second) of each configuration. CPU is user+system "
        "time over the measured window as a fraction of one core."
    )
    w("")
    w(
        "| size | conn. | C: rt/s | C: per CPU-s | CPU gen. / C | fastest Python | its rt/s | "
        "its per CPU-s | CPU gen. / it | C / it per CPU-s |"
    )
    w("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    faster = faster_cpu = total = 0
    for size in sizes:
        for c in conns_list:
            cc = cells.get(("c", c, size))
            py = [
                (cells[(k, c, size)]["per_cpu"] or 0, k)
                for k in PYTHON_KEYS
                if (k, c, size) in cells and cells[(k, c, size)]["valid"]
            ]
            if not cc or not cc["valid"] or not py or not cc["per_cpu"]:
                continue
            _, bk = max(py)
            best = cells[(bk, c, size)]
            top_rps = max(cells[(k, c, size)]["rps"] for _, k in py)
            total += 1
            faster += cc["rps"] > top_rps
            faster_cpu += cc["per_cpu"] > (best["per_cpu"] or 0)
            w(
                f"| {fmt_size(size)} | {c:,} | {cc['rps']:,.0f} | {cc['per_cpu']:,.0f} | "
                f"{cc['gen_cpu']:.0%} / {cc['server_cpu']:.0%} | {label(bk)} | "
                f"{best['rps']:,.0f} | {best['per_cpu'] or 0:,.0f} | "
                f"{best['gen_cpu']:.0%} / {best['server_cpu']:.0%} | "
                f"{cc['per_cpu'] / (best['per_cpu'] or 1):.2f} |"
            )
    w("")
    if total:
        w(
            f"The C server does more round trips per CPU-second than every Python server in "
            f"{faster_cpu} of {total} configurations, and more round trips per second (medians "
            f"of runs at different moments) in {faster} of {total}. On loopback each side's "
            "CPU time includes the kernel's TCP work for what it sends, so the generator costs "
            "about what the C server costs per round trip and less than any Python server: a "
            "Python server, not the generator, limits its runs."
            + (
                " With 64 KiB messages the kernel's copying dominates every server, C "
                "included, and the servers are within the noise of each other."
                if 65536 in sizes
                else ""
            )
        )
    else:
        w("The C server was not measured, so the generator's headroom is not shown.")
    w("")

    spreads = [cell["spread"] for cell in cells.values() if cell.get("valid", 0) > 1]
    busy = [r for r in results if r["valid"] and r["conns"] >= 10 and r.get("server_cpu", -1) >= 0]
    if busy:
        starved = sum(r["server_cpu"] < 0.9 for r in busy)
        w(
            f"Contention: with 10 or more connections a server alone on its core keeps it busy, "
            f"yet in {starved} of {len(busy)} such runs the server got less than 90% of it "
            f"(median {statistics.median(r['server_cpu'] for r in busy):.0%}): other jobs "
            "shared the cores."
        )
        w("")
    if spreads:
        w(
            f"Noise: the spread (max − min) / median of round trips/s over the repeats of one "
            f"configuration is {statistics.median(spreads):.0%} in the median configuration and "
            f"{max(spreads):.0%} at worst."
        )
    # A 64 KiB echo legitimately faults (big buffers); a 1 KiB one should not.
    thrash = [(k, cell) for k, cell in cells.items() if cell.get("thrash_runs") and k[2] <= KIB]
    if thrash:
        w("")
        w(
            "Allocator thrash: in these runs the server took one or more minor page faults per "
            "round trip, the sign of a read buffer mapped and unmapped for every read. "
            "asyncio's transports call `recv(256 KiB)` and shrink the result; glibc serves "
            "256 KiB with mmap, then mremap and munmap, until a read that finds nothing "
            "(EAGAIN, EOF) frees a whole buffer and raises glibc's dynamic mmap threshold. "
            "Whether an asyncio server pays three extra system calls and two page faults per "
            "read thus depends on its history:"
        )
        w("")
        for (key, c, size), cell in sorted(thrash, key=lambda kc: (kc[0][2], kc[0][1])):
            w(
                f"- {label(key)}, {c:,} conn., {fmt_size(size)}: {cell['thrash_runs']} of "
                f"{cell['valid']} runs, {cell['faults']:.1f} faults per round trip (median)"
            )
    invalid = [(k, cell) for k, cell in cells.items() if cell["errors"]]
    if invalid:
        w("")
        w("Invalid runs (excluded from the medians):")
        w("")
        for (key, c, size), cell in invalid:
            w(f"- {label(key)}, {c:,} conn., {fmt_size(size)}: {cell['errors'][0]}")
    return "\n".join(out)


def plot(data: dict, path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'): no chart"
    cells = summarise(data["results"])
    conns_list = data["meta"]["connections"]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(17, 5.6))
    markers = "os^vD<>pX*h"
    for i, s in enumerate(SERVERS):
        pts = [
            (c, cells[(s.key, c, KIB)])
            for c in conns_list
            if (s.key, c, KIB) in cells and cells[(s.key, c, KIB)]["valid"]
        ]
        if not pts:
            continue
        style = {
            "marker": markers[i % len(markers)],
            "label": s.label,
            "linewidth": 1.8,
            "linestyle": "--"
            if s.kind == "c" or s.key in ("protocol", "uvloop", "streams")
            else "-",
        }
        if s.key == "reference":
            style.update(linewidth=3, color="black")
        xs = [c for c, _ in pts]
        ax1.plot(xs, [cell["rps"] for _, cell in pts], **style)
        lat = [(c, cell["p99"]) for c, cell in pts if cell["p99"] is not None]
        ax2.plot([c for c, _ in lat], [v / 1000 for _, v in lat], **style)
        pc = [(c, cell["per_cpu"]) for c, cell in pts if cell["per_cpu"]]
        ax3.plot([c for c, _ in pc], [v for _, v in pc], **style)
    for ax, title, ylabel in (
        (ax1, "Round trips per second (higher is better)", "round trips/s"),
        (ax2, "p99 latency (lower is better)", "p99 latency (ms)"),
        (
            ax3,
            "Round trips per server CPU-second\n(steadier on a shared machine)",
            "round trips / server CPU-s",
        ),
    ):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(conns_list, [f"{c:,}" for c in conns_list])
        ax.minorticks_off()
        ax.set_xlabel("connections")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="major", alpha=0.3)
    ticker = matplotlib.ticker
    for ax, fmt in (
        (ax1, lambda v, _: f"{v / 1000:g}k"),
        (ax2, lambda v, _: f"{v:g}"),
        (ax3, lambda v, _: f"{v / 1000:g}k"),
    ):
        ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(fmt))
    handles, labels = ax1.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, frameon=False)
    meta = data["meta"]
    fig.suptitle(
        f"Uppercase echo servers, 1 KiB ping-pong, median of {meta['repeats']} runs "
        f"({meta['duration']:g} s each)"
    )
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def write_docs(data: dict, text: str, md_path: Path, png_path: Path) -> None:
    note = plot(data, png_path)
    md = [
        "# Server throughput and latency",
        "",
        f"Regenerate with `{data['meta']['command']}` (figures and this page).",
        "",
        f"![round trips/s and p99 latency against connections, 1 KiB]({png_path.name})",
        "",
        text,
        "",
    ]
    if note:
        print(note)
    md_path.write_text("\n".join(md), encoding="utf-8")
    print(
        f"wrote {md_path.relative_to(ROOT)}"
        + ("" if note else f" and {png_path.relative_to(ROOT)}")
    )


# -- main ------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 KiB at 10, 100, 1,000 connections, shorter runs (~1.5 min)",
    )
    parser.add_argument("--connections", help="comma-separated (default 1,10,100,1000)")
    parser.add_argument("--sizes", help="message sizes in bytes (default 64,1024,65536)")
    parser.add_argument(
        "--servers", help=f"comma-separated subset of {','.join(s.key for s in SERVERS)}"
    )
    parser.add_argument("--repeats", type=int, help="runs of each configuration (default 3)")
    parser.add_argument("--duration", type=float, help="measured seconds per run (default 1.5)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per run (default 0.3)")
    parser.add_argument("--write", action="store_true", help="write docs/ after --quick too")
    parser.add_argument("--no-write", action="store_true", help="do not write docs/")
    parser.add_argument("--json", type=Path, help="also save every run's raw figures here")
    parser.add_argument("--replot", type=Path, help="rewrite docs/ from a --json file, no runs")
    args = parser.parse_args()
    md_path, png_path = ROOT / "docs" / "throughput.md", ROOT / "docs" / "throughput.png"

    if args.replot:
        data = json.loads(args.replot.read_text())
        text = report(data)
        print(text)
        if not args.no_write:
            write_docs(data, text, md_path, png_path)
        return 0

    q = args.quick
    conns_list = [
        int(c) for c in (args.connections or ("10,100,1000" if q else "1,10,100,1000")).split(",")
    ]
    sizes = [int(s) for s in (args.sizes or ("1024" if q else "64,1024,65536")).split(",")]
    args.repeats = args.repeats or 3
    args.duration = args.duration or (0.6 if q else 1.5)
    args.warmup = args.warmup if args.warmup is not None else (0.2 if q else 0.3)
    wanted = args.servers.split(",") if args.servers else [s.key for s in SERVERS if s.default]
    unknown = set(wanted) - {s.key for s in SERVERS}
    if unknown:
        parser.error(f"unknown server(s): {', '.join(sorted(unknown))}")

    os.chdir(ROOT)  # `python -m impl.X` finds impl/ from here even without an install
    notes: list[str] = []
    bindir, have_cecho = build(notes)
    try:
        gen_prefix, server_prefix = pinning(notes)
        servers = [s for s in SERVERS if s.key in wanted]
        if not have_cecho:
            servers = [s for s in servers if s.kind != "c"]
        if "uvloop" in wanted and importlib.util.find_spec("uvloop") is None:
            notes.append("uvloop is not installed (pip install -e '.[bench]'): its peer is skipped")
            servers = [s for s in servers if s.key != "uvloop"]
        for s in servers:
            over = [c for c in conns_list if s.max_conns is not None and c > s.max_conns]
            if over:
                notes.append(
                    f"{s.label}: {', '.join(f'{c:,}' for c in over)} connections "
                    f"skipped ({s.limit_note})"
                )
        plan = [
            (rep, size, c, s)
            for rep in range(args.repeats)
            for size in sizes
            for c in conns_list
            for s in servers
            if s.max_conns is None or c <= s.max_conns
        ]
        print(
            f"{len(plan)} runs of {args.warmup:g} + {args.duration:g} s; {'; '.join(notes)}",
            flush=True,
        )
        results = []
        start = time.perf_counter()
        for i, (rep, size, c, s) in enumerate(plan, 1):
            r = run_one(s, c, size, args, bindir, gen_prefix, server_prefix)
            r["repeat"] = rep
            results.append(r)
            status = (
                f"{r['rps']:>10,.0f} rt/s  p50 {fmt_us(r['p50_us']):>8}  "
                f"p99 {fmt_us(r['p99_us']):>8}  CPU gen. {r['gen_cpu']:4.0%} "
                f"server {r['server_cpu']:4.0%}  faults/rt {r['server_faults_per_rt']:.1f}"
                if r["valid"]
                else f"INVALID: {r['error']}"
            )
            print(
                f"[{i:3}/{len(plan)} {time.perf_counter() - start:5.0f} s] rep {rep + 1} "
                f"{fmt_size(size):>6} {c:>5} conn. {s.label:<24} {status}",
                flush=True,
            )
    finally:
        shutil.rmtree(bindir, ignore_errors=True)

    cmd = "python bench/throughput/run.py" + (" --quick" if q else "")
    machine = (
        f"Machine: {os.cpu_count()} cores ({_cpu_model()}), Linux "
        f"{os.uname().release}, Python {sys.version.split()[0]}; shared with other "
        f"jobs, load average {os.getloadavg()[0]:.1f} at the end of the run."
    )
    data = {
        "meta": {
            "connections": conns_list,
            "sizes": sizes,
            "repeats": args.repeats,
            "duration": args.duration,
            "warmup": args.warmup,
            "notes": notes,
            "command": cmd,
            "machine": machine,
            "seconds": round(time.perf_counter() - start, 1),
        },
        "results": results,
    }
    if args.json:
        args.json.write_text(json.dumps(data, indent=1))
    text = report(data)
    print()
    print(text)
    print(f"\n({len(plan)} runs in {data['meta']['seconds']:.0f} s)")
    if (not q or args.write) and not args.no_write:
        write_docs(data, text, md_path, png_path)
    return 0


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


if __name__ == "__main__":
    raise SystemExit(main())
