"""A rest in one look: when one look proves a process server at rest, and when it must not.

`Look.conclusive` (spec/drivers/looking.py; the design note of
spec/drivers/process.py says why it is sound) on looks made by hand; the cheap
readers it relies on (`threads.Watcher`, `sock_diag.lookup_many`) against the
ones they replace; and real servers: the
reference rests in one look after a step, a server whose threads block in
recv() rests by two equal looks, and both are judged the same as before.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import Any

import pytest

from spec.drivers import sock_diag, threads
from spec.drivers.clients import Client
from spec.drivers.looking import Look
from spec.drivers.network import PrivateNetwork
from spec.drivers.process import ProcessDriver

TcpState = sock_diag.TcpState
WAIT = next(iter(threads.WAITS.values()), "epoll_wait")
RECV = next((n for n in threads.ON_DESCRIPTOR.values() if n.startswith("recv")), "recvfrom")


def _thread(state: str = "S", syscall: str = WAIT, runs: int = 7, tid: int = 10) -> threads.Thread:
    return threads.Thread(1, tid, state, runs, syscall)


def _end(
    state: TcpState = TcpState.ESTABLISHED,
    *,
    rqueue: int = 0,
    out: int = 5,
    into: int = 5,
    unacked: int = 0,
) -> sock_diag.TcpSocket:
    return sock_diag.TcpSocket(
        ("127.0.0.1", 1),
        ("127.0.0.1", 2),
        state,
        rqueue,
        0,
        1,
        unacked=unacked,
        bytes_out=out,
        bytes_in=into,
        notsent=0,
    )


def _look(**changes: Any) -> Look:
    fields: dict[str, Any] = {
        "threads": (_thread(), _thread("S", "wait4", tid=11)),
        "connections": ((_end(), _end()),),
        "unchanged": True,
    }
    fields.update(changes)
    return Look(**fields)


def test_a_quiet_server_asleep_in_its_event_loop_is_at_rest_in_one_look() -> None:
    assert _look().conclusive
    # A dead thread does nothing more; a connection gone at both ends, long ago, is over.
    assert _look(threads=(_thread(), _thread("Z", ""))).conclusive
    assert _look(connections=((None, None), (_end(), _end()))).conclusive


@pytest.mark.parametrize(
    ("why", "changes"),
    [
        ("a thread ran between the two readings", {"unchanged": False}),
        ("a thread is runnable", {"threads": (_thread("R", ""),)}),
        ("a thread sleeps in a blocking recv()", {"threads": (_thread("S", RECV),)}),
        ("a thread sleeps elsewhere (a futex, a sleep)", {"threads": (_thread("S", ""),)}),
        ("a stopped thread", {"threads": (_thread("T", ""),)}),
        ("bytes on their way to the server", {"connections": ((_end(out=9), _end(into=5)),)}),
        ("a segment not yet acknowledged", {"connections": ((_end(unacked=1), _end()),)}),
        ("bytes the server has not read", {"connections": ((_end(), _end(rqueue=3)),)}),
        (
            "an EOF the server has not taken",
            {"connections": ((_end(), _end(TcpState.CLOSE_WAIT)),)},
        ),
        ("a reset on its way to the client", {"connections": ((_end(), None),)}),
        ("a reset on its way to the server", {"connections": ((None, _end()),)}),
        ("a server end gone just now", {"just_gone": True}),
        ("echo arrived for a reading client", {"unread": True}),
    ],
)
def test_one_look_proves_nothing_when(why: str, changes: dict[str, Any]) -> None:
    assert not _look(**changes).conclusive, why


def test_a_client_in_time_wait_with_the_server_end_gone_is_over() -> None:
    assert _look(connections=((_end(TcpState.TIME_WAIT), None),)).conclusive


# -- the readers ------------------------------------------------------------------------

TREE = """
import os, select, threading, time
for _ in range(2):
    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
if os.fork() == 0:
    select.select([], [], [], 30)
    os._exit(0)
