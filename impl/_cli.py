"""Run any steppable server class as a command.

Every server in `impl/` (the reference, the seed's reproductions, the
alternative designs and the defect zoo) shares this front end, so they all take
the same options, log the same way and exit the same way:

    python -m impl.select_server --host 127.0.0.1 --port 10000 --log-level INFO

A steppable server class is constructed as ``cls(host, port)``, exposes
``.address`` and ``.serve_forever()`` and releases everything in ``.close()``.
SIGINT and SIGTERM end the process cleanly with exit status 0; a port that
cannot be bound or a host that cannot be resolved ends it with status 2 and
one line saying why.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("impl")


class _Stop(Exception):
    """Raised from a signal handler to unwind serve_forever()."""


def _stop(signum: int, frame: Any) -> None:
    raise _Stop(signal.Signals(signum).name)


def run(
    factory: Callable[[str, int], Any],
    *,
    description: str,
    default_port: int,
    argv: Sequence[str] | None = None,
    default_host: str = "127.0.0.1",
) -> int:
    """Parse the command line, start the server, serve until a signal."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--host", default=default_host, help=f"address to listen on (default: {default_host})"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=default_port,
        help=f"TCP port, 0 for any free port (default: {default_port})",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging verbosity (default: INFO)",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be between 0 and 65535, not {args.port}")
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Handlers first: a signal that arrives while starting or closing must
    # still end the process with status 0, not kill it.
    old = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _serve(factory, args.host, args.port)
    except _Stop as e:
        log.info("received %s before serving, shutting down", e)
        return 0
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _serve(factory: Callable[[str, int], Any], host: str, port: int) -> int:
    try:
        # create_server() turns resolver errors into plain OSErrors; ask first.
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        print(f"error: cannot resolve host {host!r}: {getattr(e, 'strerror', e)}", file=sys.stderr)
        return 2
    try:
        server = factory(host, port)
    except OSError as e:
        hint = " (is another server running there?)" if e.errno == errno.EADDRINUSE else ""
        why = os.strerror(e.errno) if e.errno else str(e)
        print(f"error: cannot listen on {host}:{port}: {why}{hint}", file=sys.stderr)
        return 2
    try:
        bound_host, bound_port = server.address[:2]
        log.info("listening on %s:%d", bound_host, bound_port)
        # Some wrappers (scripts, the benchmarks) read this line.
        print(f"listening on {bound_host}:{bound_port}", flush=True)
        server.serve_forever()
    except _Stop as e:
        log.info("received %s, shutting down", e)
    finally:
        server.close()
    return 0
