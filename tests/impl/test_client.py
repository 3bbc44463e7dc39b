"""The interactive client (impl/client.py), used the way a person uses it.

Each test runs ``python -m impl.client`` on a pseudo-terminal (`pty.fork`, so
the terminal is the client's controlling terminal and typing Ctrl-C really
sends SIGINT), types into it and reads what the screen shows.  Standard error
goes to a separate pipe so the tests can tell error messages from output.

Every wait is bounded (`WAIT` seconds), every process a test starts is ended in
a ``finally``/``with``, and everything binds or connects to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pty
import select
import signal
import socket
import string
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from harness import REFERENCE_CMD
from runs import ROOT

from spec.drivers.base import HOST
from spec.drivers.server_process import ServerProcess, free_port

#: Upper bound on any single wait in this file, in seconds.
WAIT = 10.0
PROMPT = b">>:"


class Terminal:
    """The client running on a pseudo-terminal: type into it, read its screen."""

    def __init__(self, *args: str) -> None:
        self.screen = bytearray()  # everything written to the terminal
        self.err = bytearray()  # everything written to stderr
        self._mark = 0  # expect() searches the screen from here
        self.returncode: int | None = None
        pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "TERM": "dumb", "LANG": "C.UTF-8", "PYTHONPATH": pythonpath}
        env.pop("LC_ALL", None)
        env.pop("PYTHONUTF8", None)
        argv = [sys.executable, "-m", "impl.client", *args]
        err_r, err_w = os.pipe()
        pid, master = pty.fork()
        if pid == 0:  # child: only async-signal-safe-ish os calls, then exec
            try:
                os.dup2(err_w, 2)
                os.chdir(ROOT)
                # A terminal delivers Ctrl-C: undo the SIG_IGN a non-interactive
                # shell gives background jobs (`pytest ... &`), which exec keeps.
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                os.execve(sys.executable, argv, env)
            finally:
                os._exit(127)
        os.close(err_w)
        self.pid, self.master, self._err_fd = pid, master, err_r
        try:
            os.set_blocking(master, False)
            os.set_blocking(err_r, False)
            # A real terminal has a size; readline asks for it.
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        except BaseException:
            self.close()
            raise

    # -- reading -------------------------------------------------------------

    def _pump(self, timeout: float, write: bytes = b"") -> int:
        """Wait up to `timeout` for output (or room to write `write`); read what is
        there, write what fits.  Returns how many bytes of `write` went out."""
        fds = [fd for fd in (self.master, self._err_fd) if fd >= 0]
        if not fds:
            time.sleep(timeout)
            return 0
        wfds = [self.master] if write and self.master >= 0 else []
        readable, writable, _ = select.select(fds, wfds, [], timeout)
        for fd in readable:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            except OSError as e:  # EIO: the client side of the pty is closed
                if e.errno != errno.EIO:
                    raise
                data = b""
            if data:
                (self.screen if fd == self.master else self.err).extend(data)
            else:
                os.close(fd)
                if fd == self.master:
                    self.master = -1
                else:
                    self._err_fd = -1
        if writable:
            try:
                return os.write(self.master, write[:4096])
            except BlockingIOError:
                return 0
        return 0

    def expect(self, pattern: bytes, timeout: float = WAIT) -> bytes:
        """Wait until `pattern` appears on the screen after the last match;
        return the screen up to and including it."""
        deadline = time.monotonic() + timeout
        while True:
            at = self.screen.find(pattern, self._mark)
            if at >= 0:
                start, self._mark = self._mark, at + len(pattern)
                return bytes(self.screen[start : self._mark])
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.master < 0 and self._err_fd < 0):
                raise AssertionError(
                    f"{pattern[:80]!r} did not appear on the screen within {timeout:g} s\n"
                    f"screen tail: {bytes(self.screen[-500:])!r}\n"
                    f"stderr: {bytes(self.err)!r}"
                )
            self._pump(min(remaining, 0.2))

    # -- typing --------------------------------------------------------------

    def type(self, keys: bytes | str, timeout: float = WAIT) -> None:
        """Type `keys`, reading the screen meanwhile so neither side can block."""
        data = keys.encode() if isinstance(keys, str) else keys
        deadline = time.monotonic() + timeout
        while data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"could not type {len(data)} more bytes within {timeout:g} s")
            if self.master < 0:
                raise AssertionError("the client's terminal closed while typing")
            data = data[self._pump(min(remaining, 0.2), data) :]

    def line(self, text: str) -> None:
        """At the next prompt, type a line and press Enter."""
        self.expect(PROMPT)
        self.type(text.encode() + b"\r")

    def ctrl_d(self) -> None:
        """At the next prompt, press Ctrl-D.

        Like a person, wait for the prompt first: a Ctrl-D typed ahead reaches
        the terminal while it is still in cooked mode, which stores it as a NUL
        byte, and readline then reads ^@ instead of end of input.
        """
        self.expect(PROMPT)
        self.type(b"\x04")

    def ctrl_c(self) -> None:
        """Press Ctrl-C once the client is blocked waiting (as a person would).

        The terminal turns Ctrl-C into SIGINT.  CPython notices a SIGINT only
        when a blocking call is interrupted or between bytecodes, so one that
        lands in the microseconds after the prompt is written but before
        input() blocks is only acted on at the next key; no person is that
        fast, but a test is.  So wait until the client is asleep first.
        """
        deadline = time.monotonic() + WAIT
        stat = Path(f"/proc/{self.pid}/stat")
        while True:
            try:
                # The state follows the parenthesised command name.
                state = stat.read_text().rpartition(")")[2].split()[0]
            except (OSError, IndexError):
                time.sleep(0.2)  # no /proc: just give it a moment
                break
            if state == "S":
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"the client never blocked (state {state!r})")
            self._pump(0.01)
        self.type(b"\x03")

    # -- ending --------------------------------------------------------------

    def wait(self, timeout: float = WAIT) -> int:
        """Wait for the client to exit (reading its output meanwhile); its exit code."""
        deadline = time.monotonic() + timeout
        while self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"the client did not exit within {timeout:g} s\n"
                    f"screen tail: {bytes(self.screen[-500:])!r}\nstderr: {bytes(self.err)!r}"
                )
            self._pump(min(remaining, 0.05))
        # Collect the rest of its output: both streams reach EOF soon after exit.
        drain_until = time.monotonic() + 2.0
        while (self.master >= 0 or self._err_fd >= 0) and time.monotonic() < drain_until:
            self._pump(0.05)
        return self.returncode

    def close(self) -> None:
        """Kill the client if it is still running; release everything."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)  # pty.fork made it a session leader
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                _, status = os.waitpid(self.pid, 0)
                self.returncode = os.waitstatus_to_exitcode(status)
        for fd in (self.master, self._err_fd):
            if fd >= 0:
                os.close(fd)
        self.master = self._err_fd = -1

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def everything(self) -> bytes:
        return bytes(self.screen) + bytes(self.err)


