"""The measured requirements: memory (ECHO-8), idle CPU (ECHO-9), capacity (ECHO-10).

These are properties of a running process, not of a step program, so each is
one bounded experiment against the server started as a process (an
``--impl`` class runs under `spec.drivers.run_impl`).  Each returns
``(violation or None, detail)``, the detail carrying the figures measured.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import resource
import select
import selectors
import socket
import time
from collections.abc import Callable, Iterator

from spec import requirements
from spec.drivers.server_process import ServerProcess
from spec.model import Violation
from spec.program import MiB
from spec.targets import Target

#: ECHO-8: what the flooding client pushes, and the growth allowed.
FLOOD_BYTES = 64 * MiB
MEMORY_LIMIT = 32 * MiB
#: ECHO-9: CPU seconds allowed over `IDLE_MEASURE_SECONDS` with `IDLE_CONNECTIONS` open.
IDLE_MEASURE_SECONDS = 1.0
IDLE_CPU_LIMIT = 0.05
IDLE_CONNECTIONS = 10
#: ECHO-10: connections that must all be served, and extra ones beyond them.
CAPACITY = 1000
EXTRA = 100
#: ECHO-10 runs the server twice, with each soft descriptor limit (the hard
#: limit is left as it is), whatever the checker's own limit is:
SERVER_DESCRIPTOR_LIMITS = (
    # room for every connection, twice over: a select() server meets
    # descriptors beyond FD_SETSIZE (1024), which select() cannot watch;
    4 * (CAPACITY + EXTRA),
    # the common Linux default: a server that keeps it runs out (EMFILE)
    # before the extra connections are all in.
    1024,
)


def _server(target: Target, settle: float, descriptor_limit: int | None = None) -> ServerProcess:
    """The target as a process; `with` starts it and always ends it."""
    return ServerProcess(
        target.command(), start_timeout=max(10.0, settle), descriptor_limit=descriptor_limit
    )


def _echo_all(
    socks: list[socket.socket], message: Callable[[int], bytes], deadline: float
) -> dict[int, bytes | str]:
    """Send each socket its message; collect echo until complete, closed, or deadline.

    Returns, per index, the bytes received, or a string saying how it ended.
    """
    want = {i: len(message(i)) for i in range(len(socks))}
    got: dict[int, bytes | str] = {i: b"" for i in range(len(socks))}
    for i, s in enumerate(socks):
        try:
            s.sendall(message(i))
        except OSError as e:
            got[i] = f"send failed: {e}"
    # Not select(): the checker's own descriptors go beyond FD_SETSIZE here.
    with selectors.DefaultSelector() as selector:
        for i, s in enumerate(socks):
            if isinstance(got[i], bytes):
                selector.register(s, selectors.EVENT_READ, i)
        while selector.get_map() and time.monotonic() < deadline:
            for key, _ in selector.select(0.05):
                if _receive_into(got, key.data, socks[key.data], want[key.data]):
                    selector.unregister(key.fileobj)
    return got


def _what_came(got: bytes | str, expected: bytes, budget: float) -> str:
    """What one connection got instead of its echo, in words."""
    if isinstance(got, str):
        return got  # how it ended
    if not got:
        return f"no echo within {budget:g} s"
    return f"{len(got)} of {len(expected)} echo bytes within {budget:g} s: {got!r}"


def _receive_into(got: dict[int, bytes | str], i: int, s: socket.socket, want: int) -> bool:
    """Read once; True when connection `i` is complete or has ended."""
    try:
        data = s.recv(65536)
    except OSError as e:
        got[i] = f"reset ({e.strerror})"
        return True
    received = got[i]
    assert isinstance(received, bytes)  # a connection that ended is not read again
    if not data:
        got[i] = f"closed after {len(received)} bytes"
        return True
    got[i] = received + data
    return len(received) + len(data) >= want


def bounded_memory(target: Target, settle: float) -> tuple[Violation | None, str]:
    with _server(target, settle) as server, socket.create_connection(server.address) as c:
        c.setblocking(False)
        chunk = bytes(range(256)) * 1024
        before = peak = server.memory_rss()
        pushed, last_progress = 0, time.monotonic()
        deadline = time.monotonic() + max(30.0, 10 * settle)
        while pushed < FLOOD_BYTES and time.monotonic() < deadline:
            _, writable, _ = select.select([], [c], [], 0.05)
            if writable:
                try:
                    pushed += c.send(chunk)
                    last_progress = time.monotonic()
                except BlockingIOError:
                    pass
                except OSError as e:
                    if not server.wait_dead(0.5):
                        return Violation(
                            requirements.MEMORY,
                            "the server reset the flooding connection "
                            f"after {pushed / MiB:.1f} MiB ({e})",
                        ), ""
                    break
            elif time.monotonic() - last_progress > settle:
                break  # the server stopped reading: backpressure
            peak = max(peak, server.memory_rss())
        time.sleep(min(settle, 0.5))  # let a server that queues finish queueing
        if not server.alive:
            return Violation(
                requirements.MEMORY,
                f"the server died ({server.exit_description()}) while a "
                "client sent without reading" + _tail(server),
            ), ""
        peak = max(peak, server.memory_rss())
    growth = peak - before
    detail = (
        f"a non-reading client pushed {pushed / MiB:.1f} MiB; the server's resident memory "
        f"grew {growth / MiB:.1f} MiB (limit {MEMORY_LIMIT // MiB} MiB)"
    )
    if growth >= MEMORY_LIMIT:
        return Violation(requirements.MEMORY, detail + ": no backpressure"), detail
    return None, detail


def idle(target: Target, settle: float) -> tuple[Violation | None, str]:
    with _server(target, settle) as server, contextlib.ExitStack() as stack:
        socks = [
            stack.enter_context(socket.create_connection(server.address, timeout=settle))
            for _ in range(IDLE_CONNECTIONS)
        ]
        # Messages the transform leaves alone: this measures CPU, not ECHO-1.
        got = _echo_all(socks, lambda i: b"IDLE", time.monotonic() + settle)
        if any(v != b"IDLE" for v in got.values()):
            return Violation(
                requirements.IDLE, f"echo failed before the idle period: {got}{_if_dead(server)}"
            ), ""
        # One connection ends, so a server that spins on EOF shows it.
        socks.pop().close()
        time.sleep(0.1)
        cpu0 = server.cpu_seconds()
        time.sleep(IDLE_MEASURE_SECONDS)
        used = server.cpu_seconds() - cpu0
    detail = (
        f"{used:.3f} CPU seconds over {IDLE_MEASURE_SECONDS:g} s idle with {IDLE_CONNECTIONS} "
        f"connections open (limit {IDLE_CPU_LIMIT:g} s)"
    )
    if used >= IDLE_CPU_LIMIT:
        return Violation(requirements.IDLE, detail + ": a busy loop"), detail
    return None, detail


@contextlib.contextmanager
def _fd_limit_at_least(need: int) -> Iterator[None]:
    """Raise this process's descriptor limit for a while."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, need), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def capacity(target: Target, settle: float) -> tuple[Violation | None, str]:
    details = []
    for limit in SERVER_DESCRIPTOR_LIMITS:
        violation, detail = _capacity(target, settle, limit)
        if violation is not None:
            where = f"with a soft descriptor limit of {limit}: "
            return dataclasses.replace(violation, summary=where + violation.summary), ""
        details.append(f"with a descriptor limit of {limit}: {detail}")
    return None, "; ".join(details)


