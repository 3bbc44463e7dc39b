"""The in-process driver's settle: echo the kernel still owes is waited for, lost echo is not.

A client that does not read can make its kernel drop a segment its window
still had room for; the server's kernel then resends it on its retransmission
timer, backed off (0.2 s, 0.4 s, 0.8 s, ...) for as long as the client goes on
not reading.  Once the client reads again, that echo arrives only when the
timer fires, which can be long after the driver's `stall`.  On a loaded
machine a flood's non-reading phase lasts long enough for the backoff to
exceed the 5 s `stall`, and the seed server's ECHO-2 was judged FAIL ("echo
bytes never arrived") with the echo still on its way.  Here the drop is made
on purpose (the client's receive buffer shrunk below what it already holds)
and `stall` is shortened below the timer instead of the machine being loaded.
"""

from __future__ import annotations

import socket
import time

import pytest
from harness import make_the_client_drop_echo

from impl.select_server import SelectEchoServer
from spec.drivers import sock_diag
from spec.drivers.clients import BUFFER_SIZE, Client
from spec.drivers.inprocess import InProcessDriver

ECHO = 32 * 1024


def test_echo_the_kernel_retransmits_on_a_backed_off_timer_is_waited_for() -> None:
    driver = InProcessDriver(SelectEchoServer)
    driver.start()
    c = Client("c0", driver.connect(), lambda: ())
    netlink = sock_diag.open_netlink()
    try:
        make_the_client_drop_echo(driver, c, ECHO)
        server_end = sock_diag.lookup(netlink, driver.address, c.local_address)
        client_end = sock_diag.lookup(netlink, c.local_address, driver.address)
        if not (
            server_end is not None
            and client_end is not None
            and server_end.timer == sock_diag.RETRANSMIT_TIMER
            and server_end.wqueue == ECHO
            and client_end.rqueue == ECHO
        ):
            pytest.skip(f"this kernel did not drop the echo ({server_end}, {client_end})")
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER_SIZE)
        c.model.reading = True
        driver.stall = 0.05  # well before the retransmission
        driver.settle([c], lambda: not c.expects_more)
        assert c.violation is None
        assert c.model.received_count == 2 * ECHO, "echo still on its way was judged lost"
    finally:
        netlink.close()
        c.close()
        driver.close()


def test_lost_echo_is_still_judged_at_once() -> None:
    """Nothing in flight, nothing resent: the settle ends without waiting for `stall`."""

    class Forgetful(SelectEchoServer):
        def transform(self, data: bytes) -> bytes:
            return b""  # every byte read is lost

    driver = InProcessDriver(Forgetful)
    driver.start()
    c = Client("c0", driver.connect(), lambda: ())
    try:
        driver.settle([c], lambda: not c.expects_more)
        c.queue(b"lost")
        started = time.monotonic()
        driver.settle([c], lambda: not c.expects_more)
        assert c.model.outstanding == 4
        assert time.monotonic() - started < driver.stall / 2
    finally:
        c.close()
        driver.close()


def _end(state: sock_diag.TcpState, *, rqueue: int = 0, wqueue: int = 0, timer: int = 0):  # type: ignore[no-untyped-def]
    return sock_diag.TcpSocket(
        ("127.0.0.1", 1), ("127.0.0.1", 2), state, rqueue, wqueue, 1, timer=timer
    )


@pytest.mark.parametrize(
    ("sender", "receiver", "resends"),
    [
        # Dropped, and the receiver has read everything: the next retransmission lands.
        (
            _end(sock_diag.TcpState.ESTABLISHED, wqueue=1024, timer=sock_diag.RETRANSMIT_TIMER),
            _end(sock_diag.TcpState.ESTABLISHED),
            True,
        ),
        # The receiver is not reading: what waits for it is not in flight.
        (
            _end(sock_diag.TcpState.ESTABLISHED, wqueue=1024, timer=sock_diag.RETRANSMIT_TIMER),
            _end(sock_diag.TcpState.ESTABLISHED, rqueue=4096),
            False,
        ),
        # A zero-window probe facing a receiver read empty: it sends when it fires
        # (the receiver's window update does not always come).
        (
            _end(sock_diag.TcpState.ESTABLISHED, wqueue=1024, timer=sock_diag.PROBE_TIMER),
            _end(sock_diag.TcpState.ESTABLISHED),
            True,
        ),
        # ... a receiver that does not read: it waits for the receiver, not the kernel.
        (
            _end(sock_diag.TcpState.ESTABLISHED, wqueue=1024, timer=sock_diag.PROBE_TIMER),
            _end(sock_diag.TcpState.ESTABLISHED, rqueue=4096),
            False,
        ),
        # Nothing queued, or the receiver gone: nothing to resend.
        (
            _end(sock_diag.TcpState.ESTABLISHED, timer=sock_diag.RETRANSMIT_TIMER),
            _end(sock_diag.TcpState.ESTABLISHED),
            False,
        ),
        (
            _end(sock_diag.TcpState.ESTABLISHED, wqueue=1024, timer=sock_diag.RETRANSMIT_TIMER),
            None,
            False,
        ),
    ],
)
def test_will_resend(
    sender: sock_diag.TcpSocket, receiver: sock_diag.TcpSocket | None, resends: bool
) -> None:
    assert sock_diag.will_resend(sender, receiver) is resends


def _with(end: sock_diag.TcpSocket, **fields: object) -> sock_diag.TcpSocket:
    return end._replace(**fields)


@pytest.mark.parametrize(
    ("server_end", "client_end", "moving"),
    [
        # Held back by the client's window, and the client has read its queue
        # empty: the server's zero-window probe will send (seen on the host's
        # loopback: the window update did not come, the probe did, seconds later).
        (
            _with(_end(sock_diag.TcpState.ESTABLISHED, wqueue=29406), notsent=29406, timer=4),
            _end(sock_diag.TcpState.ESTABLISHED),
            True,
        ),
        # ... the client has not read: the bytes wait for it, not for the kernel.
        (
            _with(_end(sock_diag.TcpState.ESTABLISHED, wqueue=29406), notsent=29406, timer=4),
            _end(sock_diag.TcpState.ESTABLISHED, rqueue=522000),
            False,
        ),
        # Nothing held back, no timer: at rest.
        (_end(sock_diag.TcpState.ESTABLISHED), _end(sock_diag.TcpState.ESTABLISHED), False),
    ],
)
def test_bytes_a_probe_will_send_are_in_flight(
    server_end: sock_diag.TcpSocket, client_end: sock_diag.TcpSocket, moving: bool
) -> None:
    assert sock_diag.in_flight(client_end, server_end) is moving
    assert sock_diag.will_resend(server_end, client_end) is moving