def assert_no_traceback(term: Terminal) -> None:
    assert b"Traceback" not in term.everything, term.everything.decode("utf-8", "replace")


# -- servers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """The reference server, shared by the tests of one module in one worker (a test that
    kills it takes conftest.py's `reference_process`, its own)."""
    with ServerProcess(REFERENCE_CMD) as s:
        yield s


@contextlib.contextmanager
def listener() -> Iterator[socket.socket]:
    """A listening socket on 127.0.0.1 that never accepts: connections complete
    (the kernel's backlog) but nothing is ever read or answered."""
    with socket.create_server((HOST, 0)) as s:
        yield s


@contextlib.contextmanager
def fake_server(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    """A one-connection server on 127.0.0.1 whose behaviour is `handle(conn)`,
    run in a thread.  Yields its port."""
    srv = socket.create_server((HOST, 0))
    srv.settimeout(WAIT)

    def run() -> None:
        with contextlib.suppress(OSError):
            conn, _ = srv.accept()
            with conn:
                conn.settimeout(WAIT)
                handle(conn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1]
    finally:
        with contextlib.suppress(OSError):
            srv.shutdown(socket.SHUT_RDWR)  # wakes a thread still blocked in accept()
        srv.close()
        thread.join(WAIT)


def dribble(
    transform: Callable[[bytes], bytes] = bytes.upper, chunk: int = 3, delay: float = 0.02
) -> Callable[[socket.socket], None]:
    """Answer each read with transform(data), `chunk` bytes at a time with a
    pause between: the reply arrives in pieces, as TCP is allowed to deliver it."""

    def handle(conn: socket.socket) -> None:
        while data := conn.recv(65536):
            out = transform(data)
            for i in range(0, len(out), chunk):
                conn.sendall(out[i : i + chunk])
                time.sleep(delay)

    return handle


def silent(received: threading.Event) -> Callable[[socket.socket], None]:
    """Read the line, never answer; return when the client goes away."""

    def handle(conn: socket.socket) -> None:
        if conn.recv(65536):
            received.set()
            while conn.recv(65536):
                pass

    return handle


def reset_on_data(conn: socket.socket) -> None:
    """Answer the first line with a reset (RST) instead of an echo."""
    conn.recv(65536)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


# -- the tests -----------------------------------------------------------------


def test_prompt_then_lines_come_back_uppercased(server: ServerProcess) -> None:
    with Terminal("--port", str(server.port)) as term:
        term.line("hello")
        term.expect(b"recv: HELLO\r\n")
        term.line("  Mixed Case, digits 123 and spaces  ")
        term.expect(b"recv: MIXED CASE, DIGITS 123 AND SPACES\r\n")
        term.ctrl_d()
        assert term.wait() == 0
    assert term.err == b""
    assert_no_traceback(term)


def test_a_long_line_comes_back_whole(server: ServerProcess) -> None:
    # Longer than the seed's recv(1024) and than the terminal's 4095-byte
    # cooked-mode line limit.
    text = (string.ascii_lowercase * 200)[:5000]
    with Terminal("--port", str(server.port)) as term:
        term.line(text)
        term.expect(b"recv: " + text.upper().encode() + b"\r\n")
        term.line("after")  # still in step: the next reply is this line's
        term.expect(b"recv: AFTER\r\n")
        term.ctrl_d()
        assert term.wait() == 0
    assert_no_traceback(term)


@pytest.mark.parametrize("text", ["héllo", "straße ünïcödé 日本語 😀 end"])
def test_non_ascii_input(server: ServerProcess, text: str) -> None:
    # The server uppercases bytes: ASCII letters change, UTF-8 sequences do not.
    expected = text.encode().upper()
    with Terminal("--port", str(server.port)) as term:
        term.line(text)
        term.expect(b"recv: " + expected + b"\r\n")
        term.ctrl_d()
        assert term.wait() == 0
    assert term.err == b""
    assert_no_traceback(term)


def test_empty_and_blank_lines_are_skipped(server: ServerProcess) -> None:
    with Terminal("--port", str(server.port)) as term:
        term.line("")  # line() waits for a prompt: each of these gets a new one
        term.line("   \t ")
        term.line("x")
        term.expect(b"recv: X\r\n")
        term.ctrl_d()
        assert term.wait() == 0
    # Had a blank line been sent, its echo would have been a reply of its own.
    assert term.screen.count(b"recv:") == 1
    assert term.screen.count(PROMPT) == 4
    assert_no_traceback(term)


def test_ctrl_d_ends_cleanly(server: ServerProcess) -> None:
    with Terminal("--port", str(server.port)) as term:
        term.ctrl_d()
        assert term.wait() == 0
    # A newline after the prompt, so the shell's prompt starts on its own line.
    assert term.screen.endswith(PROMPT + b"\r\n"), bytes(term.screen)
    assert term.err == b""


def test_ctrl_c_at_the_prompt_ends_cleanly(server: ServerProcess) -> None:
    with Terminal("--port", str(server.port)) as term:
        term.expect(PROMPT)
        term.ctrl_c()
        assert term.wait() == 130
    assert term.err == b""
    assert_no_traceback(term)


def test_ctrl_c_while_waiting_for_a_reply_ends_cleanly() -> None:
    received = threading.Event()
    with (
        fake_server(silent(received)) as port,
        Terminal("--port", str(port), "--timeout", "60") as term,
    ):
        term.line("hello")
        assert received.wait(WAIT), "the client never sent the line"
        term.ctrl_c()  # while it waits for the echo that never comes
        assert term.wait() == 130
    assert term.err == b""
    assert_no_traceback(term)


def test_server_not_running() -> None:
    port = free_port()  # nothing listens here
    with Terminal("--port", str(port)) as term:
        assert term.wait() == 1
    assert (
        f"cannot connect to 127.0.0.1:{port}: connection refused (is the server running?)"
    ).encode() in term.err
    assert PROMPT not in term.screen
    assert_no_traceback(term)


@pytest.mark.parametrize("host", ["no such host", "bad..host"])
def test_host_that_cannot_be_resolved(host: str) -> None:
    # Both names fail before any DNS query is made (glibc rejects the first,
    # Python's IDNA codec the second), so this needs no network.
    with Terminal("--host", host, "--port", "10000") as term:
        assert term.wait() == 1
    assert f"cannot resolve host {host!r}".encode() in term.err
    assert_no_traceback(term)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_server_killed_mid_session(reference_process: ServerProcess, sig: signal.Signals) -> None:
    with Terminal("--port", str(reference_process.port)) as term:
        term.line("hello")
        term.expect(b"recv: HELLO\r\n")
        assert reference_process.process is not None
        tree = [psutil.Process(pid) for pid in reference_process.pids()]
        os.killpg(reference_process.process.pid, sig)
        reference_process.process.wait(WAIT)
        # The server itself ends a moment later, with the namespace its init held.
        psutil.wait_procs(tree, timeout=WAIT)
        term.line("are you there")
        assert term.wait() == 1
    assert b"server closed the connection" in term.err
    assert_no_traceback(term)


def test_server_resets_the_connection() -> None:
    with fake_server(reset_on_data) as port, Terminal("--port", str(port)) as term:
        term.line("hello")
        assert term.wait() == 1
    assert b"server closed the connection" in term.err
    assert_no_traceback(term)


def test_reply_timeout() -> None:
    received = threading.Event()
    with (
        fake_server(silent(received)) as port,
        Terminal("--port", str(port), "--timeout", "0.5") as term,
    ):
        term.line("hello")
        started = time.monotonic()
        assert term.wait() == 1
        assert time.monotonic() - started < 5
    assert b"timed out" in term.err
    assert_no_traceback(term)


def test_a_reply_arriving_in_pieces_is_read_whole() -> None:
    # The seed's single recv(1024) would print "recv: HEL" here, and the rest
    # of this reply as the "reply" to the next line.
    with fake_server(dribble(chunk=3)) as port, Terminal("--port", str(port)) as term:
        term.line("hello world")
        term.expect(b"recv: HELLO WORLD\r\n")
        term.line("next")
        term.expect(b"recv: NEXT\r\n")
        term.ctrl_d()
        assert term.wait() == 0
    assert_no_traceback(term)


def test_a_character_split_between_pieces_is_decoded_whole() -> None:
    with fake_server(dribble(chunk=1, delay=0.01)) as port, Terminal("--port", str(port)) as term:
        term.line("héllo 日本")
        term.expect("recv: HéLLO 日本\r\n".encode())
        term.ctrl_d()
        assert term.wait() == 0
    assert_no_traceback(term)


def test_a_reply_that_is_not_utf8_does_not_crash() -> None:
    with (
        fake_server(dribble(lambda d: b"\xff" * len(d), chunk=64)) as port,
        Terminal("--port", str(port)) as term,
    ):
        term.line("abc")
        term.expect("recv: \ufffd\ufffd\ufffd\r\n".encode())
        term.ctrl_d()
        assert term.wait() == 0
    assert_no_traceback(term)


def test_help() -> None:
    with Terminal("--help") as term:
        assert term.wait() == 0
    out = bytes(term.screen)
    assert b"usage: echo-client" in out
    for option in (b"--host", b"--port", b"--timeout"):
        assert option in out


@pytest.mark.parametrize(
    "args", [["--port", "70000"], ["--port", "abc"], ["--timeout", "0"], ["--bogus"]]
)
def test_usage_errors(args: list[str]) -> None:
    with Terminal(*args) as term:
        assert term.wait() == 2
    assert b"usage: echo-client" in term.err
    assert_no_traceback(term)


def test_lines_from_a_pipe_including_a_very_long_one(server: ServerProcess) -> None:
    # Not a terminal: `printf ... | echo-client`.  The 4 MiB line is far more
    # than the server buffers before it stops reading (backpressure), so a
    # client that sent it all before reading anything would deadlock.
    big = b"ab\xc3\xa9" * (1 << 20)
    result = subprocess.run(
        [sys.executable, "-m", "impl.client", "--port", str(server.port)],
        input=b"hello\n\n" + big + b"\n",
        capture_output=True,
        timeout=WAIT,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == (b">>:recv: HELLO\n>>:>>:recv: " + big.upper() + b"\n>>:\n")
    assert result.stderr == b""
