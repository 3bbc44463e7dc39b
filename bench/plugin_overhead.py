"""What the installed plugin adds to a pytest run that does not use it.

    python bench/plugin_overhead.py [--runs 20]

In a temporary directory with one trivial test (no conftest, not this
checkout), runs ``python -m pytest -q -p no:cacheprovider`` alternately with
the plugin (its pytest11 entry point, as every run of the environment loads
it) and without it (``-p no:echo_conformance``), and prints the median and
spread of each and their difference; then the import time of the entry point
module and of the checker it imports only when asked (``python -X importtime``).
Goal (issue 22): under 50 ms.  The figures go to docs/plugin-overhead.md.
The plugin must be installed (``pip install -e .``).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import entry_points
from pathlib import Path

ENTRY_POINT = "echo_conformance"
TRIVIAL_TEST = "def test_nothing():\n    assert True\n"


def _run_pytest(cwd: Path, *extra: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra],
        cwd=cwd,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return time.perf_counter() - start


def _import_microseconds(module: str) -> int:
    """Cumulative import time of `module` in a fresh interpreter (`-X importtime`),
    pytest already imported (as it is when pytest loads the entry point)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import pytest; import {module}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    for line in done.stderr.splitlines():
        fields = [f.strip() for f in line.removeprefix("import time:").split("|")]
        if len(fields) == 3 and fields[2] == module:
            return int(fields[1])
    raise RuntimeError(f"{module} not in -X importtime's output")


def _figures(name: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    return (
        f"{name:24} median {statistics.median(ms):7.1f} ms   "
        f"min {ms[0]:7.1f}   max {ms[-1]:7.1f}   (n={len(ms)})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs of each (default 20)")
    parser.add_argument("--page", default="plugin-overhead.md", help="page under docs/ ('' none)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _page import Page

    page = Page("What the installed plugin adds to a pytest run that does not use it")
    lines: list[str] = []
    if not any(ep.name == ENTRY_POINT for ep in entry_points(group="pytest11")):
        print("the plugin is not installed: pip install -e .", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        (cwd / "test_trivial.py").write_text(TRIVIAL_TEST)
        _run_pytest(cwd)  # warm the file cache and the bytecode
        _run_pytest(cwd, "-p", f"no:{ENTRY_POINT}")
        with_plugin, without = [], []
        for _ in range(args.runs):
            with_plugin.append(_run_pytest(cwd))
            without.append(_run_pytest(cwd, "-p", f"no:{ENTRY_POINT}"))
    lines.append(f"pytest -q on one trivial test, {args.runs} runs each, alternated:")
    lines.append(_figures("with the plugin", with_plugin))
    lines.append(_figures("without (-p no:...)", without))
    diff = statistics.median(with_plugin) - statistics.median(without)
    pairs = sorted(a - b for a, b in zip(with_plugin, without, strict=True))
    lines.append(
        f"added by the plugin: {diff * 1000:.1f} ms (difference of medians); "
        f"median of paired differences {statistics.median(pairs) * 1000:.1f} ms"
    )
    for module, what in (
        ("spec.plugin", "the entry point"),
        ("spec.pytest_plugin", "the checker, imported only when an --echo-* option is given"),
    ):
        imports = [_import_microseconds(module) for _ in range(5)]
        lines.append(
            f"import {module} after pytest (-X importtime, cumulative, median of 5): "
            f"{statistics.median(imports) / 1000:.2f} ms ({what})"
        )
    body = "```\n" + "\n".join(lines) + "\n```\n"
    if args.page:
        page.write(args.page, body)
    else:
        sys.stdout.write(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
