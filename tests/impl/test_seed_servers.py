"""Pin the seed reproductions' behaviour: each documented defect, shown directly.

These are not the conformance checker.  They drive `impl.seed_echo_server` and
`impl.seed_upper_server` in-process, one select round at a time (`server.poll`), with
real client sockets on 127.0.0.1, so every defect shows deterministically.  Where the
server would block, a SIGALRM guard interrupts it; the commands are run with
ServerProcess, which always ends them.  Every loop is bounded, and every test is
guarded by an alarm, so nothing can hang.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import resource
import select
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator

import psutil
import pytest
from harness import (
    HOST,
    Hung,
    Rig,
    alarm_after,
    read_now,
    reset,
    server_command,
    step_read,
    step_until,
)

from impl.seed_echo_server import SeedEchoServer
from impl.seed_upper_server import SeedUpperServer
from spec.drivers.server_process import ServerProcess

SERVERS = [SeedEchoServer, SeedUpperServer]
#: Rounds for the loops that push megabytes (one 1024-byte recv per round).
BULK_ROUNDS = 50_000


# -- guards and helpers ---------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_test_hangs() -> Iterator[None]:
    """A last resort: each test's own waits are far shorter (generous for loaded hosts)."""
    with alarm_after(60.0):
        yield


def tcp_state(server, client: socket.socket) -> str | None:
    """This process's TCP state for the server's end of `client`'s connection."""
    local, remote = server.address[:2], client.getsockname()[:2]
    for c in psutil.Process(os.getpid()).net_connections(kind="tcp"):
        if c.laddr and c.raddr and tuple(c.laddr) == local and tuple(c.raddr) == remote:
            return c.status
    return None


def flood(
    server, client: socket.socket, until: Callable[[], bool], rounds: int = BULK_ROUNDS
) -> int:
    """Send as much as `client` can without it reading, one server round per send."""
    client.setblocking(False)
    chunk = b"a" * 65536
    pushed = 0
    for _ in range(rounds):
        if until():
            return pushed
        with contextlib.suppress(BlockingIOError):
            pushed += client.send(chunk)
        server.poll(0)
    assert until(), f"condition not reached in {rounds} rounds"
    return pushed


def drain_until_writable(client: socket.socket, conn: socket.socket, limit: int = 1 << 26) -> int:
    """Let `client` read until the server's `conn` is writable again; return bytes read."""
    client.setblocking(False)
    total = 0
    while not select.select([], [conn], [], 0)[1]:
        try:
            total += len(client.recv(65536))
        except BlockingIOError:
            time.sleep(0.001)
        assert total < limit
    return total


# -- both servers ----------------------------------------------------------------------


@pytest.mark.parametrize("cls", SERVERS)
def test_steppable_interface(rig: Rig, cls) -> None:
    server = rig.server(cls)
    assert server.address[0] == HOST and server.address[1] > 0
    assert server.inputs == [server.server] and server.outputs == []
    assert server.message_queues == {}
    assert server.poll(0) == 0


@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        (SeedEchoServer, b"abc Hello, \xe4\xb8\xad!"),  # ECHO-1: not uppercased
        (SeedUpperServer, b"ABC HELLO, \xe4\xb8\xad!"),
    ],
)
def test_transform(rig: Rig, cls, expected: bytes) -> None:
    server = rig.server(cls)
    c = rig.client(server)
    rig.accepted(server, c)
    c.sendall(b"abc Hello, \xe4\xb8\xad!")
    assert step_read(server, c, len(expected)) == expected


@pytest.mark.parametrize("cls", SERVERS)
def test_client_reset_kills_the_server(rig: Rig, cls) -> None:
    """ECHO-5: `data = r.recv(1024)` raises on an RST and nothing catches it."""
    server = rig.server(cls)
    c = rig.client(server)
    rig.accepted(server, c)
    reset(c)
    with pytest.raises(ConnectionResetError):
        step_until(server, lambda: False, rounds=10)


