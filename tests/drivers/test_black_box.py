"""The process driver's mechanisms, each shown by a server that needs it.

Servers written elsewhere are checked black-box: the kernel says when they
are done (spec/drivers/process.py), everything they start is contained
(spec/drivers/server_process.py) and they run in the checker's own network
(spec/drivers/network.py).  Each test here fails without its mechanism.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import psutil
import pytest
from harness import SERVERS
from hypothesis import settings
from runs import ROOT

from spec.checker import check
from spec.drivers.network import PrivateNetwork
from spec.drivers.server_process import ServerProcess, ServerStartError, containment
from spec.replay import run_program
from spec.targets import Target

PY = sys.executable
SMALL = settings(max_examples=15, stateful_step_count=10, derandomize=True, database=None)

contained = pytest.mark.skipif(
    containment().startswith("process group"), reason="PID namespaces are not allowed here"
)
private = pytest.mark.skipif(
    PrivateNetwork.shared() is None, reason="network namespaces are not allowed here"
)


def zoo(name: str) -> Target:
    return Target("cmd", f"{PY} -m spec.drivers.run_impl {name} --port {{port}}")


def marked(marker: str) -> dict[psutil.Process, str]:
    """Running processes whose environment carries `marker`, with their command lines."""
    found = {}
    for p in psutil.process_iter():
        if p.pid == os.getpid():
            continue
        try:
            if p.environ().get("ECHO_TEST_MARKER") == marker and p.status() != "zombie":
                found[p] = " ".join(p.cmdline())
        except (psutil.Error, OSError):
            continue
    return found


def gone(marker: str, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while marked(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def marker(monkeypatch: pytest.MonkeyPatch):
    """A marker in the environment of every process the test starts; all ended after it."""
    value = uuid.uuid4().hex
    monkeypatch.setenv("ECHO_TEST_MARKER", value)
    monkeypatch.setenv("PATH", f"{Path(PY).parent}{os.pathsep}{os.environ['PATH']}")
    yield value
    for p in marked(value):
        with contextlib.suppress(psutil.Error):
            p.kill()


# -- exact cleanup ------------------------------------------------------------------------


@private
def test_a_forking_server_with_socketpairs_passes_cleanup() -> None:
    """Per-connection processes own several sockets; only the ended connection's counts."""
    outcome = check(
        Target("cmd", f"{PY} {SERVERS / 'forking_server.py'} {{port}}"),
        "ECHO-6",
        hypothesis_settings=SMALL,
    )
    assert outcome.verdict == "pass", outcome.detail


@private
def test_a_socket_never_closed_after_eof_is_named_with_its_state() -> None:
    outcome = check(
        Target("cmd", f"{PY} -m impl.seed_upper_server --port {{port}}"),
        "ECHO-6",
        hypothesis_settings=SMALL,
    )
    assert outcome.verdict == "fail"
    assert "CLOSE_WAIT" in outcome.detail or "CLOSE" in outcome.detail, outcome.detail


# -- the right requirement ----------------------------------------------------------------


@private
def test_a_lifo_queue_is_echo_2_and_not_echo_1() -> None:
    """Never ECHO-1.  Its ECHO-1 programs pass, or, where one of them shows the
    reordering (two echoes queued at once, more likely on a loaded machine: seen
    in CI), ECHO-1 is masked by ECHO-2."""
    target = zoo("impl.zoo.stream:LifoQueueServer")
    assert check(target, "ECHO-2", hypothesis_settings=SMALL, budget=20).verdict == "fail"
    transform = check(target, "ECHO-1", hypothesis_settings=SMALL, budget=20)
    assert transform.verdict == "pass" or (
        transform.verdict == "not-run" and transform.masked_by == "ECHO-2"
    ), transform.detail


@private
def test_a_blocking_send_is_echo_7_at_once() -> None:
    """Asleep in send() to a client that does not read while another is owed echo.

    A fixed program, not generated ones: whether a generated program fills
    the buffers at the moment the other client is owed depends on timing
    (docs/killrate.md measures the search); this tests what the driver sees.
    """
    started = time.monotonic()
    violation = run_program(
        zoo("impl.zoo.liveness:SendallEchoServer"),
        "ECHO-7",
        [
            "c0 = state.connect()",
            "c1 = state.connect()",
            "state.flood(c0, Payload(b'x', 300000))",
            "state.send(c1, Payload(b'a'))",
        ],
    )
    assert violation is not None
    assert "asleep in sendto()" in violation.summary, violation.summary
    assert time.monotonic() - started < 15


def test_an_accept_loop_that_only_logs_emfile_is_echo_10() -> None:
    """The server starts with a soft limit of 1,024 descriptors, whatever the checker's own."""
    outcome = check(zoo("impl.zoo.resources:LogAcceptErrorsServer"), "ECHO-10")
    assert outcome.verdict == "fail", outcome.detail
    assert "neither served nor closed" in outcome.detail, outcome.detail


