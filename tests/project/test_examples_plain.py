"""examples/plain/: plain echo servers in five languages, checked with the identity transform.

Three are published examples, unchanged but for where the port comes from
(Node's `net` documentation, Python's asyncio documentation, Oracle's Java
Tutorials); two were written here in the common shape of their language (C
with poll(), Rust with a thread per connection).  Each is built or run where
its toolchain is present, and skipped with the reason where it is not.  The
published ones show real defects, pinned here: Node's greets every client
(7 bytes that are not echo), asyncio's answers one read and closes, and the
Java Tutorials' serves one client and exits.  The default run checks what
each is known for in a few seconds; ``-m slow`` checks more requirements.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings
from runs import ROOT

from spec.checker import check
from spec.drivers.server_process import ServerStartError
from spec.model import IDENTITY
from spec.targets import Target

PLAIN = ROOT / "examples" / "plain"
QUICK = settings(max_examples=12, stateful_step_count=10, derandomize=True, database=None)
#: Seconds each requirement may take (generated programs and shrinking).
BUDGET = 15


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def _built(tmp: Path, compiler: str, *args: str) -> Path:
    out = tmp / Path(args[-1]).stem
    done = subprocess.run(
        [_tool(compiler), *args[:-1], "-o", str(out), args[-1]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("plain")

    def command(example: str) -> str:
        """The command that runs one example on {port}, built first where it must be."""
        source = str(PLAIN / example)
        if example.endswith(".c"):
            return f"{shlex.quote(str(_built(tmp, 'cc', '-O2', source)))} {{port}}"
        if example.endswith(".rs"):
            return f"{shlex.quote(str(_built(tmp, 'rustc', '-O', source)))} {{port}}"
        if example.endswith(".js"):
            return f"{shlex.quote(_tool('node'))} {shlex.quote(source)} {{port}}"
        if example.endswith(".java"):
            return f"{shlex.quote(_tool('java'))} {shlex.quote(source)} {{port}}"
        return f"{shlex.quote(sys.executable)} {shlex.quote(source)} {{port}}"

    return command


def _check(command: str, req_id: str):  # type: ignore[no-untyped-def]
    target = Target("cmd", command, transform=IDENTITY)
    return check(target, req_id, hypothesis_settings=QUICK, budget=BUDGET)


@pytest.mark.parametrize("example", ["echo_poll.c", "echo_threads.rs"])
def test_a_plain_echo_passes_identity(build, example: str) -> None:  # type: ignore[no-untyped-def]
    outcome = _check(build(example), "ECHO-1")
    assert outcome.verdict == "pass", outcome.detail + "\n" + outcome.counterexample


@pytest.mark.slow  # about 10 s a requirement
@pytest.mark.parametrize("req_id", ["ECHO-2", "ECHO-4", "ECHO-5"])
@pytest.mark.parametrize("example", ["echo_poll.c", "echo_threads.rs"])
def test_a_plain_echo_passes_more_requirements(build, example: str, req_id: str) -> None:  # type: ignore[no-untyped-def]
    outcome = _check(build(example), req_id)
    assert outcome.verdict == "pass", outcome.detail + "\n" + outcome.counterexample


def test_nodes_documented_server_greets_each_client(build) -> None:  # type: ignore[no-untyped-def]
    """`c.write('hello\\r\\n')` before `c.pipe(c)`: seven bytes that are no echo."""
    outcome = _check(build("echo_server.js"), "ECHO-2")
    assert outcome.verdict == "fail", outcome.detail
    assert "received 7 bytes more than the echo of what was sent" in outcome.detail
    assert "--transform identity" in outcome.replay


def test_asyncios_documented_server_answers_once_and_closes(build) -> None:  # type: ignore[no-untyped-def]
    """`await reader.read(100)`, write it back, `writer.close()`: one answer a connection."""
    outcome = _check(build("asyncio_echo.py"), "ECHO-2")
    assert outcome.verdict == "fail", outcome.detail
    assert "server closed a connection the client had not closed" in outcome.detail


def test_the_java_tutorials_server_serves_one_client_and_exits(build) -> None:  # type: ignore[no-untyped-def]
    """`serverSocket.accept()` once, then the try block ends: the checker's own
    connection to see that it listens is its only client, so it is refused at
    start, or (when the checker saw it listening before it exited) fails."""
    try:
        outcome = _check(build("EchoServer.java"), "ECHO-1")
    except ServerStartError as e:
        assert "exited with exit status 0" in str(e)
    else:
        assert outcome.verdict != "pass", outcome.detail