@pytest.mark.parametrize("cls", SERVERS)
def test_descriptor_beyond_fd_setsize_kills_the_server(rig: Rig, cls) -> None:
    """ECHO-10: a connection on descriptor >= 1024 makes select() raise ValueError."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1100:
        if hard != resource.RLIM_INFINITY and hard < 1100:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below 1100")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1100, hard))
    try:
        server = rig.server(cls)
        while not rig.fds or rig.fds[-1] < 1030:
            rig.fds.append(os.open(os.devnull, os.O_RDONLY))
        c = rig.client(server)
        with pytest.raises(ValueError, match="filedescriptor out of range in select"):
            step_until(server, lambda: False, rounds=10)
        assert max(s.fileno() for s in server.inputs) >= 1024
        assert c.fileno() >= 1024
    finally:
        rig.close()
        rig.fds.clear()
        rig.sockets.clear()
        rig.servers.clear()
        if soft < 1100:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize(("cls", "backlog"), [(SeedEchoServer, 1000), (SeedUpperServer, 5)])
def test_listen_backlog(rig: Rig, cls, backlog: int) -> None:
    """ECHO-10: listen(5) lets only 6 of a burst of connections complete before accept().

    The kernel drops the other SYNs; those clients connect only after their first
    SYN retransmission (1 s), which this test does not wait for.
    """
    server = rig.server(cls)
    clients = []
    for _ in range(20):
        c = rig.track(socket.socket())
        c.setblocking(False)
        assert c.connect_ex(server.address) in (0, errno.EINPROGRESS)
        clients.append(c)
    time.sleep(0.3)
    _, writable, _ = select.select([], clients, [], 0)
    connected = [c for c in writable if c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0]
    if backlog >= 20:
        assert len(connected) == 20
    else:
        assert 1 <= len(connected) <= backlog + 1


# -- the first (plain echo) server -----------------------------------------------------


def test_echo_accepted_sockets_are_blocking(rig: Rig) -> None:
    server = rig.server(SeedEchoServer)
    conn = rig.accepted(server, rig.client(server))
    assert conn.getblocking()
    assert server.message_queues is server.msg_dic


def test_echo_eof_busy_loop_never_closes(rig: Rig) -> None:
    """ECHO-9, ECHO-4, ECHO-6: EOF keeps the socket readable; b'' is queued each round."""
    server = rig.server(SeedEchoServer)
    c = rig.client(server)
    conn = rig.accepted(server, c)
    c.sendall(b"abc")
    assert step_read(server, c, 3) == b"abc"
    c.shutdown(socket.SHUT_WR)
    # select never waits: the socket is readable (EOF) and writable every round.
    ready = [server.poll(0.05) for _ in range(40)]
    assert all(n >= 1 for n in ready) and ready[-1] == 2
    assert conn in server.inputs and server.msg_dic[conn].qsize() == 1  # a queued b''
    assert read_now(c) == b""  # no EOF for the client
    assert conn.fileno() != -1
    assert tcp_state(server, c) == psutil.CONN_CLOSE_WAIT


def test_echo_send_then_close_kills_the_server(rig: Rig) -> None:
    """ECHO-5: the echo sent to a closed client draws an RST; the next send raises."""
    server = rig.server(SeedEchoServer)
    c = rig.client(server)
    c.sendall(b"abc")
    c.close()
    with pytest.raises(ConnectionError):  # BrokenPipeError, from `w.send(data_to_client)`
        step_until(server, lambda: False, rounds=20)


def test_echo_duplicate_outputs_entries_match_the_queue(rig: Rig) -> None:
    """`outputs.append(r)` adds one entry per unsent message, so get() never blocks."""
    server = rig.server(SeedEchoServer)
    c = rig.client(server, rcvbuf=1)
    conn = rig.accepted(server, c)
    seen = set()

    def check() -> bool:
        entries = server.outputs.count(conn)
        assert entries == server.msg_dic[conn].qsize()
        seen.add(entries)
        return entries >= 50

    flood(server, c, check)
    assert max(seen) >= 50


def test_echo_random_traffic_keeps_entries_equal_to_queue(rig: Rig) -> None:
    """Mixed sends, reads and a half-close on 3 clients: entries == queue size, always."""
    rng = random.Random(7)
    server = rig.server(SeedEchoServer)
    clients = [rig.client(server, rcvbuf=rng.choice([1, 65536])) for _ in range(3)]
    for c in clients:
        rig.accepted(server, c)
        c.setblocking(False)
    for _ in range(3000):
        c = rng.choice(clients)
        action = rng.random()
        with contextlib.suppress(OSError):
            if action < 0.5:
                c.send(b"z" * rng.randint(1, 5000))
            elif action < 0.8:
                c.recv(rng.randint(1, 20000))
            elif action < 0.801:
                c.shutdown(socket.SHUT_WR)
        server.poll(0)
        for conn, q in server.msg_dic.items():
            assert server.outputs.count(conn) == q.qsize()


def test_echo_unread_echo_overflows_select(rig: Rig) -> None:
    """ECHO-8, ECHO-7: a client that does not read: 1025 outputs entries -> ValueError."""
    server = rig.server(SeedEchoServer)
    c = rig.client(server, rcvbuf=1)
    conn = rig.accepted(server, c)
    with pytest.raises(ValueError, match="too many file descriptors in select"):
        flood(server, c, lambda: False)
    assert len(server.outputs) == 1025 == server.outputs.count(conn)


def test_echo_non_reading_client_kills_the_command() -> None:
    """The same, black-box: the process dies and the other clients with it."""
    with ServerProcess(server_command("impl.seed_echo_server")) as process:
        other = socket.create_connection(process.address, timeout=2)
        with other:
            other.sendall(b"hello")
            assert other.recv(5) == b"hello"
            c = socket.socket()
            with c:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
                c.connect(process.address)
                c.setblocking(False)
                deadline = time.monotonic() + 10
                while process.alive and time.monotonic() < deadline:
                    if not select.select([], [c], [], 0.05)[1]:
                        continue
                    try:
                        c.send(b"a" * 65536)
                    except BlockingIOError:
                        pass
                    except ConnectionError:
                        break
                assert process.process is not None
                assert process.process.wait(5) == 1
            assert "ValueError: too many file descriptors in select()" in process.stderr_tail()
            with contextlib.suppress(ConnectionError):
                other.sendall(b"again")
            with contextlib.suppress(ConnectionError):
                assert other.recv(5) == b""


def test_echo_blocking_send_stalls_everyone(rig: Rig) -> None:
    """ECHO-7: one round sends a message per outputs entry on a blocking socket.

    Once the batch exceeds the send buffer's free space, `w.send` blocks until that
    client reads; nobody else is served.  (With the 4 MiB buffer Linux autotunes to
    on loopback a batch always fits; a 64 KiB buffer shows it.)
    """
    server = rig.server(SeedEchoServer)
    other = rig.client(server)
    rig.accepted(server, other)
    c = rig.client(server, rcvbuf=1)
    conn = rig.accepted(server, c)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    c.setblocking(False)
    hung: Hung | None = None
    sent = echoed = 0
    for _ in range(1000):
        with contextlib.suppress(BlockingIOError):
            c.send(b"a" * 65536)
        other.sendall(b"ping")
        sent += 4
        try:
            with alarm_after(1.0):
                server.poll(0)
        except Hung as e:
            hung = e
            break
        echoed += len(read_now(other) or b"")
    assert hung is not None, "the server never blocked"
    frames = traceback.extract_tb(hung.__traceback__)
    assert any(f.name == "poll" and f.line == "w.send(data_to_client)" for f in frames)
    echoed += len(read_now(other) or b"")
    assert echoed < sent  # the other client's last ping waited the whole second, unanswered


def test_echo_urgent_byte_drops_the_connection(rig: Rig) -> None:
    """ECHO-2, ECHO-6: MSG_OOB lands in `exceptional`: forgotten, never closed."""
    server = rig.server(SeedEchoServer)
    c = rig.client(server)
    conn = rig.accepted(server, c)
    c.sendall(b"abc")
    assert step_read(server, c, 3) == b"abc"
    c.send(b"!", socket.MSG_OOB)
    del conn  # the test holds no reference; only the seed's loop names (conn, e) will
    step_until(server, lambda: server.inputs == [server.server])
    assert server.outputs == [] and server.msg_dic == {}
    c.sendall(b"def")
    for _ in range(20):
        server.poll(0.01)
    assert read_now(c) == b""  # never echoed
    assert tcp_state(server, c) == psutil.CONN_ESTABLISHED  # never closed


def test_echo_urgent_byte_with_unsent_entries_kills_the_server(rig: Rig) -> None:
    """ECHO-5: `exceptional` removes one outputs entry, deletes the queue -> KeyError."""
    server = rig.server(SeedEchoServer)
    c = rig.client(server, rcvbuf=1, sndbuf=1)
    conn = rig.accepted(server, c)
    flood(server, c, lambda: server.outputs.count(conn) >= 5)
    # Room for the urgent byte in the client's buffer, made by reading the
    # server's socket here, not by stepping the server: each of its rounds can
    # take an outputs entry away (a queue found empty), and how many rounds the
    # room takes is the kernel's timing (a loaded machine made it zero entries).
    for _ in range(BULK_ROUNDS):
        try:
            c.send(b"!", socket.MSG_OOB)
            break
        except BlockingIOError:
            if select.select([conn], [], [], 0.01)[0]:
                conn.recv(65536)
    else:
        pytest.fail(f"the urgent byte found no room in {BULK_ROUNDS} tries")
    step_until(server, lambda: conn not in server.msg_dic, rounds=BULK_ROUNDS, poll=0)
    assert conn not in server.inputs and conn in server.outputs
    drain_until_writable(c, conn)
    with pytest.raises(KeyError):
        server.poll(0.01)


# -- the "complete" uppercase server ---------------------------------------------------


def test_upper_accepted_sockets_are_non_blocking(rig: Rig) -> None:
    server = rig.server(SeedUpperServer)
    assert not rig.accepted(server, rig.client(server)).getblocking()


def test_upper_data_then_reset_getpeername_raises(rig: Rig) -> None:
    """ECHO-5: recv returns the data, then `s.getpeername()` raises ENOTCONN."""
    server = rig.server(SeedUpperServer)
    c = rig.client(server)
    rig.accepted(server, c)
    c.sendall(b"abc")
    reset(c)
    with pytest.raises(OSError) as raised:
        step_until(server, lambda: False, rounds=10)
    assert raised.value.errno == errno.ENOTCONN
    assert "getpeername" in traceback.extract_tb(raised.tb)[-1].line


def test_upper_send_then_shutdown_kills_the_server(rig: Rig) -> None:
    """ECHO-5, ECHO-4: EOF deletes the queue of a socket in `writeable` -> KeyError."""
    server = rig.server(SeedUpperServer)
    c = rig.client(server)
    conn = rig.accepted(server, c)
    c.sendall(b"abc")
    c.shutdown(socket.SHUT_WR)
    with pytest.raises(KeyError) as raised:
        step_until(server, lambda: False, rounds=10)
    assert raised.value.args[0] is conn
    rig.track(conn)  # the server dropped it mid-round


def test_upper_shutdown_right_after_echo_kills_the_server(rig: Rig) -> None:
    """ECHO-5: EOF in the round after the last send (before "queue is empty") -> KeyError."""
    server = rig.server(SeedUpperServer)
    c = rig.client(server)
    conn = rig.accepted(server, c)
    c.sendall(b"abc")
    assert step_read(server, c, 3) == b"ABC"
    assert conn in server.outputs  # the "queue is empty" round has not come yet
    c.shutdown(socket.SHUT_WR)
    rig.track(conn)
    with pytest.raises(KeyError):
        server.poll(0.01)


def test_upper_eof_with_backlog_discards_the_echo(rig: Rig) -> None:
    """ECHO-4, ECHO-6: not writable at EOF: the queue is deleted, the socket not closed."""
    server = rig.server(SeedUpperServer)
    c = rig.client(server, rcvbuf=1)
    conn = rig.track(rig.accepted(server, c))
    pushed = flood(server, c, lambda: server.message_queues[conn].qsize() >= 64)
    c.shutdown(socket.SHUT_WR)
    step_until(server, lambda: conn not in server.inputs, rounds=BULK_ROUNDS, poll=0)
    assert server.message_queues == {} and server.outputs == []
    got = bytearray()
    eof = False
    c.settimeout(0.2)
    with contextlib.suppress(TimeoutError):
        while not eof:
            chunk = c.recv(1 << 20)
            got += chunk
            eof = not chunk
    assert not eof
    assert 0 < len(got) < pushed  # the queued echo is gone
    assert got == b"A" * len(got)
    assert tcp_state(server, c) == psutil.CONN_CLOSE_WAIT


def test_upper_idle_eof_leaves_close_wait_until_names_move_on(rig: Rig) -> None:
    """ECHO-4, ECHO-6: the EOF branch never calls s.close().

    The socket is released only when CPython frees it, once the loop's names that
    still refer to it (s, conn, ...) are rebound, here by the next accept.
    """
    server = rig.server(SeedUpperServer)
    c = rig.client(server)
    conn = rig.accepted(server, c)
    c.sendall(b"abc")
    assert step_read(server, c, 3) == b"ABC"
    step_until(server, lambda: server.outputs == [])
    c.shutdown(socket.SHUT_WR)
    del conn  # the test holds no reference; only the seed's loop names will
    step_until(server, lambda: server.inputs == [server.server])
    assert server.outputs == [] and server.message_queues == {}
    for _ in range(20):
        server.poll(0.01)
    assert read_now(c) == b""  # no EOF
    assert tcp_state(server, c) == psutil.CONN_CLOSE_WAIT
    assert server.seed_names["conn"].fileno() != -1
    second = rig.client(server)
    with pytest.warns(ResourceWarning, match="unclosed"):
        rig.accepted(server, second)
    assert select.select([c], [], [], 2.0)[0]
    assert read_now(c) is None  # now, at last, EOF
    assert tcp_state(server, c) != psutil.CONN_CLOSE_WAIT


def test_upper_no_backpressure(rig: Rig) -> None:
    """ECHO-8: a client that sends without reading: the queue grows without bound."""
    server = rig.server(SeedUpperServer)
    c = rig.client(server, rcvbuf=1)
    conn = rig.accepted(server, c)
    flood(server, c, lambda: server.message_queues[conn].qsize() * 1024 >= 8 << 20)
    assert conn in server.inputs  # still reading


def test_upper_urgent_byte_resets_the_connection(rig: Rig) -> None:
    """ECHO-2: MSG_OOB lands in `exeptional`: the server closes (resets) the connection."""
    server = rig.server(SeedUpperServer)
    c = rig.client(server)
    conn = rig.accepted(server, c)
    c.sendall(b"abc")
    assert step_read(server, c, 3) == b"ABC"
    c.send(b"!", socket.MSG_OOB)
    step_until(server, lambda: conn not in server.inputs)
    assert conn.fileno() == -1 and conn not in server.message_queues
    with pytest.raises(ConnectionResetError):
        c.recv(10)


def test_upper_urgent_byte_and_eof_kill_the_server(rig: Rig) -> None:
    """ECHO-5: EOF and urgent data in one round: `inputs.remove(s)` twice -> ValueError."""
    server = rig.server(SeedUpperServer)
    c = rig.client(server)
    conn = rig.track(rig.accepted(server, c))
    c.send(b"!", socket.MSG_OOB)
    c.shutdown(socket.SHUT_WR)
    time.sleep(0.01)
    with pytest.raises(ValueError, match=r"list.remove\(x\): x not in list"):
        step_until(server, lambda: False, rounds=10)
    assert conn not in server.inputs


def test_upper_short_sends_do_not_happen(rig: Rig) -> None:
    """Latent ECHO-2: send()'s return value is ignored, but no short send occurs.

    Pushes 512 KiB through the smallest server send buffer the kernel allows to a
    client that reads in small random amounts; every byte comes back.
    """
    rng = random.Random(1)
    server = rig.server(SeedUpperServer)
    c = rig.client(server, rcvbuf=1)
    conn = rig.accepted(server, c)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
    c.setblocking(False)
    data = bytes(range(97, 123)) * (512 * 1024 // 26)
    pushed, got = 0, bytearray()
    for _ in range(BULK_ROUNDS):
        if pushed < len(data):
            with contextlib.suppress(BlockingIOError):
                pushed += c.send(data[pushed : pushed + rng.randint(1, 65536)])
        server.poll(0)
        if rng.random() < 0.3:
            with contextlib.suppress(BlockingIOError):
                got += c.recv(rng.randint(1, 5000))
        if len(got) == len(data):
            break
    assert bytes(got) == data.upper()


# -- the commands -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "port"), [("impl.seed_echo_server", 9000), ("impl.seed_upper_server", 10000)]
)
def test_command_help(module: str, port: int) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        capture_output=True,
        text=True,
        timeout=10,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert "--port" in result.stdout and f"(default: {port})" in result.stdout
    assert "--host" in result.stdout and "--log-level" in result.stdout


@pytest.mark.parametrize(
    ("module", "expected"),
    [("impl.seed_echo_server", b"Hello"), ("impl.seed_upper_server", b"HELLO")],
)
def test_command_serves_and_ends_on_sigterm(module: str, expected: bytes) -> None:
    with ServerProcess(server_command(module)) as process:
        with socket.create_connection(process.address, timeout=2) as c:
            c.sendall(b"Hello")
            got = b""
            while len(got) < 5:
                chunk = c.recv(5 - len(got))
                assert chunk
                got += chunk
            assert got == expected
            assert process.process is not None
            os.killpg(process.process.pid, signal.SIGTERM)
            assert process.process.wait(5) == 0
        assert "received SIGTERM" in process.stderr_tail()
