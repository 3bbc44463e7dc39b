"""The reference server as a command: real clients, many connections, resources.

``python -m impl.select_server`` runs in its own process (`ServerProcess`, the
`reference_process` fixture; `roomy_process` gives it and the test a descriptor
limit past FD_SETSIZE) and is driven by nc, socat and plain blocking sockets,
while psutil watches it from outside: RSS under a 64 MiB flood from a client that
never reads (ECHO-8), 1,000 connections at once and refusal past FD_SETSIZE
(ECHO-10), CPU time when idle, and descriptors and TCP states once clients have
gone (ECHO-6).
"""

from __future__ import annotations

import random
import re
import resource
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import psutil
import pytest
from harness import (
    HOST,
    REFERENCE_CMD,
    MiB,
    echo_or_refusal,
    read_to_eof,
    recv_exactly,
    reset,
    roundtrip,
)

from impl.select_server import FD_SETSIZE
from spec.drivers.server_process import ServerProcess


def ensure_nofile(needed: int) -> None:
    """Raise this process's soft RLIMIT_NOFILE to `needed` if it is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below the {needed} this test needs")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


@pytest.fixture
def roomy_process() -> Iterator[ServerProcess]:
    """`reference_process` with a descriptor limit well past FD_SETSIZE (so is the test's)."""
    ensure_nofile(2 * FD_SETSIZE + 512)
    with ServerProcess(REFERENCE_CMD) as sp:
        yield sp


def wait_until_only_listening(sp: ServerProcess, *, timeout: float = 10.0) -> None:
    """Poll (bounded) until the server holds no TCP socket but its listener."""
    deadline = time.monotonic() + timeout
    while True:
        states = [c.status for c in sp.connections()]
        if states == [psutil.CONN_LISTEN]:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"after {timeout:g} s the server still holds TCP sockets in "
                f"states {sorted(set(states))} ({len(states)} sockets)"
            )
        time.sleep(0.05)  # polling interval of a bounded wait


CLIENT_PAYLOAD = b"hello, World! \x00\xff\r\n" + bytes(range(256)) + random.Random(7).randbytes(MiB)


def _nc_argv(port: int) -> list[str]:
    nc = shutil.which("nc") or shutil.which("netcat")
    if nc is None:
        pytest.skip("nc is not installed (Debian: apt-get install netcat-openbsd)")
    usage = subprocess.run([nc, "-h"], capture_output=True, timeout=10)
    text = (usage.stdout + usage.stderr).decode(errors="replace")
    if not re.search(r"^\s*-N\b", text, re.MULTILINE):
        pytest.skip(
            f"{nc} has no -N (shut down the socket after EOF on stdin); "
            "only OpenBSD netcat's -N is supported here"
        )
    return [nc, "-N", HOST, str(port)]


