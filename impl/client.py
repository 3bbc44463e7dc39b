"""The seed tutorial's interactive client, made correct and friendly.

Usage::

    python -m impl.client [--host 127.0.0.1] [--port 10000] [--timeout 5]
    echo-client --port 10000            # the same, as the installed script

It connects to an uppercase echo server, shows the seed's ``>>:`` prompt, and
for every line typed (stripped; empty lines are skipped) sends it and prints
the echo the way the seed does::

    >>:hello
    recv: HELLO

Ctrl-D (end of input) ends the session with exit status 0.  When standard input
is not a terminal the client reads lines from it, so ``printf 'a\\nb\\n' |
echo-client`` works too.

What was wrong with the seed's client, and what this one does instead:

* The seed did ``client.recv(1024)`` once per line.  TCP is a byte stream: one
  recv may return only part of the echo (the rest is printed after the *next*
  line, so every answer after that is out of step), and an echo longer than
  1024 bytes can never arrive in one piece.  The server echoes every byte it
  receives (uppercased, see ``impl/select_server.py``), so this client reads
  until it has exactly as many bytes as it sent, no more and no less.
* The seed sent with ``send()``, which may send only part of a long line, and
  it would send everything before reading anything.  A server that applies
  backpressure (ECHO-8) stops reading once its backlog is full, so a long line
  would deadlock both sides.  Here sending and receiving are interleaved in one
  ``select()`` loop, so a line of any length goes through.
* The seed waited for the echo forever.  Here ``--timeout`` (default 5 s)
  bounds every wait: connecting, and each stretch of a reply during which the
  server sends nothing at all.
* The seed printed ``data.decode()``, which crashes on bytes that are not
  UTF-8 and on a multi-byte character split between two recv()s.  Here the
  whole reply is decoded at once with ``errors="replace"``.  Lines are sent as
  UTF-8; bytes from the terminal that are not valid in its encoding are sent as
  they are rather than crashing ``input()``.
* The seed died with a traceback when the server was not running, went away
  mid-session, or when the user pressed Ctrl-C or Ctrl-D, and never closed its
  socket on those paths.  Here every one of them ends with one line on stderr
  (or none, for Ctrl-D/Ctrl-C) and a meaningful exit status, and the socket is
  always closed.
* When stdin and stdout are a terminal the ``readline`` module is used (if
  present): line editing and history, and it reads the terminal a character at
  a time, so a pasted line is not cut at the kernel's 4095-byte limit for a
  line in canonical (cooked) mode.  Without readline such a line is truncated
  by the terminal before the client ever sees it.

Exit status:

* 0 -- the session ended normally: end of input (Ctrl-D).
* 1 -- the server could not be reached (connection refused, host not
  resolvable, connect timed out), closed or reset the connection, or sent no
  reply within ``--timeout``.  One line on stderr says which.
* 2 -- usage error (argparse's own status).
* 130 -- interrupted with Ctrl-C.  The client ends cleanly (no traceback,
  socket closed, a newline so the shell prompt starts on its own line), but
  with the status shells give a command ended by SIGINT (128 + 2), so that a
  script running ``echo-client && next-step`` does not carry on after the user
  interrupted it.  Ctrl-D is the way to say "I'm done" (status 0).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import math
import os
import select
import socket
import sys
from collections.abc import Sequence

PROMPT = ">>:"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 10000
DEFAULT_TIMEOUT = 5.0
#: Largest single recv()/send() the exchange loop asks for.
CHUNK = 64 * 1024

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


class SessionError(Exception):
    """A connection problem that ends the session; the message is for the user."""


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def connect(host: str, port: int, timeout: float) -> socket.socket:
    """Connect to the server, turning every failure into a SessionError."""
    where = _where(host, port)
    try:
        return socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        raise SessionError(
            f"cannot connect to {where}: connection refused (is the server running?)"
        ) from None
    except socket.gaierror as e:
        raise SessionError(f"cannot resolve host {host!r}: {e.strerror}") from None
    except UnicodeError:  # the IDNA codec rejects names such as 'a..b'
        raise SessionError(f"cannot resolve host {host!r}: not a valid host name") from None
    except TimeoutError:
        raise SessionError(f"cannot connect to {where}: timed out after {timeout:g} s") from None
    except OSError as e:
        raise SessionError(f"cannot connect to {where}: {e.strerror or e}") from None


def exchange(sock: socket.socket, data: bytes, timeout: float) -> bytes:
    """Send `data` and return the echo: exactly ``len(data)`` bytes.

    Sending and receiving share one select() loop, so a server that stops
    reading until its echo has been read (backpressure) cannot deadlock us.
    `timeout` bounds every wait in which no byte moves either way.
    """
    sock.setblocking(False)
    unsent = memoryview(data)
    reply = bytearray()
    while len(reply) < len(data):
        readable, writable, _ = select.select([sock], [sock] if unsent else [], [], timeout)
        if not readable and not writable:
            raise SessionError(
                f"timed out: the server sent no reply for {timeout:g} s "
                f"(received {len(reply)} of {len(data)} bytes)"
            )
        if writable:
            try:
                unsent = unsent[sock.send(unsent[:CHUNK]) :]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as e:
                raise _connection_error(e) from None
        if readable:
            try:
                chunk = sock.recv(min(CHUNK, len(data) - len(reply)))
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                raise _connection_error(e) from None
            if not chunk:
                raise SessionError(
                    "server closed the connection"
                    + (f" (after {len(reply)} of {len(data)} reply bytes)" if reply else "")
                )
            reply += chunk
    return bytes(reply)


def _connection_error(e: OSError) -> SessionError:
    if isinstance(e, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return SessionError("server closed the connection (reset)")
    return SessionError(f"connection error: {e.strerror or e}")


def session(sock: socket.socket, timeout: float) -> None:
    """The seed's loop: prompt, strip, skip empty lines, send, print the echo."""
    while True:
        msg = input(PROMPT).strip()
        if len(msg) == 0:
            continue
        data = msg.encode("utf-8", "surrogateescape")
        reply = exchange(sock, data, timeout)
        print("recv:", reply.decode("utf-8", "replace"), flush=True)