def test_an_idle_timeout_is_echo_2() -> None:
    outcome = check(
        Target("cmd", f"{PY} {SERVERS / 'idle_timeout_server.py'} {{port}}"),
        "ECHO-2",
        hypothesis_settings=SMALL,
        budget=5,  # the idle program runs after the generated ones, whatever they took
    )
    assert outcome.verdict == "fail"
    assert "state.idle(c0, 6)" in outcome.program
    assert "closed a connection the client had not closed" in outcome.detail


def test_a_requirement_masked_by_a_crash_is_not_judged_and_says_why() -> None:
    outcome = check(
        Target("impl", "impl.zoo.resilience:UncaughtResetServer"),
        "ECHO-6",
        hypothesis_settings=SMALL,
    )
    if outcome.verdict == "not-run":
        assert outcome.masked_by == "ECHO-5"
        assert "ECHO-5" in outcome.detail and "fix ECHO-5" in outcome.detail
    else:  # some programs end without a reset: then ECHO-6 is judged on those
        assert outcome.verdict == "pass"


def test_the_budget_bounds_a_check() -> None:
    start = time.monotonic()
    outcome = check(
        Target("cmd", f"{PY} -m impl.select_server --port {{port}}"),
        "ECHO-5",
        hypothesis_settings=settings(max_examples=1000, stateful_step_count=15, database=None),
        budget=3,
    )
    assert time.monotonic() - start < 20
    assert outcome.verdict == "pass"
    assert "time budget ran out" in outcome.detail


@private
def test_the_report_names_the_network_and_its_buffers() -> None:
    outcome = check(
        Target("cmd", f"{PY} -m impl.select_server --port {{port}}"),
        "ECHO-1",
        hypothesis_settings=SMALL,
    )
    network = outcome.environment["network"]
    assert network["namespace"].startswith("private")
    assert network["tcp_wmem"] == list(PrivateNetwork.tcp_wmem)
    assert outcome.environment["judged"].startswith("at rest")


# -- containment --------------------------------------------------------------------------


@contained
def test_a_daemonizing_server_is_refused_and_leaves_nothing(marker: str) -> None:
    command = f"{PY} {SERVERS / 'daemonizing_server.py'} {{port}}"
    with pytest.raises(ServerStartError, match="goes into the background"):
        ServerProcess(command).start()
    assert gone(marker)


@contained
def test_a_server_in_a_new_session_ends_with_the_check(marker: str) -> None:
    server = ServerProcess(f"setsid {PY} -m impl.select_server --port {{port}}")
    try:
        server.start()
    except ServerStartError:
        pass  # setsid forks when it is a group leader: the command exits, refused
    finally:
        server.close()
    assert gone(marker)


CHECKER = textwrap.dedent("""
    import sys
    from hypothesis import settings
    from spec.checker import check
    from spec.targets import Target
    check(Target("cmd", sys.argv[1]), "ECHO-5", budget=None,
          hypothesis_settings=settings(max_examples=10**6, database=None))
""")


@contained
@pytest.mark.parametrize(
    "how", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=["SIGKILL", "SIGTERM", "SIGINT"]
)
def test_a_launcher_script_leaves_nothing_when_the_checker_is_ended(
    marker: str, how: signal.Signals
) -> None:
    """A server behind `sh` without exec, the checker killed or interrupted mid-run."""
    command = f"{SERVERS / 'launcher.sh'} {{port}}"
    checker = subprocess.Popen(
        [PY, "-c", CHECKER, command],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_as_from_a_terminal,
    )
    try:
        deadline = time.monotonic() + 30
        while sum("impl.select_server" in line for line in marked(marker).values()) < 2:
            assert time.monotonic() < deadline, "the check never started its servers"
            time.sleep(0.05)
        checker.send_signal(how)
        checker.wait(timeout=30)
    finally:
        checker.kill()
        checker.wait()
    assert gone(marker), list(marked(marker).values())


def _as_from_a_terminal() -> None:
    """A terminal delivers Ctrl-C: undo the SIG_IGN that a non-interactive
    shell gives background jobs (`.ci/run &`, `nohup ... &`), which exec keeps
    and which would make the checker ignore the SIGINT these tests send."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


#: Ctrl-C rounds in the default run (the closing measurement ran 10: CTRL_C_RUNS=10).
CTRL_C_RUNS = int(os.environ.get("CTRL_C_RUNS", "1"))


@contained
def test_ctrl_c_on_a_parallel_run_leaves_nothing(marker: str) -> None:
    """Ctrl-C reaches pytest and its xdist workers (the terminal's process group)
    while they run a launcher-script server: nothing may be left."""
    command = f"{SERVERS / 'launcher.sh'} {{port}}"
    for _ in range(CTRL_C_RUNS):
        run = subprocess.Popen(
            [
                PY,
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                "-q",
                "-n",
                "2",
                "--echo-server-cmd",
                command,
                "--echo-budget=600",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_as_from_a_terminal,
        )
        try:
            deadline = time.monotonic() + 60
            while sum("impl.select_server" in line for line in marked(marker).values()) < 3:
                assert time.monotonic() < deadline, "the run never started its servers"
                time.sleep(0.05)
            os.killpg(run.pid, signal.SIGINT)
            run.wait(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        assert gone(marker), list(marked(marker).values())