def _pipe_through(argv: list[str], sp: ServerProcess) -> None:
    """Run the client `argv` twice, on CLIENT_PAYLOAD and on b"abc": each prints the echo."""
    done = subprocess.run(argv, input=CLIENT_PAYLOAD, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == CLIENT_PAYLOAD.upper()
    small = subprocess.run(argv, input=b"abc", capture_output=True, timeout=30)
    assert small.stdout == b"ABC"
    assert sp.alive


def test_nc_client(reference_process: ServerProcess) -> None:
    _pipe_through(_nc_argv(reference_process.port), reference_process)


def test_socat_client(reference_process: ServerProcess) -> None:
    socat = shutil.which("socat")
    if socat is None:
        pytest.skip("socat is not installed (Debian: apt-get install socat)")
    # -t: after EOF on stdin, wait this long for the server's EOF.
    argv = [socat, "-t", "20", "-", f"TCP:{HOST}:{reference_process.port},shut-down"]
    _pipe_through(argv, reference_process)


def test_flood_from_a_non_reading_client_keeps_memory_bounded(
    reference_process: ServerProcess,
) -> None:
    """ECHO-8 and ECHO-7: 64 MiB pushed at a client that never reads."""
    address = reference_process.address
    assert roundtrip(address, b"warm up " * 50_000) == b"WARM UP " * 50_000
    baseline = reference_process.memory_rss()
    peak = baseline
    pushed = 0
    total = 64 * MiB
    block = random.Random(64).randbytes(256 * 1024)
    with (
        socket.create_connection(address, timeout=5.0) as flooder,
        socket.create_connection(address, timeout=5.0) as other,
    ):
        flooder.setblocking(False)
        deadline = time.monotonic() + 15.0
        last_progress = time.monotonic()
        next_sample = 0.0
        while pushed < total and time.monotonic() < deadline:
            try:
                pushed += flooder.send(block)
                last_progress = time.monotonic()
            except BlockingIOError:
                if time.monotonic() - last_progress > 1.0:
                    break  # the send buffer has stayed full: the server stopped reading
                select.select([], [flooder], [], 0.05)
            if time.monotonic() >= next_sample:
                peak = max(peak, reference_process.memory_rss())
                next_sample = time.monotonic() + 0.1
        peak = max(peak, reference_process.memory_rss())
        # While the flooder still holds its backlog, another client is served.
        other.sendall(b"still served?")
        assert recv_exactly(other, 13, time.monotonic() + 5.0) == b"STILL SERVED?"
        growth = peak - baseline
        print(
            f"\n64 MiB flood: pushed {pushed / MiB:.1f} MiB before the send buffer stayed "
            f"full; RSS growth {growth / MiB:.2f} MiB (baseline {baseline / MiB:.1f} MiB)"
        )
        assert growth < 32 * MiB, f"RSS grew by {growth / MiB:.1f} MiB"
        assert reference_process.alive


def open_in_batches(
    address: tuple[str, int],
    n: int,
    socks: list[socket.socket],
    *,
    batch: int = 50,
    timeout: float = 30.0,
) -> list[str]:
    """Open `n` connections (appended to `socks`, which the caller closes), `batch` at a
    time, and after each batch send a message on each new one and read the outcome
    (`echo_or_refusal`).

    Waiting for each batch's echoes keeps the listen queue short: connecting all
    at once would overflow it while the server is busy, and the kernel would drop
    SYNs that are retried only after 1 s, 3 s, 7 s...
    """
    deadline = time.monotonic() + timeout
    outcomes: list[str] = []
    while len(outcomes) < n:
        first = len(socks)
        for _ in range(min(batch, n - len(outcomes))):
            socks.append(socket.create_connection(address, timeout=10.0))
        for i in range(first, len(socks)):
            outcomes.append(echo_or_refusal(socks[i], b"connection %04d: abc-xyz" % i, deadline))
    return outcomes


def test_1000_simultaneous_connections_each_echo_correctly(roomy_process: ServerProcess) -> None:
    n = 1000
    started = time.monotonic()
    socks: list[socket.socket] = []
    try:
        outcomes = open_in_batches(roomy_process.address, n, socks)
        assert outcomes == ["served"] * n
        # With all 1,000 open: a second round on every connection, sent in
        # reverse order, then read.
        messages = [f"connection {i:04d} of many: abc-xyz-{i}".encode() for i in range(n)]
        deadline = time.monotonic() + 30.0
        for s, m in zip(reversed(socks), reversed(messages), strict=True):
            s.sendall(m[::-1])
        for s, m in zip(socks, messages, strict=True):
            assert recv_exactly(s, len(m), deadline) == m[::-1].upper()
        established = sum(
            1 for c in roomy_process.connections() if c.status == psutil.CONN_ESTABLISHED
        )
        assert established >= n
    finally:
        for s in socks:
            s.close()
    print(f"\n1,000 connections: connected and echoed twice in {time.monotonic() - started:.2f} s")
    assert roomy_process.alive


def test_connections_beyond_fd_setsize_are_refused_cleanly(roomy_process: ServerProcess) -> None:
    n = FD_SETSIZE + 76  # 1,100
    socks: list[socket.socket] = []
    try:
        outcomes = open_in_batches(roomy_process.address, n, socks)
        assert "hung" not in outcomes
        served = outcomes.count("served")
        assert 1000 <= served < FD_SETSIZE, served
        assert outcomes[:served] == ["served"] * served, "a connection refused out of order"
        assert roomy_process.alive, roomy_process.stderr_tail()
        # The earlier connections keep working.
        deadline = time.monotonic() + 30.0
        for i in range(served):
            assert echo_or_refusal(socks[i], b"again %d" % i, deadline) == "served"
        # Free some descriptors: new connections are served again.
        for s in socks[served - 20 :]:
            s.close()
        deadline = time.monotonic() + 10.0
        while True:
            with socket.create_connection(roomy_process.address, timeout=5.0) as late:
                if echo_or_refusal(late, b"late", deadline) == "served":
                    break
            assert time.monotonic() < deadline, "no new connection served after freeing some"
    finally:
        for s in socks:
            s.close()
    assert roomy_process.alive
    tail = roomy_process.stderr_tail()
    # Its RLIMIT_NOFILE is past FD_SETSIZE: refused for select()'s sake, not EMFILE.
    assert "beyond select()'s limit" in tail, tail
    assert "Traceback" not in tail


def test_idle_connections_use_no_cpu(reference_process: ServerProcess) -> None:
    socks = [socket.create_connection(reference_process.address, timeout=5.0) for _ in range(10)]
    try:
        deadline = time.monotonic() + 10.0
        for i, s in enumerate(socks):
            s.sendall(b"idle %d" % i)
            assert recv_exactly(s, len(b"idle %d" % i), deadline) == b"IDLE %d" % i
        before = reference_process.cpu_seconds()
        time.sleep(1.0)  # a measuring window, not synchronisation
        cpu = reference_process.cpu_seconds() - before
    finally:
        for s in socks:
            s.close()
    print(f"\nidle CPU with 10 open connections over 1 s: {cpu:.3f} s")
    assert cpu < 0.05


def test_fds_return_to_baseline_and_no_close_wait(reference_process: ServerProcess) -> None:
    wait_until_only_listening(reference_process)  # ServerProcess's start-up probe is gone
    baseline = reference_process.num_fds()
    deadline = time.monotonic() + 10.0
    socks = [socket.create_connection(reference_process.address, timeout=5.0) for _ in range(60)]
    try:
        for i, s in enumerate(socks):
            s.sendall(b"fd %d" % i)
            assert recv_exactly(s, len(b"fd %d" % i), deadline) == b"FD %d" % i
        assert reference_process.num_fds() >= baseline + 60
        # End them three ways: close, half-close then EOF, reset.
        for i, s in enumerate(socks):
            if i % 3 == 0:
                s.close()
            elif i % 3 == 1:
                s.sendall(b"bye")
                s.shutdown(socket.SHUT_WR)
                assert read_to_eof(s, deadline) == b"BYE"
                s.close()
            else:
                s.sendall(b"unread echo")
                reset(s)
    finally:
        for s in socks:
            s.close()
    wait_until_only_listening(reference_process)  # no CLOSE_WAIT, nothing ESTABLISHED
    deadline = time.monotonic() + 10.0
    while reference_process.num_fds() != baseline:
        assert time.monotonic() < deadline, (
            f"after 10 s: {reference_process.num_fds()} descriptors, baseline {baseline}"
        )
        time.sleep(0.05)  # polling interval of a bounded wait
    assert reference_process.alive