def _capacity(target: Target, settle: float, limit: int) -> tuple[Violation | None, str]:
    budget = max(15.0, 5 * settle)
    with (
        _fd_limit_at_least(2 * (CAPACITY + EXTRA) + 100),
        _server(target, settle, limit) as server,
        contextlib.ExitStack() as stack,
    ):
        start = time.monotonic()
        socks, failed = _connect_all(server.address, CAPACITY, stack, start + budget)
        if failed:
            return Violation(
                requirements.CAPACITY,
                f"{len(failed)} of {CAPACITY} simultaneous "
                f"connections could not be established within {budget:g} s: "
                f"{failed[0]}" + _if_dead(server),
            ), ""

        def msg(i: int) -> bytes:
            return b"CAPACITY %d " % i  # the transform leaves it alone

        got = _echo_all(socks, msg, time.monotonic() + budget)
        bad = {i: v for i, v in got.items() if v != msg(i).upper()}
        if bad:
            i, v = next(iter(bad.items()))
            return Violation(
                requirements.CAPACITY,
                f"{len(bad)} of {CAPACITY} simultaneous connections "
                f"were not served; connection {i}: "
                f"{_what_came(v, msg(i).upper(), budget)}{_if_dead(server)}",
            ), ""
        served = time.monotonic() - start
        # Beyond the server's own limit: served, or refused/closed cleanly.
        extra, failed = _connect_all(server.address, EXTRA, stack, time.monotonic() + budget)
        refused = len(failed)
        got = _echo_all(extra, msg, time.monotonic() + budget)
        hanging = [i for i, v in got.items() if isinstance(v, bytes) and v != msg(i).upper()]
        ended = sum(1 for v in got.values() if isinstance(v, str))
        if not server.alive:
            return Violation(
                requirements.CAPACITY,
                f"beyond {CAPACITY} connections the server died "
                f"({server.exit_description()})" + _tail(server),
            ), ""
        if hanging:
            return Violation(
                requirements.CAPACITY,
                f"{len(hanging)} of {EXTRA} connections beyond the "
                f"first {CAPACITY} were neither served nor closed within "
                f"{budget:g} s",
            ), ""
        again = _echo_all(socks, msg, time.monotonic() + budget)
        broken = [i for i, v in again.items() if v != msg(i).upper()]
        if broken:
            return Violation(
                requirements.CAPACITY,
                f"after {EXTRA} extra connections, {len(broken)} of "
                f"the first {CAPACITY} stopped working; connection {broken[0]}: "
                f"{_what_came(again[broken[0]], msg(broken[0]).upper(), budget)}"
                f"{_if_dead(server)}",
            ), ""
    detail = (
        f"{CAPACITY} simultaneous connections served in {served:.2f} s; of {EXTRA} more, "
        f"{EXTRA - refused - ended} served, {refused} refused, {ended} closed"
    )
    return None, detail


