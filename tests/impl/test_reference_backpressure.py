"""The reference server, stepped in this process: backpressure (ECHO-7, ECHO-8).

A client that sends without reading makes the server queue its echo; past
`backlog_limit` the server stops reading from it (so its queue stays bounded and
the client's sends stall), serves other clients meanwhile, and reads again once
the backlog has drained, losing nothing.  The in-process view shows the select
lists and queue sizes directly; `test_reference_as_process.py` measures the same
from outside (RSS, with a 64 MiB flood).
"""

from __future__ import annotations

import time

from harness import WAIT, MiB, Rig, exchange, step_until

from impl.select_server import SelectEchoServer


def test_backpressure_stops_reading_past_the_limit_and_resumes_after_drain(
    server: SelectEchoServer, rig: Rig
) -> None:
    limit = server.backlog_limit
    flooder = rig.peer(server, rcvbuf=4096)
    other = rig.peer(server)
    pattern = b"backpressure! 0123456789 abcdefghijklmnopqrstuvwxyz\n"
    payload = pattern * (64 * MiB // len(pattern))
    flooder.write(payload)
    # Send without reading until the server takes the connection out of inputs.
    step_until(
        server,
        lambda: flooder.conn not in server.inputs,
        each=flooder.send_some,
        seconds=WAIT,
        what="the server to stop reading from a client that does not read",
    )
    queue = server.message_queues[flooder.conn]
    assert len(queue) >= limit
    assert flooder.conn in server.outputs
    # Keep pushing: the server does not read more, so its queue stays bounded
    # and the client's sends stall once the kernel buffers are full.
    high_water = 0
    stalled_since = None
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        progressed = flooder.send_some()
        server.poll(0.01)
        high_water = max(high_water, len(server.message_queues[flooder.conn]))
        assert flooder.conn not in server.inputs
        if progressed:
            stalled_since = None
        elif stalled_since is None:
            stalled_since = time.monotonic()
        elif time.monotonic() - stalled_since > 0.3:
            break
    else:
        raise AssertionError("the client's sends never stalled: the server kept reading")
    assert limit <= high_water <= limit + server.recv_size
    assert flooder.sent < len(payload)
    # ECHO-7: another client is served meanwhile.
    assert exchange(server, other, b"not blocked") == b"NOT BLOCKED"
    # Stop sending, read everything: the backlog drains and reading resumes.
    sent = flooder.sent
    flooder.out.clear()
    readded = []

    def drain() -> None:
        flooder.read_some()
        if flooder.conn in server.inputs:
            readded.append(len(flooder.received))

    step_until(
        server,
        lambda: len(flooder.received) >= sent or flooder.eof or flooder.error,
        each=drain,
        what="the whole backlog to be echoed",
        seconds=30.0,
    )
    assert readded, "the connection was never put back in inputs"
    assert flooder.error is None and not flooder.eof
    assert bytes(flooder.received) == payload[:sent].upper()
    step_until(
        server,
        lambda: flooder.conn in server.inputs and flooder.conn not in server.outputs,
        seconds=WAIT,
        what="the drained connection to be read again",
    )
    assert server.message_queues[flooder.conn] == b""
    assert exchange(server, flooder, b"and on") == b"AND ON"
