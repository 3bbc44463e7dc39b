"""The reference server out of descriptors (EMFILE): it refuses, keeps serving, recovers.

The server runs in a subprocess whose RLIMIT_NOFILE is only 64 (`EMFILE_SCRIPT`),
so a few dozen connections exhaust it.  The extra connections must be refused
cleanly (closed, not left hanging), without a busy loop while accept() keeps
failing, the clients already connected must still be served, and once
descriptors are free again new connections must be served again (ECHO-5,
ECHO-10).
"""

from __future__ import annotations

import signal
import socket
import sys
import tempfile
import textwrap
import time

import psutil
from harness import HOST, echo_or_refusal, read_line, running

#: The server under a descriptor limit, for ``python -c``: argv[1] is its RLIMIT_NOFILE,
#: argv[2] how many seconds it serves before it exits.
EMFILE_SCRIPT = textwrap.dedent("""
    import resource, signal, sys, time
    from impl.select_server import SelectEchoServer

    limit = int(sys.argv[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    server = SelectEchoServer("127.0.0.1", 0)
    print(server.address[1], flush=True)
    deadline = time.monotonic() + float(sys.argv[2])
    try:
        while time.monotonic() < deadline:
            server.poll(0.2)
    finally:
        server.close()
    """)


def test_out_of_descriptors_refuses_cleanly_and_keeps_serving() -> None:
    limit, first_count, extra_count = 64, 20, 60
    argv = [sys.executable, "-c", EMFILE_SCRIPT, str(limit), "60"]
    with tempfile.TemporaryFile() as stderr:
        with running(argv, stderr) as proc:
            socks: list[socket.socket] = []
            try:
                port = int(read_line(proc, 10.0))
                address = (HOST, port)
                first = [socket.create_connection(address, timeout=5.0) for _ in range(first_count)]
                socks += first
                deadline = time.monotonic() + 10.0
                for i, s in enumerate(first):
                    assert echo_or_refusal(s, b"first %d" % i, deadline) == "served"
                extras = [
                    socket.create_connection(address, timeout=5.0) for _ in range(extra_count)
                ]
                socks += extras
                deadline = time.monotonic() + 10.0
                outcomes = [
                    echo_or_refusal(s, b"extra %d" % i, deadline) for i, s in enumerate(extras)
                ]
                assert "hung" not in outcomes, outcomes
                refused = outcomes.count("refused")
                # 0, 1, 2, the listener and the spare descriptor are taken.
                assert refused >= first_count + extra_count - (limit - 5), outcomes
                assert proc.poll() is None, "the server died when it ran out of descriptors"
                # Not a busy loop: idle once the extra connections are refused.
                p = psutil.Process(proc.pid)
                before = sum(p.cpu_times()[:2])
                time.sleep(1.0)  # a measuring window, not synchronisation
                cpu = sum(p.cpu_times()[:2]) - before
                print(
                    f"\nout of descriptors: {refused} of {extra_count} extra connections "
                    f"refused; server CPU over the next 1 s: {cpu:.3f} s"
                )
                assert cpu < 0.1, f"{cpu:.3f} s of CPU in 1 s while out of descriptors"
                # The first clients are still served.
                deadline = time.monotonic() + 10.0
                for i, s in enumerate(first):
                    assert echo_or_refusal(s, b"again %d" % i, deadline) == "served"
                # Once descriptors are free again, new connections are served again.
                for s in extras:
                    s.close()
                deadline = time.monotonic() + 10.0
                while True:
                    with socket.create_connection(address, timeout=5.0) as late:
                        if echo_or_refusal(late, b"late", deadline) == "served":
                            break
                    assert time.monotonic() < deadline, "no new connection served after recovery"
                assert proc.poll() is None
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(10) == 0
            finally:
                for s in socks:
                    s.close()
        stderr.seek(0)
        log = stderr.read().decode(errors="replace")
    assert "out of file descriptors: refusing" in log
    assert "Traceback" not in log, log
