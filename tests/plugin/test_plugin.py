"""The user's view: `pytest --echo-server-cmd/--echo-impl` from the repository root.

Each test runs pytest in a subprocess, exactly as a user would, and checks
the exit status, the messages, the JSON report, the regression files and
the replay command.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest
from runs import PY, ROOT, pytest_run


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--echo-server-cmd", "python myserver.py"], "has no '{port}' placeholder"),
        (["--echo-server-cmd", ""], "argument --echo-server-cmd: the command is empty"),
        (["--echo-server-cmd", "   "], "argument --echo-server-cmd: the command is empty"),
        (["--echo-impl", ""], "argument --echo-impl: '' should be MODULE:CLASS"),
        (
            ["--echo-impl", "impl.select_server:SelectEchoServer", "--echo-server-cmd", " "],
            "the command is empty",
        ),
        (["--echo-impl", "no_such_module:Server"], "cannot import module 'no_such_module'"),
        (["--echo-impl", "impl.select_server"], "should be MODULE:CLASS"),
        (["--echo-impl", "impl.select_server:NoSuchClass"], "has no 'NoSuchClass'"),
        (["--echo-impl", "impl.select_server:FD_SETSIZE"], "is not a steppable server class"),
        *[
            (
                ["--echo-impl", "impl.select_server:SelectEchoServer", f"--echo-settle={value}"],
                "argument --echo-settle: must be a positive number of seconds",
            )
            for value in ("0", "-1", "nan", "inf", "-inf", "soon")
        ],
        (
            [
                "--echo-impl",
                "impl.select_server:SelectEchoServer",
                "--echo-report=/nonexistent-dir/r.json",
            ],
            "--echo-report: directory '/nonexistent-dir' does not exist",
        ),
        (
            [
                "--echo-impl",
                "impl.select_server:SelectEchoServer",
                "--echo-html=pyproject.toml/r.html",
            ],
            "--echo-html: directory 'pyproject.toml' does not exist",
        ),
        (
            ["--echo-impl", "impl.select_server:SelectEchoServer", "--echo-html=/proc/r.html"],
            "--echo-html: cannot write in '/proc'",
        ),
        (
            ["--echo-impl", "impl.select_server:SelectEchoServer", "--echo-report=tests"],
            "should be a file",
        ),
        (
            [
                "--echo-impl",
                "impl.select_server:SelectEchoServer",
                "--echo-regressions=pyproject.toml",
            ],
            "--echo-regressions 'pyproject.toml' is not a directory",
        ),
        (["--echo-targets=no-such-file.toml"], "cannot read it"),
        (["--echo-targets=pyproject.toml"], "should hold [[target]] tables"),
        (
            [
                "--echo-impl",
                "impl.select_server:SelectEchoServer",
                "--echo-example-db=redis://127.0.0.1:1/0",
            ],
            "the Redis server does not answer",
        ),
        (
            [
                "--echo-impl",
                "impl.select_server:SelectEchoServer",
                "--echo-example-db=pyproject.toml",
            ],
            "is a file; give a directory",
        ),
    ],
)
def test_bad_options_are_one_clear_line(args: list[str], message: str) -> None:
    done = pytest_run(*args, timeout=60)
    assert done.returncode == 4, done.stdout + done.stderr  # pytest's usage error
    # Found at configure time: "ERROR: MESSAGE"; by argparse: "pytest: error: argument ...".
    errors = [s for s in done.stderr.splitlines() if s.startswith("ERROR") or ": error: " in s]
    assert len([s for s in errors if message in s]) == 1, done.stderr
    assert "test session starts" not in done.stdout  # refused before anything ran


def test_a_server_that_cannot_start_stops_its_target_at_once_with_one_line() -> None:
    command = f"{PY} -c 'import sys; sys.exit(\"boom\")' {{port}}"
    done = pytest_run("--echo-server-cmd", command, "-k", "ECHO-1 or ECHO-2 or ECHO-3", timeout=60)
    assert done.returncode == 1, done.stdout  # incomplete
    # Tried once: the four requirements (ECHO-10 too) are skipped with the same line.
    [line] = [s for s in done.stdout.splitlines() if s.startswith("SKIPPED")]
    assert line.startswith("SKIPPED [4]"), done.stdout
    assert f": {Path(PY).name}: cannot start the server" in line
    assert "cannot start the server" in line and "exited with exit status 1" in line
    assert "boom" in line  # the stderr tail
    assert "verdict: INCOMPLETE" in done.stdout


def test_a_missing_program_is_named() -> None:
    done = pytest_run(
        "--echo-server-cmd",
        "no-such-program-xyz {port}",
        "-k",
        "ECHO-1 and not ECHO-10",
        timeout=60,
    )
    assert done.returncode == 1
    assert (
        "cannot start the server: cannot run 'no-such-program-xyz': no such program" in done.stdout
    )


def test_the_installed_plugin_works_from_any_directory(tmp_path: Path) -> None:
    """The pytest11 entry point: a user's own directory, no conftest, no test files."""
    done = pytest_run(
        "--echo-impl",
        "impl.select_server:SelectEchoServer",
        "-k",
        "ECHO-1 and not ECHO-10",
        timeout=120,
        cwd=tmp_path,
    )
    assert "ECHO-1   MUST   Transform         PASS" in done.stdout, done.stdout + done.stderr
    assert done.returncode == 1  # the other MUSTs were not judged


