"""The process driver's settle: echo the kernel will retransmit is waited for.

As in test_inprocess_driver.py: a client that does not read makes its kernel
drop echo its window had room for (its receive buffer shrunk below what it
already holds), the server's kernel resends it on a backed-off timer, and
`stall` is shortened below that timer instead of the machine being loaded.
The server runs as a process in the checker's private network.
"""

from __future__ import annotations

import socket
import sys

import pytest
from harness import make_the_client_drop_echo

from spec.drivers import sock_diag
from spec.drivers.clients import BUFFER_SIZE, Client
from spec.drivers.network import PrivateNetwork, host_buffers, host_flood
from spec.drivers.process import ProcessDriver
from spec.machine import BACKS_UP, EchoConformance
from spec.program import MAX_PAYLOAD_SIZE, MiB, Payload

ECHO = 16 * 1024


@pytest.mark.skipif(PrivateNetwork.shared() is None, reason="network namespaces are not allowed")
def test_echo_the_kernel_retransmits_on_a_backed_off_timer_is_waited_for() -> None:
    driver = ProcessDriver(f"{sys.executable} -m impl.select_server --port {{port}}")
    driver.start()
    c = Client("c0", driver.connect(), lambda: ())
    try:
        make_the_client_drop_echo(driver, c, ECHO)
        server_end = driver._lookup(driver.address, c.local_address)
        client_end = driver._lookup(c.local_address, driver.address)
        if not (
            server_end is not None
            and client_end is not None
            and server_end.timer == sock_diag.RETRANSMIT_TIMER
            and server_end.wqueue > 0
            and client_end.rqueue == ECHO
        ):
            pytest.skip(f"this kernel did not drop the echo ({server_end}, {client_end})")
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER_SIZE)
        c.model.reading = True
        driver.stall = 0.05  # well before the retransmission
        driver.settle([c], lambda: not c.expects_more)
        assert c.violation is None
        assert not driver.restless
        assert c.model.received_count == 2 * ECHO, "echo still on its way was judged lost"
    finally:
        c.close()
        driver.close()


def test_a_server_that_never_rests_is_named_in_the_report() -> None:
    """A busy loop (select with a zero timeout) never sleeps: its steps are
    judged by the clock, and the outcome's environment says so."""
    from hypothesis import settings

    from spec.checker import check
    from spec.targets import Target

    outcome = check(
        Target("impl", "impl.zoo.resources:ZeroTimeoutServer").as_process(),
        "ECHO-1",
        hypothesis_settings=settings(max_examples=2, stateful_step_count=2, database=None),
        budget=30,
    )
    assert "restless" in outcome.environment, outcome.environment


@pytest.mark.parametrize(
    ("limit", "backs_up", "base", "drawn", "sent"),
    [
        (None, None, 0, BACKS_UP, BACKS_UP),  # in-process: the machine's own sizes
        (MiB, MiB, 0, BACKS_UP, MiB),  # the private network: every flood at most 1 MiB
        (MiB, MiB, 0, 2 * MiB, MiB),
        (MiB, MiB, 0, 100_000, 100_000),
        (None, 10 * MiB, 8 * MiB, BACKS_UP, 10 * MiB),  # the host: the flood that backs up there
        # and the others on top of what the host's buffers hold, once only
        (None, 10 * MiB, 8 * MiB, 2 * MiB, 10 * MiB),
        (None, 10 * MiB, 8 * MiB, 100_000, 8 * MiB + 100_000),
        (None, 10 * MiB, 8 * MiB, 8 * MiB + 100_000, 8 * MiB + 100_000),
    ],
)
def test_a_flood_is_sent_at_the_size_that_backs_up_where_it_runs(
    limit: int | None, backs_up: int | None, base: int, drawn: int, sent: int
) -> None:
    class Sizes:
        flood_limit, flood_backs_up, flood_base = limit, backs_up, base

    machine = type("Machine", (), {"driver": Sizes()})()
    payload = EchoConformance._sized(machine, Payload(b"ab", drawn))  # type: ignore[arg-type]
    assert payload == Payload(b"ab", sent)


def test_the_process_driver_floods_as_its_network_allows() -> None:
    network = PrivateNetwork.shared()
    if network is not None:
        private = ProcessDriver("true", settle=1.0, private_network=True)
        assert private.flood_backs_up == private.flood_limit == network.flood_limit
    host = ProcessDriver("true", settle=1.0, private_network=False)
    assert host.flood_limit is None and host.flood_backs_up == host_flood(
        BUFFER_SIZE, MAX_PAYLOAD_SIZE
    )
    assert host.flood_base == (0 if host.flood_backs_up is None else host_buffers(BUFFER_SIZE))