def _tolerant_stdio() -> None:
    """Let no byte crash the client: undecodable input passes through as raw
    bytes, unprintable output is replaced."""
    for stream, errors in (
        (sys.stdin, "surrogateescape"),
        (sys.stdout, "replace"),
        (sys.stderr, "backslashreplace"),
    ):
        with contextlib.suppress(AttributeError, ValueError, io.UnsupportedOperation):
            stream.reconfigure(errors=errors)  # type: ignore[union-attr]


def _line_editing() -> None:
    """Use readline on a terminal: editing, history, and no 4095-byte line limit."""
    try:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            return
        readline = importlib.import_module("readline")
    except (ImportError, AttributeError, ValueError):
        return
    if "libedit" not in (readline.__doc__ or ""):
        # Tab is text to echo, not a request to complete file names.
        readline.parse_and_bind("tab: tab-insert")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="echo-client",
        description="Interactive client for the uppercase echo server: type a line, "
        "see it come back uppercased.  Ctrl-D quits.",
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"server host name or address (default: {DEFAULT_HOST})",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"server TCP port (default: {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="give up when connecting, or waiting for a reply, makes no "
        f"progress for this long (default: {DEFAULT_TIMEOUT:g})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not 1 <= args.port <= 65535:
        parser.error(f"--port must be between 1 and 65535, not {args.port}")
    if not (args.timeout > 0 and math.isfinite(args.timeout)):
        parser.error(f"--timeout must be a positive number of seconds, not {args.timeout:g}")
    _tolerant_stdio()
    try:
        _line_editing()
        with connect(args.host, args.port, args.timeout) as sock:
            session(sock, args.timeout)
    except SessionError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    except EOFError:  # Ctrl-D
        with contextlib.suppress(OSError):
            print(flush=True)
        return EXIT_OK
    except KeyboardInterrupt:  # Ctrl-C
        with contextlib.suppress(OSError):
            print(flush=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Our stdout went away (e.g. `echo-client | head -1`).  Point it at
        # /dev/null so the interpreter's final flush does not complain.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    return EXIT_OK  # not reached: session() only ends by an exception


if __name__ == "__main__":
    raise SystemExit(main())
