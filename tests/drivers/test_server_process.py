"""ServerProcess: start a server command on a free port, and always end it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time

import psutil
import pytest
from harness import HOST, REFERENCE_CMD, server_command
from hypothesis import settings
from runs import ROOT

from spec.checker import check
from spec.drivers.server_process import ServerProcess, ServerStartError, ServerSupply
from spec.drivers.sock_diag import listening_inodes
from spec.targets import Target

PY = sys.executable


def test_starts_serves_and_reports_its_resources() -> None:
    with ServerProcess(REFERENCE_CMD) as server:
        with socket.create_connection(server.address, timeout=5) as c:
            c.sendall(b"abc")
            assert c.recv(3) == b"ABC"
        assert server.alive
        assert server.num_fds() > 0 and server.memory_rss() > 0
        assert any(conn.status == "LISTEN" for conn in server.connections())
    assert not server.alive


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("python server.py", "has no '{port}' placeholder"),
        ("no-such-program-xyz {port}", "no such program"),
    ],
)
def test_unusable_commands_are_refused_at_once(command: str, message: str) -> None:
    start = time.monotonic()
    with pytest.raises(ServerStartError, match=message):
        ServerProcess(command).start()
    assert time.monotonic() - start < 2


def test_a_command_that_exits_shows_its_status_and_stderr() -> None:
    command = f"{PY} -c 'import sys; sys.stderr.write(\"port taken\"); sys.exit(3)' {{port}}"
    with pytest.raises(ServerStartError, match=r"(?s)exit status 3.*port taken"):
        ServerProcess(command).start()


def test_the_server_starts_with_the_descriptor_limit_asked_for() -> None:
    with ServerProcess(REFERENCE_CMD, descriptor_limit=256) as server:
        soft, hard = psutil.Process(server.pids()[-1]).rlimit(psutil.RLIMIT_NOFILE)
    assert soft == min(256, hard)
    assert hard == psutil.Process().rlimit(psutil.RLIMIT_NOFILE)[1]


def test_a_command_that_never_listens_is_given_up_on_in_bounded_time() -> None:
    server = ServerProcess("sleep 30 {port}", start_timeout=1)
    start = time.monotonic()
    with pytest.raises(ServerStartError, match=r"did not accept connections .* within 1 s"):
        server.start()
    assert time.monotonic() - start < 5
    assert server.process is not None and server.process.poll() is not None  # ended


def test_forked_children_are_ended_with_the_server() -> None:
    # A shell that leaves a child behind, then becomes the server.
    command = f"sh -c 'sleep 300 & exec {PY} -m impl.select_server --port {{port}}' "
    server = ServerProcess(command).start()
    try:
        children = [p for p in server.tree() if p.name() == "sleep"]
        assert children, [p.name() for p in server.tree()]
    finally:
        server.close()
    _, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"left running: {alive}"


def test_a_dead_server_is_described() -> None:
    server = ServerProcess(REFERENCE_CMD).start()
    try:
        server.process.kill()
        assert server.wait_dead(5)
        assert server.exit_description() == "signal SIGKILL"
        assert server.tree() == [] and server.num_fds() == 0
    finally:
        server.close()


def test_the_server_dies_with_a_killed_checker() -> None:
    """A checker killed mid-run (SIGKILL: no cleanup runs) leaves no server behind."""
    script = (
        "import sys, time\n"
        "from spec.drivers.server_process import ServerProcess\n"
        "s = ServerProcess(sys.executable + ' -m impl.select_server --port {port}').start()\n"
        "print(s.process.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    checker = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        server = psutil.Process(int(checker.stdout.readline()))
        checker.kill()
        checker.wait(10)
        gone, _ = psutil.wait_procs([server], timeout=10)
        assert gone, "the server outlived the checker that started it"
    finally:
        checker.kill()
        checker.wait()
        with contextlib.suppress(psutil.NoSuchProcess):
            server.kill()


def test_an_init_whose_first_process_dies_at_once_dies_too() -> None:
    """The first process of `pid_init.py` killed just after it forked the
    namespace's init, before the init armed PR_SET_PDEATHSIG: the init must see
    its parent gone and exit.  It held the pipe's write end it inherited, never
    saw EOF, and ran on with its server (a CI run left one: 10 processes in 300
    such kills before the fix, none after)."""
    init = str(ROOT / "spec" / "drivers" / "pid_init.py")
    marker = f"{sys.executable} -I -S {init} sleep 1000"
    first = subprocess.run([sys.executable, "-I", "-S", init, "true"], timeout=30, check=False)
    if first.returncode == 126:
        pytest.skip("no PID namespace here (pid_init.py cannot unshare)")
    try:
        for i in range(150):
            p = subprocess.Popen([*marker.split(" ")])
            time.sleep(0.012 + 0.0001 * i)  # around the fork of the init, as started here
            p.kill()
            p.wait()
        time.sleep(1)  # an init that saw EOF has exited by now
    finally:
        left = [
            q
            for q in psutil.process_iter(["cmdline"])
            if " ".join(q.info["cmdline"] or []) in (marker, "sleep 1000")
        ]
        for q in left:
            with contextlib.suppress(psutil.NoSuchProcess):
                q.kill()
    assert not left, f"{len(left)} processes outlived the first process that started them"


# -- ServerSupply: the next server starts while the current one is used ------------------


def _running(servers: list[ServerProcess]) -> list[int]:
    return [
        s.process.pid
        for s in servers
        if s.process is not None
        and psutil.pid_exists(s.process.pid)
        and psutil.Process(s.process.pid).status() != psutil.STATUS_ZOMBIE
    ]


def test_a_supply_hands_out_fresh_servers_and_ends_them_all() -> None:
    with ServerSupply(REFERENCE_CMD) as supply:
        first = supply.take()
        launched = supply._launched[0]
        assert launched is not None and launched.alive  # starting while `first` is used
        with socket.create_connection(first.address, timeout=5) as c:
            c.sendall(b"abc")
            assert c.recv(3) == b"ABC"
        supply.give_back(first)
        second = supply.take()
        assert second is launched and second.port != first.port
        assert first.wait_dead(5)
        supply.give_back(second)
        everything = [first, second, *supply._launched]
    assert _running(everything) == []
    assert all(s.process.returncode is not None for s in everything)  # reaped


def test_a_supply_reports_a_server_that_cannot_start_and_leaves_nothing() -> None:
    command = f"{PY} -c 'import sys; sys.stderr.write(\"no good\"); sys.exit(3)' {{port}}"
    with ServerSupply(command) as supply, pytest.raises(ServerStartError, match="no good"):
        supply.take()
    assert not supply._launched


def test_a_server_given_back_that_ignores_sigterm_is_killed_at_once() -> None:
    command = (
        f"{PY} -c 'import signal, socket, sys, time; signal.signal(signal.SIGTERM, "
        f'signal.SIG_IGN); s = socket.create_server(("127.0.0.1", int(sys.argv[1]))); '
        f"time.sleep(60)' {{port}}"
    )
    supply = ServerSupply(command)
    try:
        server = supply.take()
        start = time.monotonic()
        supply.give_back(server)
        assert server.wait_dead(5)
        assert time.monotonic() - start < 1
    finally:
        supply.close()
    assert server.exit_description() == "signal SIGKILL"


@pytest.mark.parametrize("module", ["impl.select_server", "impl.seed_upper_server"])
def test_a_process_check_leaves_no_process_behind(module: str) -> None:
    """Passing or failing, a check ends and reaps every server it started,
    the one launched in advance included."""
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    outcome = check(
        Target("cmd", server_command(module)),
        "ECHO-5",
        settle=1.0,
        hypothesis_settings=settings(
            max_examples=5, stateful_step_count=5, derandomize=True, database=None
        ),
    )
    assert outcome.verdict == ("pass" if module == "impl.select_server" else "fail")
    left = [p for p in me.children(recursive=True) if p.pid not in before]
    assert left == [], f"left behind (running or unreaped): {left}"


def test_a_stranger_listening_on_the_port_is_not_taken_for_the_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another process may bind the free port before the server does: the
    server then exits (EADDRINUSE), and the stranger's listener must not be
    taken for it."""
    with socket.create_server((HOST, 0)) as stranger:
        monkeypatch.setattr(
            "spec.drivers.server_process.free_port", lambda network=None: stranger.getsockname()[1]
        )
        command = f"{PY} -c 'import sys, time; time.sleep(0.3); sys.exit(3)' {{port}}"
        with pytest.raises(ServerStartError, match="exit status 3"):
            ServerProcess(command).start()


def test_listening_inodes_names_only_the_listener() -> None:
    with socket.create_server((HOST, 0)) as listener:
        port = listener.getsockname()[1]
        with socket.create_connection((HOST, port), timeout=5) as client:
            accepted, _ = listener.accept()
            with accepted:
                found = listening_inodes(port)
                assert found == {os.fstat(listener.fileno()).st_ino}
                assert os.fstat(client.fileno()).st_ino not in found
    assert listening_inodes(port) == set()


@pytest.mark.parametrize("sock_diag", [True, False])
def test_the_server_is_recognised_as_the_listener(
    monkeypatch: pytest.MonkeyPatch, sock_diag: bool
) -> None:
    if not sock_diag:  # the fallback: psutil's connection table
        monkeypatch.setattr("spec.drivers.server_process.listening_inodes", lambda port, **_: None)
    with ServerProcess(REFERENCE_CMD) as server:
        assert server._listens()
