"""The HTML report as a person sees it: rendered by headless Chromium.

One pytest run checks the seed's server (fails ECHO-4, 5 and 6 at once,
in-process) and the reference on two quick requirements and writes
`--echo-html`; Chromium loads the page, runs its script, and hands back the DOM
it built (`--dump-dom`) and a screenshot.  The DOM must hold the matrix
with the verdicts and, for each failure, its evidence with a sequence
diagram; the page's script must have opened the first failure.

Chromium comes from Debian (`apt-get install chromium`, as `.ci/run` does).
Without it the test skips, except in CI (`CI` set), where it fails.  Set
REPORT_SCREENSHOT=docs/report.png to keep the screenshot.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from runs import pytest_run

SEED_UPPER = "impl.seed_upper_server:SeedUpperServer"
REFERENCE = "impl.select_server:SelectEchoServer"
SELECTION = (
    "seed_upper_server and (ECHO-1] or ECHO-4 or ECHO-5 or ECHO-6) "
    "or select_server-ECHO-1] or select_server-ECHO-3]"
)
BROWSER_TIMEOUT = 90
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-breakpad",
    "--no-default-browser-check",
    "--mute-audio",
    "--hide-scrollbars",
]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    message = "chromium is not installed (apt-get install -y chromium)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must run the browser test", pytrace=False)
    pytest.skip(message)


def run_browser(*args: str) -> str:
    """Run Chromium once in its own process group, always ended; its stdout."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        process = subprocess.Popen(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = process.communicate(timeout=BROWSER_TIMEOUT)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # its helpers too
            process.wait(timeout=10)
    assert process.returncode == 0, err[-2000:]
    return out


class Page(HTMLParser):
    """What the rendered DOM holds: matrix cells, evidence sections, diagrams."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[dict[str, str]] = []
        self.sections: dict[str, str] = {}
        self.diagrams: dict[str, int] = {}
        self.headers: list[str] = []
        self._section: str | None = None
        self._cell: dict[str, str] | None = None
        self._in_th = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        if tag == "section" and "evidence" in classes:
            self._section = a["id"]
            self.sections[a["id"]] = " ".join(classes)
        elif tag == "svg" and "sequence" in classes and self._section:
            self.diagrams[self._section] = self.diagrams.get(self._section, 0) + 1
        elif tag == "td" and "cell" in classes:
            self._cell = {**a, "text": ""}
            self.cells.append(self._cell)
        elif tag == "th" and a.get("scope") == "col":
            self._in_th = True
            self.headers.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._section = None
        elif tag == "td":
            self._cell = None
        elif tag == "th":
            self._in_th = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell["text"] += data
        if self._in_th and self.headers and not self.headers[-1]:
            self.headers[-1] = data.strip()


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chromium()  # skip or fail before the run, not after
    path = tmp_path_factory.mktemp("html") / "report.html"
    done = pytest_run(
        "--echo-impl",
        SEED_UPPER,
        "--echo-impl",
        REFERENCE,
        "-k",
        SELECTION,
        f"--echo-html={path}",
        timeout=300,
    )
    assert done.returncode == 1, done.stdout[-3000:]
    return path


def test_the_browser_shows_the_matrix_and_a_diagram_per_failure(report: Path) -> None:
    page = Page()
    page.feed(run_browser("--dump-dom", report.as_uri()))
    assert page.headers == ["seed_upper_server", "select_server"]
    shown = {c["data-ev"]: (c["text"], c["class"]) for c in page.cells}
    assert len(shown) == 20
    seed = {f"ECHO-{i}": shown[f"ev-0-ECHO-{i}"][0] for i in range(1, 11)}
    assert seed == {
        "ECHO-1": "PASS",
        "ECHO-2": "not judged",
        "ECHO-3": "not judged",
        "ECHO-4": "FAIL",
        "ECHO-5": "FAIL",
        "ECHO-6": "FAIL",
        "ECHO-7": "not judged",
        "ECHO-8": "not judged",
        "ECHO-9": "not judged",
        "ECHO-10": "not judged",
    }
    assert shown["ev-1-ECHO-1"][0] == shown["ev-1-ECHO-3"][0] == "PASS"
    failures = [ev for ev, (text, _) in shown.items() if text == "FAIL"]
    assert failures == ["ev-0-ECHO-4", "ev-0-ECHO-5", "ev-0-ECHO-6"]
    assert {ev: page.diagrams.get(ev, 0) for ev in failures} == dict.fromkeys(failures, 1)
    assert sum(page.diagrams.values()) == len(failures)
    # The page's script ran: it opened the first failure and marked its cell.
    current = [c["data-ev"] for c in page.cells if c.get("aria-current") == "true"]
    assert current == ["ev-0-ECHO-4"]


def test_the_browser_draws_a_failure(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    run_browser(f"--screenshot={shot}", "--window-size=1200,1700", report.as_uri() + "#ev-0-ECHO-5")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    keep = os.environ.get("REPORT_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)
