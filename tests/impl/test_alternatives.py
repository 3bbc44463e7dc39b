"""The three alternative server designs behave like the reference.

Each test runs against every design as a command (`ServerProcess`, a real
process on a free port) and, where it makes sense, against
`SelectorsEchoServer` stepped in this process: `poll()` is called in bounded
loops between the client's own non-blocking operations, with no threads.

Clients are non-blocking sockets driven by one readiness loop (`exchange`),
so a client reads while it writes and every wait has a deadline.  Echo is
judged by `spec.model.diagnose`, so a failure names the requirement and the
first divergent byte.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import resource
import select
import selectors
import socket
import time
from collections.abc import Callable, Iterable, Iterator

import pytest
from harness import CHUNK, HOST, MiB, reset, server_command

from impl.selectors_server import SelectorsEchoServer
from spec.drivers.server_process import ServerProcess
from spec.model import diagnose, transform

MODULES = {
    "selectors": "impl.selectors_server",
    "asyncio": "impl.asyncio_server",
    "threaded": "impl.threaded_server",
}
#: Seconds a correct server gets to deliver echo, EOF or cleanup.
SETTLE = 5.0


# -- readiness without FD_SETSIZE ------------------------------------------------


def ready(
    rlist: Iterable[socket.socket], wlist: Iterable[socket.socket], timeout: float
) -> tuple[list[socket.socket], list[socket.socket]]:
    """select() for any number of sockets (poll(2) underneath).

    Errors and hang-ups count as both readable and writable, so the caller's
    recv/send reports them.
    """
    masks: dict[int, int] = {}
    by_fd: dict[int, socket.socket] = {}
    for s in rlist:
        masks[s.fileno()] = masks.get(s.fileno(), 0) | select.POLLIN
        by_fd[s.fileno()] = s
    for s in wlist:
        masks[s.fileno()] = masks.get(s.fileno(), 0) | select.POLLOUT
        by_fd[s.fileno()] = s
    if not masks:
        time.sleep(timeout)
        return [], []
    p = select.poll()
    for fd, mask in masks.items():
        p.register(fd, mask)
    r: list[socket.socket] = []
    w: list[socket.socket] = []
    trouble = select.POLLERR | select.POLLHUP | select.POLLNVAL
    for fd, ev in p.poll(timeout * 1000):
        wanted = masks[fd]
        if ev & (select.POLLIN | trouble) and wanted & select.POLLIN:
            r.append(by_fd[fd])
        if ev & (select.POLLOUT | trouble) and wanted & select.POLLOUT:
            w.append(by_fd[fd])
    return r, w


# -- the server under test ---------------------------------------------------------


class Harness:
    """A server under test: a command in its own process, or stepped in this one."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.process: ServerProcess | None = None
        self.stepped: SelectorsEchoServer | None = None
        self.clients: list[socket.socket] = []
        if name.endswith("-stepped"):
            self.stepped = SelectorsEchoServer(HOST, 0)
            self.address = self.stepped.address[:2]
        else:
            command = server_command(MODULES[name], "--log-level", "WARNING")
            self.process = ServerProcess(command).start()
            self.address = self.process.address

    def close(self) -> None:
        for s in self.clients:
            s.close()
        if self.stepped is not None:
            self.stepped.close()
        if self.process is not None:
            self.process.close()

    def connect(self) -> socket.socket:
        s = socket.create_connection(self.address, timeout=SETTLE)
        self.clients.append(s)
        s.setblocking(False)
        return s

    def wait(
        self,
        rlist: Iterable[socket.socket],
        wlist: Iterable[socket.socket],
        timeout: float = 0.05,
    ) -> tuple[list[socket.socket], list[socket.socket]]:
        """Wait (bounded) for client sockets, stepping an in-process server meanwhile."""
        if self.stepped is None:
            return ready(rlist, wlist, timeout)
        rlist, wlist = list(rlist), list(wlist)
        self.stepped.poll(0)
        r, w = ready(rlist, wlist, 0)
        if not r and not w:
            # Only the server can make progress now: let it wait for work.
            self.stepped.poll(min(timeout, 0.005))
            r, w = ready(rlist, wlist, 0)
        return r, w

    def step_until(self, condition: Callable[[], bool], timeout: float = SETTLE) -> bool:
        """Step (in-process) or sleep (command) until `condition()`, bounded."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            if self.stepped is not None:
                self.stepped.poll(0.005)
            else:
                time.sleep(0.02)
        return True


SERVERS = [*MODULES, "selectors-stepped"]


def _harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    h = Harness(request.param)
    try:
        yield h
    finally:
        h.close()


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[Harness]:
    """Each design, the stepped one included (this module's own `server`)."""
    yield from _harness(request)


@pytest.fixture(params=list(MODULES))
def server_process(request: pytest.FixtureRequest) -> Iterator[Harness]:
    """Each design as a command."""
    yield from _harness(request)


# -- clients ---------------------------------------------------------------------


class Result:
    def __init__(self) -> None:
        self.received = bytearray()
        self.eof = False


def exchange(
    h: Harness,
    payloads: dict[socket.socket, bytes],
    *,
    half_close: bool = False,
    timeout: float = SETTLE,
    on_tick: Callable[[], None] | None = None,
) -> dict[socket.socket, Result]:
    """Send each socket its payload while reading its echo; bounded by `timeout`.

    With `half_close`, each socket shuts down its sending side after its
    payload and is read until EOF.  `on_tick` runs once per loop round.
    """
    out = {s: memoryview(p) for s, p in payloads.items()}
    results = {s: Result() for s in payloads}
    if half_close:
        for s, rest in out.items():
            if not rest:
                s.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rlist = [
            s
            for s, res in results.items()
            if not res.eof and (half_close or len(res.received) < len(payloads[s]))
        ]
        wlist = [s for s, rest in out.items() if rest]
        if not rlist and not wlist:
            break
        r, w = h.wait(rlist, wlist)
        for s in w:
            try:
                n = s.send(out[s][:CHUNK])
            except BlockingIOError:
                continue
            out[s] = out[s][n:]
            if half_close and not out[s]:
                s.shutdown(socket.SHUT_WR)
        for s in r:
            try:
                data = s.recv(CHUNK)
            except BlockingIOError:
                continue
            if data:
                results[s].received += data
            else:
                results[s].eof = True
        if on_tick is not None:
            on_tick()
    return results


def check_echo(sent: bytes, res: Result, *, half_closed: bool = False, name: str = "") -> None:
    v = diagnose(sent, bytes(res.received), eof=res.eof, half_closed=half_closed, settled=True)
    assert v is None, f"{name}: {v}"


def payload(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def push_without_reading(
    h: Harness,
    s: socket.socket,
    data: bytes,
    *,
    limit: float,
    stall: float,
) -> int:
    """Send as much of `data` as the server takes; stop when all is sent, at
    `limit` seconds, or once nothing could be sent for `stall` seconds."""
    view = memoryview(data)
    sent = 0
    start = last_progress = time.monotonic()
    while sent < len(data):
        now = time.monotonic()
        if now - start > limit or now - last_progress > stall:
            break
        _, w = h.wait([], [s])
        if w:
            try:
                n = s.send(view[sent : sent + CHUNK])
            except BlockingIOError:
                continue
            sent += n
            last_progress = time.monotonic()
    return sent


# -- white-box and process views of cleanup -------------------------------------------


def server_sockets_left(h: Harness) -> str | None:
    """What the server still holds for ended connections; None when nothing."""
    if h.stepped is not None:
        srv = h.stepped
        extra = [
            name
            for name, held in (
                ("inputs", [s for s in srv.inputs if s is not srv.server]),
                ("outputs", list(srv.outputs)),
                ("message_queues", list(srv.message_queues)),
                ("finished", list(srv.finished)),
                (
                    "selector",
                    [k for k in srv.selector.get_map().values() if k.fileobj is not srv.server],
                ),
            )
            if held
        ]
        return f"still held in {', '.join(extra)}" if extra else None
    assert h.process is not None
    conns = [c for c in h.process.connections() if c.status != "LISTEN"]
    return (
        f"still has connections {[(c.laddr, c.raddr, c.status) for c in conns]}" if conns else None
    )


def _descriptors(pids: list[int]) -> dict[int, list[str]]:
    """What each process's descriptors refer to, for a failure message."""
    found: dict[int, list[str]] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            found[pid] = sorted(
                os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")
            )
    return found


def settle_idle(h: Harness) -> None:
    """Wait until the server holds no connection (e.g. ServerProcess's probe)."""
    assert h.step_until(lambda: server_sockets_left(h) is None), server_sockets_left(h)


# -- the behaviours -------------------------------------------------------------------


def test_all_byte_values(server: Harness) -> None:
    s = server.connect()
    data = bytes(range(256)) * 4
    res = exchange(server, {s: data})[s]
    assert bytes(res.received) == transform(data) == data.upper()
    check_echo(data, res)


def test_2mib_echoed_in_order_while_reading(server: Harness) -> None:
    s = server.connect()
    data = payload(2 * MiB, seed=2)
    res = exchange(server, {s: data}, timeout=15)[s]
    check_echo(data, res)


def test_half_close_flushes_queued_echo_then_eof(server: Harness) -> None:
    s = server.connect()
    data = payload(24 * MiB, seed=4)
    # Push without reading until the server stops taking bytes (backpressure;
    # more than the kernel's buffers can hold, so a server that drops what a
    # partial send left over is caught), so echo is queued when the client
    # shuts down its sending side.
    n = push_without_reading(server, s, data, limit=5, stall=0.3)
    assert n > 0
    res = exchange(server, {s: b""}, half_close=True, timeout=10)[s]
    check_echo(data[:n], res, half_closed=True)
    assert res.eof, "no EOF after the echo"
    assert server.step_until(lambda: server_sockets_left(server) is None), server_sockets_left(
        server
    )


def test_reset_does_not_disturb_another_client(server: Harness) -> None:
    a, b = server.connect(), server.connect()
    first, second = payload(100_000, seed=5), payload(100_000, seed=6)
    res = exchange(server, {b: first})[b]
    check_echo(first, res, name="b before the reset")
    # a has echo in flight and unread when it resets.
    push_without_reading(server, a, payload(500_000, seed=7), limit=2, stall=0.2)
    reset(a)
    server.clients.remove(a)
    res = exchange(server, {b: second})[b]
    check_echo(second, res, name="b after the reset")
    c = server.connect()
    res = exchange(server, {c: b"still accepting"})[c]
    check_echo(b"still accepting", res, name="a new client")
    if server.process is not None:
        assert server.process.alive


def test_200_simultaneous_connections(server: Harness) -> None:
    socks = [server.connect() for _ in range(200)]
    payloads = {s: f"client {i}: ".encode() + payload(3000, seed=i) for i, s in enumerate(socks)}
    results = exchange(server, payloads, timeout=10)
    others = [transform(p) for p in payloads.values()]
    for i, s in enumerate(socks):
        v = diagnose(
            payloads[s],
            bytes(results[s].received),
            eof=results[s].eof,
            settled=True,
            others=[o for o in others if o != transform(payloads[s])],
        )
        assert v is None, f"client {i}: {v}"


def _server_side_of(h: Harness, client: socket.socket) -> socket.socket:
    """The stepped server's socket for `client`, once it has accepted it."""
    srv = h.stepped
    assert srv is not None
    name = client.getsockname()

    def find() -> socket.socket | None:
        return next((s for s in srv.message_queues if s.getpeername() == name), None)

    assert h.step_until(lambda: find() is not None), "the server never accepted the client"
    found = find()
    assert found is not None
    return found


def test_flood_memory_bounded_and_others_served(server: Harness) -> None:
    probe = server.connect()
    res = exchange(server, {probe: b"warm up " * 1000})[probe]  # settle allocations
    check_echo(b"warm up " * 1000, res)
    rss_before = server.process.memory_rss() if server.process else 0
    flooder = server.connect()
    data = b"flood! " * (64 * MiB // 7 + 1)
    data = data[: 64 * MiB]
    view = memoryview(data)
    pushed = 0
    largest_backlog = 0
    held_back = False
    srv = server.stepped
    flood_side = _server_side_of(server, flooder) if srv is not None else None

    def push() -> None:
        nonlocal pushed, largest_backlog, held_back
        for _ in range(4):
            if pushed >= len(data):
                return
            try:
                pushed += flooder.send(view[pushed : pushed + CHUNK])
            except BlockingIOError:
                break
        if srv is not None and flood_side in srv.message_queues:
            largest_backlog = max(largest_backlog, len(srv.message_queues[flood_side]))
            held_back |= flood_side not in srv.inputs

    start = last_progress = time.monotonic()
    other_checked = False
    while pushed < len(data) and time.monotonic() - start < 10:
        before = pushed
        server.wait([], [flooder])
        push()
        if pushed != before:
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > 1.0:
            break  # the server stopped taking bytes: backpressure held
        if not other_checked and pushed >= 2 * MiB:
            # While the flood is on, another client is still served.
            other = server.connect()
            msg = payload(50_000, seed=9)
            res = exchange(server, {other: msg}, on_tick=push)[other]
            check_echo(msg, res, name="a client during the flood")
            other_checked = True
    assert pushed > 0
    if not other_checked:
        other = server.connect()
        msg = payload(50_000, seed=9)
        res = exchange(server, {other: msg}, on_tick=push)[other]
        check_echo(msg, res, name="a client during the flood")
    if server.process is not None:
        growth = server.process.memory_rss() - rss_before
        print(
            f"\n{server.name}: flood pushed {pushed / MiB:.1f} MiB in "
            f"{time.monotonic() - start:.1f} s; RSS grew {growth / MiB:.2f} MiB"
        )
        assert growth < 32 * MiB, (
            f"RSS grew by {growth / MiB:.1f} MiB after {pushed / MiB:.1f} MiB pushed"
        )
        assert server.process.alive
    else:
        assert srv is not None
        bound = srv.backlog_limit + srv.recv_size
        assert largest_backlog <= bound, f"backlog reached {largest_backlog} > {bound}"
        assert held_back or pushed >= len(data), "the flooder was never held back"
    # Nothing the flooder pushed was lost: half-close and read it all back.
    res = exchange(server, {flooder: b""}, half_close=True, timeout=20)[flooder]
    check_echo(data[:pushed], res, half_closed=True, name="the flooder")


def test_cleanup_after_clients_end(server: Harness) -> None:
    settle_idle(server)
    fds_before = server.process.num_fds() if server.process else 0
    # Orderly: echo, then close.
    plain = [server.connect() for _ in range(8)]
    results = exchange(server, {s: payload(20_000, seed=i) for i, s in enumerate(plain)})
    assert all(len(r.received) == 20_000 for r in results.values())
    # Half-close: echo queued, then EOF both ways.
    halves = [server.connect() for _ in range(8)]
    results = exchange(
        server, {s: payload(20_000, seed=i) for i, s in enumerate(halves)}, half_close=True
    )
    assert all(r.eof for r in results.values())
    # Resets with echo in flight, and closes with unread echo (the kernel resets).
    resets = [server.connect() for _ in range(8)]
    for s in resets:
        push_without_reading(server, s, payload(200_000, seed=3), limit=1, stall=0.1)
    for i, s in enumerate(resets):
        if i % 2:
            reset(s)
        else:
            s.close()
    for s in [*plain, *halves]:
        s.close()
    server.clients.clear()

    assert server.step_until(lambda: server_sockets_left(server) is None), server_sockets_left(
        server
    )
    if server.process is not None:
        proc = server.process
        # Bounded well past SETTLE: once, under two benches' load, the asyncio
        # server still held one more descriptor after 5 s (not seen again in 30
        # runs with two CPU hogs); if it does again, the message says which.
        ok = server.step_until(lambda: proc.num_fds() == fds_before, timeout=6 * SETTLE)
        assert ok, (
            f"server holds {proc.num_fds()} descriptors, {fds_before} before: "
            f"{_descriptors(proc.pids())}"
        )
        assert not [c for c in proc.connections() if c.status == "CLOSE_WAIT"]


def test_idle_cpu(server_process: Harness) -> None:
    h = server_process
    assert h.process is not None
    socks = [h.connect() for _ in range(10)]
    results = exchange(h, {s: b"hello" for s in socks})
    assert all(bytes(r.received) == b"HELLO" for r in results.values())
    time.sleep(0.2)
    before = h.process.cpu_seconds()
    time.sleep(1.0)
    used = h.process.cpu_seconds() - before
    print(f"\n{h.name}: idle CPU over 1 s with 10 connections: {used:.3f} s")
    assert used < 0.05, f"{used:.3f} s of CPU in 1 s idle"


# -- capacity: 10,000 connections (selectors only) ----------------------------------


@contextlib.contextmanager
def open_files_limit(wanted: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(
            f"needs {wanted} open files in the test process, but RLIMIT_NOFILE's "
            f"hard limit is {hard} (raise it, e.g. `ulimit -Hn {wanted}` as root)"
        )
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        yield
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_selectors_10000_connections() -> None:
    n = 10_000
    batch = 500
    with open_files_limit(n + 1000):
        clients: list[socket.socket] = []
        ep = selectors.DefaultSelector()
        h = Harness("selectors")
        try:
            assert h.process is not None
            t0 = time.monotonic()
            deadline = t0 + 20
            for first in range(0, n, batch):
                pending = set()
                for _ in range(batch):
                    s = socket.socket()
                    clients.append(s)
                    s.setblocking(False)
                    err = s.connect_ex(h.address)
                    assert err in (0, errno.EINPROGRESS), f"connect: {os.strerror(err)}"
                    ep.register(s, selectors.EVENT_WRITE)
                    pending.add(s)
                while pending:
                    assert time.monotonic() < deadline, (
                        f"only {first + batch - len(pending)} of {n} connected in time"
                    )
                    for key, _ in ep.select(0.5):
                        s = key.fileobj
                        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        assert err == 0, f"a connection failed: {os.strerror(err)}"
                        ep.unregister(s)
                        pending.discard(s)
            connected = time.monotonic() - t0
            # Every connection is open at once: the server holds them all.
            assert h.step_until(lambda: h.process.num_fds() >= n, timeout=10), (
                f"the server holds only {h.process.num_fds()} descriptors"
            )
            # A sample of them (spread over the whole range) echoes.
            rng = random.Random(10)
            sample = [clients[0], clients[-1], *rng.sample(clients[1:-1], 500)]
            payloads = {s: f"conn {i} abc".encode() for i, s in enumerate(sample)}
            results = exchange(h, payloads, timeout=10)
            for s, p in payloads.items():
                check_echo(p, results[s], name=f"sampled connection {p!r}")
            assert h.process.alive
            print(
                f"\nselectors: {n} connections open in {connected:.1f} s, "
                f"sample echoed, total {time.monotonic() - t0:.1f} s"
            )
        finally:
            ep.close()
            for s in clients:
                with contextlib.suppress(OSError):
                    reset(s)  # no TIME_WAIT left behind on 10,000 ports
            h.close()
