"""The user's view: `pytest --server-cmd/--impl` from the repository root.

Each test runs pytest in a subprocess, exactly as a user would, and checks
the exit status, the messages, the JSON report, the regression files and
the replay command.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def pytest_run(*args: str, timeout: float = 300,
               cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(("args", "message"), [
    (["--server-cmd", "python myserver.py"], "has no '{port}' placeholder"),
    (["--impl", "no_such_module:Server"], "cannot import module 'no_such_module'"),
    (["--impl", "impl.select_server"], "should be MODULE:CLASS"),
    (["--impl", "impl.select_server:NoSuchClass"], "has no 'NoSuchClass'"),
    (["--impl", "impl.select_server:FD_SETSIZE"], "is not a steppable server class"),
    (["--impl", "impl.select_server:SelectEchoServer", "--server-cmd", "x {port}"],
     "not both"),
    (["--impl", "impl.select_server:SelectEchoServer", "--settle", "0"], "--settle"),
])
def test_bad_options_are_one_clear_line(args: list[str], message: str) -> None:
    done = pytest_run(*args, timeout=60)
    assert done.returncode == 4, done.stdout + done.stderr  # pytest's usage error
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and message in errors[0], done.stderr


@pytest.mark.parametrize(("command", "message"), [
    ("no-such-program-xyz {port}", "no such program"),
    (f"{PY} -c 'import sys; sys.exit(\"boom\")' {{port}}", "exited with exit status 1"),
])
def test_a_server_that_cannot_start_fails_with_its_reason(command: str, message: str) -> None:
    done = pytest_run("--server-cmd", command, "-k", "ECHO-1 and not ECHO-10", timeout=60)
    assert done.returncode == 1
    assert "cannot start the server" in done.stdout and message in done.stdout
    if "boom" in command:
        assert "boom" in done.stdout  # the stderr tail


def test_the_installed_plugin_works_from_any_directory(tmp_path: Path) -> None:
    """The pytest11 entry point: a user's own directory, no conftest, no test files."""
    done = pytest_run("--impl", "impl.select_server:SelectEchoServer", "-k",
                      "ECHO-1 and not ECHO-10", timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ECHO-1   MUST   Transform         PASS" in done.stdout


def test_reference_passes_with_a_report(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    done = pytest_run("--impl", "impl.select_server:SelectEchoServer", "-k",
                      "ECHO-1 and not ECHO-10 or ECHO-9", "--report", str(report))
    assert done.returncode == 0, done.stdout
    assert "conformance of --impl impl.select_server:SelectEchoServer" in done.stdout
    data = json.loads(report.read_text())
    assert data["target"] == "impl.select_server:SelectEchoServer"
    assert data["verdict"] == "pass"
    assert set(data["requirements"]) == {f"ECHO-{i}" for i in range(1, 11)}
    assert data["requirements"]["ECHO-1"]["verdict"] == "pass"
    assert data["requirements"]["ECHO-9"]["level"] == "SHOULD"
    assert "CPU seconds" in data["requirements"]["ECHO-9"]["detail"]
    assert data["requirements"]["ECHO-2"]["verdict"] == "not-run"


def test_a_failure_is_reported_replayable_and_written_as_a_regression(tmp_path: Path) -> None:
    report, regressions = tmp_path / "report.json", tmp_path / "regressions"
    done = pytest_run("--impl", "impl.seed_upper_server:SeedUpperServer", "-k", "ECHO-5",
                      "--report", str(report), "--regressions", str(regressions))
    assert done.returncode == 1
    out = done.stdout
    assert "ECHO-5 (MUST, Resilience) fails" in out
    assert "ConnectionResetError" in out
    assert "c0 = state.connect()\n    state.abort(c0)" in out
    entry = json.loads(report.read_text())["requirements"]["ECHO-5"]
    assert entry["verdict"] == "fail"
    assert entry["counterexample"] == "c0 = state.connect()\nstate.abort(c0)"
    # (b) one command replays it.
    replay = subprocess.run(shlex.split(entry["replay"].replace("python", PY, 1)), cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "reproduced" in replay.stdout
    # (c) a standalone pytest file replays it without Hypothesis.
    [written] = regressions.glob("test_regression_*.py")
    again = pytest_run(str(written), timeout=60)
    assert again.returncode == 0, again.stdout


def test_a_failed_should_counts_only_with_strict() -> None:
    args = ("--impl", "impl.seed_upper_server:SeedUpperServer", "-k", "ECHO-8")
    lenient = pytest_run(*args)
    assert lenient.returncode == 0 and "1 xfailed" in lenient.stdout, lenient.stdout
    assert "verdict: PASS (MUST requirements)" in lenient.stdout
    strict = pytest_run(*args, "--strict")
    assert strict.returncode == 1, strict.stdout
    assert "verdict: FAIL (all requirements)" in strict.stdout


def test_replay_rejects_what_is_not_a_program() -> None:
    done = subprocess.run([PY, "-m", "spec.replay", "--impl",
                           "impl.select_server:SelectEchoServer", "--expect", "ECHO-1",
                           "import os"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "not a step of a conformance program" in done.stderr
