"""Run a steppable server class as a process, so it can be measured from outside.

    python -m spec.drivers.run_impl impl.select_server:SelectEchoServer --port 10000

The conformance checker uses this for the measured requirements (memory, idle
CPU, capacity) of an ``--impl`` target, and for the process driver.
"""

from __future__ import annotations

import argparse
import signal
import sys

from spec.targets import TargetError, load_impl


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("impl", help="MODULE:CLASS of a steppable server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        cls = load_impl(args.impl)
    except TargetError as e:
        parser.error(str(e))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = cls(args.host, args.port)
    try:
        while True:
            server.poll(None)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