print("ready", flush=True)
input()  # one more thread on request
threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
print("again", flush=True)
os.wait()
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="no /proc")
def test_the_watcher_sees_what_a_fresh_reading_sees() -> None:
    tree = subprocess.Popen(
        [sys.executable, "-c", TREE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert tree.stdin is not None and tree.stdout is not None
    watcher = threads.Watcher(tree.pid)
    try:
        assert tree.stdout.readline().strip() == "ready"

        def same() -> bool:
            fresh = threads.look(threads.descendants(tree.pid))
            seen = watcher.look()
            assert fresh is not None and seen is not None
            return sorted(t.tid for t in seen) == sorted(t.tid for t in fresh)

        deadline = time.monotonic() + 5
        while not same():  # a thread may start or end between the two readings
            assert time.monotonic() < deadline
        seen = watcher.look()
        assert seen is not None
        assert len({t.pid for t in seen}) == 2  # the forked child too
        assert len(watcher.pids()) == 2
        before = len(seen)
        tree.stdin.write("\n")
        tree.stdin.flush()
        assert tree.stdout.readline().strip() == "again"
        deadline = time.monotonic() + 5
        while len(watcher.look() or ()) != before + 1:  # the new thread is listed
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert same()
    finally:
        tree.kill()
        tree.wait(timeout=5)
        watcher.close()
    assert watcher.look() == ()  # gone: nothing to see, nothing left open


@pytest.mark.skipif(PrivateNetwork.shared() is None, reason="network namespaces are not allowed")
def test_lookups_in_one_request_answer_as_one_lookup_each() -> None:
    network = PrivateNetwork.shared()
    assert network is not None
    listener = network.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    address = listener.getsockname()
    clients = [network.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(20)]
    netlink = sock_diag.open_netlink(network.socket)
    try:
        for c in clients:
            c.connect(address)
        ends = [(c.getsockname(), address) for c in clients] + [
            (address, c.getsockname()) for c in clients
        ]
        ends.append((address, ("127.0.0.1", 1)))  # no such connection
        assert len(ends) > sock_diag.BATCH  # more than one request
        found = sock_diag.lookup_many(netlink, ends)
        assert found == [sock_diag.lookup(netlink, *pair) for pair in ends]
        assert found[-1] is None
        assert all(s is not None and s.state is TcpState.ESTABLISHED for s in found[:-1])
    finally:
        netlink.close()
        for c in clients:
            c.close()
        listener.close()


# -- real servers -------------------------------------------------------------------------

needs_network = pytest.mark.skipif(
    PrivateNetwork.shared() is None, reason="network namespaces are not allowed"
)


class Counting(ProcessDriver):
    """Counts the looks of each settle and how many were conclusive."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.looks: list[Look] = []

    def _look(self) -> Look | None:
        look = super()._look()
        if look is not None:
            self.looks.append(look)
        return look


def _echo(driver: Counting, payloads: list[bytes]) -> list[Client]:
    clients = [Client(f"c{i}", driver.connect(), lambda: ()) for i in range(len(payloads))]
    driver.settle(clients, lambda: True)
    for c, payload in zip(clients, payloads, strict=True):
        c.queue(payload)
    driver.looks.clear()
    driver.settle(clients, lambda: not any(c.expects_more for c in clients))
    return clients


@needs_network
def test_the_reference_rests_in_one_conclusive_look_after_a_step() -> None:
    driver = Counting(f"{sys.executable} -m impl.select_server --port {{port}}")
    driver.start()
    clients: list[Client] = []
    try:
        assert driver.witness
        clients = _echo(driver, [b"hello", b"world"])
        for c in clients:
            assert c.violation is None and not c.expects_more
            assert c.model.received_count == 5
        assert driver.looks and driver.looks[-1].conclusive
        assert not driver.restless
        # An abort: the server drops the connection; the rest waits for it.
        clients[0].abort()
        driver.settle(clients[1:], lambda: True)
        assert not driver._held([clients[0]]), "the rest ended before the server dropped it"
    finally:
        for c in clients:
            if c.active:
                c.close()
        driver.close()


THREADED_RECV = """
import socket, sys, threading
listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
def serve(conn):
    while data := conn.recv(4096):
        conn.sendall(data.upper())
    conn.close()
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


@needs_network
def test_a_server_blocking_in_recv_rests_by_two_equal_looks(tmp_path: Any) -> None:
    script = tmp_path / "threaded_recv.py"
    script.write_text(THREADED_RECV)
    driver = Counting(f"{sys.executable} {script} {{port}}")
    driver.start()
    clients: list[Client] = []
    try:
        assert driver.witness
        clients = _echo(driver, [b"abc", b"defg"])
        assert [c.model.received_count for c in clients] == [3, 4]
        assert all(c.violation is None for c in clients)
        assert not any(look.conclusive for look in driver.looks), "a blocking recv proves nothing"
        assert len(driver.looks) >= 2
        assert driver.looks[-1].same(driver.looks[-2])
    finally:
        for c in clients:
            c.close()
        driver.close()


def test_without_schedstat_one_look_proves_nothing() -> None:
    # A thread that ran and slept again between the two readings would look unchanged.
    assert not _look(threads=(_thread(runs=-1),)).conclusive


def _shapes(look: Look) -> dict[tuple[str, int], object]:
    return {
        client.local: (client.queues, client.bytes_in, client.bytes_out, server)
        for client, server in look.connections
        if client is not None
    }


@needs_network
def test_after_a_one_look_rest_nothing_moves_until_the_next_step() -> None:
    """What makes a rest sound: 5 ms later, no thread has run and no socket has changed."""
    driver = Counting(f"{sys.executable} -m impl.select_server --port {{port}}")
    driver.start()
    clients: list[Client] = []
    proven = 0
    try:
        for round_ in range(6):
            clients = _echo(driver, [b"x" * (round_ * 3000 + 1), b"yz"])
            clients[0].abort() if round_ % 2 else clients[0].half_close()
            for step in range(2):
                driver.looks.clear()
                driver.settle(clients[step:], lambda: True)
                last = driver.looks[-1] if driver.looks else None
                if last is None or not last.conclusive:
                    continue
                proven += 1
                time.sleep(0.005)
                again = driver._look()
                assert again is not None
                assert [(t.tid, t.state, t.runs) for t in again.threads] == [
                    (t.tid, t.state, t.runs) for t in last.threads
                ], "a thread ran after the rest"
                before, after = _shapes(last), _shapes(again)
                assert all(after[k] == v for k, v in before.items() if k in after)
            for c in clients:
                if c.active:
                    c.close()
        assert proven >= 6
    finally:
        for c in clients:
            if c.active:
                c.close()
        driver.close()
