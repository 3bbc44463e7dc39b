"""The reference server's command line (impl/_cli.py): arguments, errors, signals.

``python -m impl.select_server`` run as a user runs it: ``--help``; invalid
arguments, a port in use and a host that cannot be resolved each exit with
status 2 and one line on stderr, no traceback; ``--port 0`` prints the address
the kernel chose; ``--log-level WARNING`` logs nothing in normal use; SIGTERM
and SIGINT end the server cleanly (status 0), closing open connections.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
from harness import (
    HOST,
    read_line,
    read_to_eof,
    recv_exactly,
    roundtrip,
    running,
    server_command,
)

from spec.drivers.server_process import ServerProcess


def run_command(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "impl.select_server", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_port_in_use_exits_2_with_one_line() -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_command("--host", HOST, "--port", str(port), "--log-level", "WARNING")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"{HOST}:{port}" in lines[0]
    assert "in use" in lines[0]
    assert "listening" not in done.stdout


def test_unresolvable_host_exits_2_with_one_line() -> None:
    done = run_command("--host", "no-such-host.invalid", "--port", "0")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "no-such-host.invalid" in lines[0]
    assert lines[0].startswith("error: ")


def test_unresolvable_host_says_it_cannot_resolve() -> None:
    done = run_command("--host", "no-such-host.invalid", "--port", "0")
    assert done.returncode == 2
    assert "cannot resolve host 'no-such-host.invalid'" in done.stderr
    assert "while attempting to bind" not in done.stderr


def test_port_0_prints_the_address_and_warning_level_is_quiet() -> None:
    argv = [sys.executable, "-m", "impl.select_server", "--port", "0", "--log-level", "warning"]
    with tempfile.TemporaryFile() as stderr:
        with running(argv, stderr) as proc:
            line = read_line(proc, 10.0).decode()
            match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", line)
            assert match, line
            port = int(match.group(1))
            assert port != 0
            assert roundtrip((HOST, port), b"port zero") == b"PORT ZERO"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
        stderr.seek(0)
        assert stderr.read() == b"", "--log-level WARNING should log nothing here"


def test_help() -> None:
    done = run_command("--help")
    assert done.returncode == 0
    for word in ("usage:", "--host", "--port", "--log-level", "select()"):
        assert word in done.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("--port", "70000"),
        ("--port", "-1"),
        ("--port", "http"),
        ("--log-level", "LOUD"),
    ],
)
def test_invalid_arguments_exit_2(args: tuple[str, ...]) -> None:
    done = run_command(*args)
    assert done.returncode == 2
    assert "usage:" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_ends_the_server_cleanly(sig: signal.Signals) -> None:
    with ServerProcess(server_command("impl.select_server", "--log-level", "INFO")) as sp:
        assert sp.process is not None
        # An echo proves serve_forever() is running, so the handlers are installed.
        assert roundtrip(sp.address, b"ping") == b"PING"
        client = socket.create_connection(sp.address, timeout=5.0)
        with client:
            client.sendall(b"open")
            assert recv_exactly(client, 4, time.monotonic() + 5.0) == b"OPEN"
            sp.process.send_signal(sig)
            assert sp.process.wait(10) == 0
            # The open connection was closed by the server on its way out.
            assert read_to_eof(client, time.monotonic() + 5.0) == b""
        tail = sp.stderr_tail()
        assert f"received {sig.name}, shutting down" in tail
        assert "Traceback" not in tail
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(sp.address, timeout=5.0).close()