def _connect_all(
    address: tuple[str, int], n: int, stack: contextlib.ExitStack, deadline: float
) -> tuple[list[socket.socket], list[str]]:
    """Open `n` connections at once (non-blocking); those not up by `deadline` fail."""
    pending: dict[socket.socket, int] = {}
    for i in range(n):
        s = stack.enter_context(socket.socket())
        s.setblocking(False)
        s.connect_ex(address)
        pending[s] = i
    done: list[socket.socket] = []
    failed: list[str] = []
    with selectors.DefaultSelector() as selector:
        for s in pending:
            selector.register(s, selectors.EVENT_WRITE, s)
        while selector.get_map() and time.monotonic() < deadline:
            for key, _ in selector.select(0.05):
                s = key.data
                selector.unregister(s)
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    failed.append(f"connection {pending[s]}: {os.strerror(err)}")
                else:
                    s.setblocking(True)
                    s.settimeout(None)
                    done.append(s)
        failed += [
            f"connection {pending[k.data]}: not established (SYN unanswered)"
            for k in selector.get_map().values()
        ]
    done.sort(key=pending.__getitem__)
    return done, failed


#: Seconds a server that broke connections gets to be seen dead, if it is dying.
DEATH_GRACE = 0.5


def _if_dead(server: ServerProcess) -> str:
    """'; the server died (how)' and its stderr tail; "" while it lives."""
    if not server.wait_dead(DEATH_GRACE):
        return ""
    return f"; the server died ({server.exit_description()})" + _tail(server)


def _tail(server: ServerProcess) -> str:
    tail = server.stderr_tail()
    return f"; its stderr ends with:\n{tail}" if tail else ""


#: What a measurement sets for the server, beyond the command, for the report.
CONDITIONS: dict[str, dict[str, object]] = {
    requirements.CAPACITY: {
        "server descriptor limits": " and ".join(map(str, SERVER_DESCRIPTOR_LIMITS))
        + " (soft; one run each, the hard limit unchanged)"
    },
}

MEASURES: dict[str, Callable[[Target, float], tuple[Violation | None, str]]] = {
    requirements.MEMORY: bounded_memory,
    requirements.IDLE: idle,
    requirements.CAPACITY: capacity,
}