def test_a_partial_run_is_incomplete_not_a_pass(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    done = pytest_run(
        "--echo-impl",
        "impl.select_server:SelectEchoServer",
        "-k",
        "ECHO-1 and not ECHO-10 or ECHO-9",
        f"--echo-report={report}",
    )
    assert done.returncode == 1, done.stdout
    assert "verdict: INCOMPLETE" in done.stdout
    assert "select_server: not judged ECHO-2, ECHO-3, ECHO-4" in done.stdout
    data = json.loads(report.read_text())
    assert data["target"] == "impl.select_server:SelectEchoServer"
    assert data["name"] == "select_server"
    assert data["verdict"] == "incomplete"
    assert set(data["requirements"]) == {f"ECHO-{i}" for i in range(1, 11)}
    assert data["requirements"]["ECHO-1"]["verdict"] == "pass"
    assert data["requirements"]["ECHO-9"]["level"] == "SHOULD"
    assert "CPU seconds" in data["requirements"]["ECHO-9"]["detail"]
    assert data["requirements"]["ECHO-2"]["verdict"] == "not-run"
    assert "deselected by -k" in data["not_judged"]["ECHO-2"]
    assert "ECHO-1" not in data["not_judged"]


def test_every_must_judged_and_passed_is_a_pass(tmp_path: Path) -> None:
    """The SHOULDs left out do not count against the verdict."""
    report = tmp_path / "report.json"
    done = pytest_run(
        "--echo-impl",
        "impl.select_server:SelectEchoServer",
        "-n",
        "2",
        "-k",
        "not ECHO-8 and not ECHO-9 and not ECHO-10",
        "--echo-budget=5",  # a pass over the programs that fit is still a pass
        f"--echo-report={report}",
    )
    assert done.returncode == 0, done.stdout
    data = json.loads(report.read_text())
    assert data["verdict"] == "pass"
    assert set(data["not_judged"]) == {"ECHO-8", "ECHO-9", "ECHO-10"}


def test_a_failure_is_reported_replayable_and_written_as_a_regression(tmp_path: Path) -> None:
    report, regressions = tmp_path / "report.json", tmp_path / "regressions"
    done = pytest_run(
        "--echo-impl",
        "impl.seed_upper_server:SeedUpperServer",
        "-k",
        "ECHO-5",
        f"--echo-report={report}",
        f"--echo-regressions={regressions}",
    )
    assert done.returncode == 1
    out = done.stdout
    assert "ECHO-5 (MUST, Resilience) fails" in out
    assert "ConnectionResetError" in out
    assert "c0 = state.connect()\n    state.abort(c0)" in out
    entry = json.loads(report.read_text())["requirements"]["ECHO-5"]
    assert entry["verdict"] == "fail"
    assert entry["counterexample"] == "c0 = state.connect()\nstate.abort(c0)"
    # (b) one command replays it.
    replay = subprocess.run(
        shlex.split(entry["replay"].replace("python", PY, 1)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "reproduced" in replay.stdout
    # (c) a standalone pytest file replays it without Hypothesis.
    [written] = regressions.glob("test_regression_*.py")
    again = pytest_run(str(written), timeout=60)
    assert again.returncode == 0, again.stdout


def test_a_failed_should_counts_only_with_strict() -> None:
    args = ("--echo-impl", "impl.seed_upper_server:SeedUpperServer", "-k", "ECHO-8")
    lenient = pytest_run(*args)
    assert "1 xfailed" in lenient.stdout, lenient.stdout
    assert "ECHO-8   SHOULD Bounded memory    xfail" in lenient.stdout
    assert "verdict: INCOMPLETE" in lenient.stdout  # the MUSTs were not run
    strict = pytest_run(*args, "--echo-strict")
    assert strict.returncode == 1, strict.stdout
    assert "ECHO-8   SHOULD Bounded memory    FAIL" in strict.stdout
    assert "verdict: FAIL" in strict.stdout


def test_replay_rejects_what_is_not_a_program() -> None:
    done = subprocess.run(
        [
            PY,
            "-m",
            "spec.replay",
            "--impl",
            "impl.select_server:SelectEchoServer",
            "--expect",
            "ECHO-1",
            "import os",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3  # an invalid program (spec/replay.py)
    assert "not a step of a conformance program" in done.stderr
