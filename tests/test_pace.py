"""spec/drivers/pace.py: floods sized to the server's pace (issue 20)."""

from __future__ import annotations

import sys
from pathlib import Path

from impl.select_server import SelectEchoServer
from spec.drivers import pace
from spec.drivers.inprocess import InProcessDriver
from spec.drivers.server_process import ServerProcess
from spec.machine import CheckLog, EchoConformance, MiB, Payload

TRICKLE = Path(__file__).parent / "servers" / "trickle_server.py"


def test_the_limit_is_a_power_of_two_between_floor_and_ceiling() -> None:
    floor, ceiling = 256 * 1024, MiB
    assert pace.volume_limit(None, floor=floor, ceiling=ceiling) == ceiling
    assert pace.volume_limit(50e6, floor=floor, ceiling=ceiling) == ceiling
    assert pace.volume_limit(1.3e6, floor=floor, ceiling=ceiling) == 512 * 1024
    assert pace.volume_limit(1.0, floor=floor, ceiling=ceiling) == floor
    # A busy machine that slows the server a little seldom moves it.
    assert {pace.volume_limit(r, floor=floor, ceiling=ceiling) for r in (1.1e6, 1.5e6, 2e6)} == {
        512 * 1024
    }


def test_a_server_that_writes_16_bytes_at_a_time_is_paced_slower() -> None:
    rates = {}
    for name, command in {
        "reference": f"{sys.executable} -m impl.select_server --port {{port}}",
        "trickle": f"{sys.executable} {TRICKLE} --port {{port}}",
    }.items():
        with ServerProcess(command).start() as server:
            rates[name] = pace.probe(lambda server=server: server.connect(5))
    assert rates["reference"] and rates["trickle"], rates
    assert rates["trickle"] * 4 < rates["reference"], rates


def test_no_echo_is_no_pace() -> None:
    def refused():
        raise ConnectionRefusedError

    assert pace.probe(refused) is None


def test_floods_and_large_sends_are_cut_to_the_limit_and_printed_so() -> None:
    log = CheckLog(volume_limit=256 * 1024)
    machine = EchoConformance(InProcessDriver(SelectEchoServer), "ECHO-7", log)
    try:
        c0 = machine.connect()
        machine.send(c0, Payload(b"s", 2 * MiB), writes=1)
        machine.flood(c0, Payload(b"f", 4 * MiB))
        assert machine.program[-2:] == [
            "state.send(c0, Payload(b's', 262144), writes=1)",
            "state.flood(c0, Payload(b'f', 262144))",
        ]
    finally:
        machine.teardown()
