"""Shared by the bench commands: the machine, the commit, and a Markdown page under docs/.

Every bench command that measures something writes its own page, so a figure
on a page always comes with how, when, on what and at which commit it was made.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "spec", "impl"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out + (" (spec/ or impl/ modified in the working tree)" if dirty else "")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class Page:
    """Header facts taken at the start (load before), finished with `write()` (load after)."""

    def __init__(self, title: str, argv: list[str] | None = None) -> None:
        self.title = title
        argv = sys.argv if argv is None else argv
        self.command = "python " + shlex.join([os.path.relpath(argv[0], ROOT), *argv[1:]])
        self.started = datetime.datetime.now().astimezone()
        self.commit = commit()
        self.load_before = load()

    def header(self) -> str:
        return "\n".join(
            [
                f"# {self.title}",
                "",
                f"- Command: `{self.command}`",
                f"- Date: {self.started:%Y-%m-%d %H:%M %Z}, "
                f"{(datetime.datetime.now().astimezone() - self.started).total_seconds() / 60:.0f} "
                "min",
                f"- Commit: `{self.commit}`"
                + ("" if commit() == self.commit else f" at the start, `{commit()}` at the end"),
                f"- Machine: {os.cpu_count()} CPUs ({cpu_model()}), Linux {platform.release()}, "
                f"Python {platform.python_version()}; shared with other jobs",
                f"- Load average (1, 5, 15 min): before {self.load_before}, after {load()}",
                "",
            ]
        )

    def write(self, name: str, body: str) -> str:
        """Write docs/<name> (header + body), print it, and return it."""
        text = self.header() + "\n" + body.rstrip() + "\n"
        DOCS.mkdir(exist_ok=True)
        (DOCS / name).write_text(text)
        print(text, flush=True)
        return text
