"""Start a server command on a free port, watch it, and always end it.

    with ServerProcess("python -m impl.select_server --port {port}") as server:
        socket.create_connection(server.address)
        server.memory_rss(), server.num_fds(), server.connections()

The command runs in its own session (process group), so ending it ends every
process it forked too.  On Linux it is also killed if the checker dies first
(PR_SET_PDEATHSIG), so a checker killed mid-run leaves no server listening.
Starting is bounded: the command must accept a TCP connection on
127.0.0.1:{port} within `start_timeout`, or `ServerStartError` says why, with
the tail of its stderr.  Errors a user can cause (no
``{port}`` in the command, a program that does not exist, a command that exits
at once) become one-line `ServerStartError`s that say what to do.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import psutil

from spec.drivers._listeners import listening_inodes

HOST = "127.0.0.1"

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the checker's thread that started it dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class ServerStartError(Exception):
    """The server command could not be started or never listened."""


def socket_descriptors(pid: int | str = "self") -> dict[int, int]:
    """{socket inode: descriptor} for the sockets process `pid` has open (Linux /proc)."""
    fd_dir = f"/proc/{pid}/fd"
    found: dict[int, int] = {}
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return found
    for name in names:
        try:
            link = os.readlink(f"{fd_dir}/{name}")
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor)
        if link.startswith("socket:["):
            found[int(link[8:-1])] = int(name)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class ServerProcess:
    #: Seconds the command has to start accepting connections.
    start_timeout = 10.0
    #: Seconds between SIGTERM and SIGKILL when stopping.
    stop_timeout = 3.0
    #: Bytes of stderr kept for error messages.
    tail_bytes = 2000
    #: Attempts with a fresh port when the command dies before listening
    #: (another process may have taken the free port in between).
    start_attempts = 3

    def __init__(self, command: str, *, start_timeout: float | None = None) -> None:
        if "{port}" not in command:
            raise ServerStartError(
                f"the server command {command!r} has no '{{port}}' placeholder; write where the "
                "port goes, e.g. --server-cmd 'python myserver.py --port {port}'")
        self.command = command
        if start_timeout is not None:
            self.start_timeout = start_timeout
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as self)

    @property
    def address(self) -> tuple[str, int]:
        return HOST, self.port

    # -- life cycle ------------------------------------------------------------

    def start(self) -> ServerProcess:
        """Run the command and wait (bounded) until it accepts connections."""
        return self.launch().ready()

    def launch(self) -> ServerProcess:
        """Run the command on a free port, without waiting for it to listen.

        The port is free now; the server binds it a moment later.  Meanwhile
        a connect() elsewhere could take it as its local port, but Linux
        gives connect() odd ports first and bind(port 0) even ones; and a
        server that exits on EADDRINUSE is launched again (`ready()`).
        """
        self.port = free_port()
        argv = shlex.split(self.command.replace("{port}", str(self.port)))
        self._stderr.seek(0)
        self._stderr.truncate()
        try:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=self._stderr, start_new_session=True,
                preexec_fn=_die_with_parent)
        except FileNotFoundError:
            raise ServerStartError(
                f"cannot run {argv[0]!r}: no such program (check the server command "
                f"{self.command!r})") from None
        except PermissionError:
            raise ServerStartError(f"cannot run {argv[0]!r}: permission denied") from None
        return self

    def ready(self) -> ServerProcess:
        """Wait until the launched command accepts connections.

        A command that exits before it listens is launched again on a fresh
        port (another process may have taken the free port in between), up to
        `start_attempts` times in all.
        """
        for attempt in range(self.start_attempts):
            if attempt:
                self.launch()
            try:
                self._wait_until_listening()
                return self
            except ServerStartError:
                exited = self.exit_code() is not None
                self.stop()
                if not exited or attempt == self.start_attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _wait_until_listening(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.exit_code() is not None:
                raise ServerStartError(
                    f"the server command exited with {self.exit_description()} before it "
                    f"listened on {HOST}:{self.port}{self._tail_note()}")
            try:
                socket.create_connection(self.address, timeout=0.5).close()
            except OSError:
                time.sleep(0.005)
                continue
            if self._listens():
                return
            # Another process took the port between free_port() and the
            # server's bind(): ours exits (EADDRINUSE) and is launched again.
            time.sleep(0.005)
        raise ServerStartError(
            f"the server command did not accept connections on {HOST}:{self.port} within "
            f"{self.start_timeout:g} s (does it listen on the port given for {{port}}, on "
            f"127.0.0.1?){self._tail_note()}")

    def stop(self) -> None:
        """End the whole process group: SIGTERM, then SIGKILL after stop_timeout.

        The leader is reaped only at the very end.  Until then it is at worst
        a zombie, and its PID, which is the group's ID, cannot be given to
        another process: killpg() can never reach a stranger's group.  (With
        pid_max at 32,768 and servers that start a thread per connection,
        PIDs do come round: a late SIGTERM once ended another check's server.)
        """
        if self.process is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.process.returncode is None:  # not reaped: the group ID is still ours
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.process.pid, sig)
            if self.wait_dead(self.stop_timeout):
                # The leader is gone; make sure no forked child outlives it.
                if self.process.returncode is None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(self.process.pid, signal.SIGKILL)
                break
        self.process.wait()

    def terminate(self) -> None:
        """Ask the whole process group to end (SIGTERM) without waiting; `stop()` finishes."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """Kill the whole process group (SIGKILL) without waiting; `stop()` reaps."""
        self._signal(signal.SIGKILL)

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.returncode is None:  # see stop()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)

    def close(self) -> None:
        self.stop()
        self._stderr.close()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- observation -----------------------------------------------------------

    def exit_code(self) -> int | None:
        """The leader's exit status (negative: the signal), or None while it runs.

        Observed with waitid(WNOWAIT), so the leader is not reaped (see stop).
        """
        assert self.process is not None
        if self.process.returncode is not None:
            return self.process.returncode
        try:
            info = os.waitid(os.P_PID, self.process.pid,
                             os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # reaped elsewhere
            return self.process.poll()
        if info is None:
            return None
        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status

    @property
    def alive(self) -> bool:
        return self.process is not None and self.exit_code() is None

    def wait_dead(self, timeout: float) -> bool:
        """Wait up to `timeout` for the server to exit (without reaping it); True if it has."""
        if self.process is None:
            return False
        deadline = time.monotonic() + timeout
        while self.exit_code() is None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def exit_description(self) -> str:
        code = self.exit_code()
        if code is None:
            return "no exit (still running)"
        if code < 0:
            try:
                return f"signal {signal.Signals(-code).name}"
            except ValueError:
                return f"signal {-code}"
        return f"exit status {code}"

    def stderr_tail(self) -> str:
        self._stderr.flush()
        size = self._stderr.seek(0, os.SEEK_END)
        self._stderr.seek(max(0, size - self.tail_bytes))
        return self._stderr.read().decode("utf-8", "replace").strip()

    def _tail_note(self) -> str:
        tail = self.stderr_tail()
        return f"; its stderr ends with:\n{tail}" if tail else "; it wrote nothing to stderr"

    def tree(self) -> list[psutil.Process]:
        """The server process and every descendant still running."""
        if not self.alive:
            return []
        assert self.process is not None
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def _sum(self, measure) -> int:
        total = 0
        for p in self.tree():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                total += measure(p)
        return total

    def num_fds(self) -> int:
        return self._sum(lambda p: p.num_fds())

    def num_sockets(self) -> int:
        """Distinct sockets open in the server's tree (a forked child shares its
        parent's, and its stdio and pipes are not sockets)."""
        return len(self._socket_inodes())

    def _socket_inodes(self) -> set[int]:
        inodes: set[int] = set()
        for p in self.tree():
            inodes |= socket_descriptors(p.pid).keys()
        return inodes

    def memory_rss(self) -> int:
        return self._sum(lambda p: p.memory_info().rss)

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self.tree():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def _listens(self) -> bool:
        """Is it this server's tree that listens on the port (not a stranger's)?"""
        listeners = listening_inodes(self.port)
        if listeners is None:  # no sock_diag: psutil reads the whole TCP table
            return any(conn.status == psutil.CONN_LISTEN and conn.laddr.port == self.port
                       for conn in self.connections())
        return bool(listeners & self._socket_inodes())

    def connections(self) -> Iterator[psutil._common.pconn]:
        """TCP connections held by any process of the server's tree."""
        for p in self.tree():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                yield from p.net_connections(kind="tcp")


class ServerSupply:
    """Fresh servers, one per program, the next one already starting.

    The process driver runs every program against a server of its own, so
    that no program meets what an earlier one left behind.  Starting one
    (fork, exec, the interpreter's imports, listen) takes 50-150 ms, more
    than a whole program of steps against a running server.  So when the
    supply hands out a server it launches the next one at once: that one
    starts while the program runs, on the other core, and is listening by
    the time it is asked for.  Likewise a server given back is told to end
    (SIGTERM to its group) and reaped at a later `take()`.  The servers are
    as fresh as before; only their start and their end are not waited for.

        supply = ServerSupply("./my_server --port {port}")
        try:
            server = supply.take()   # listening; the next one is launched
            ...
            supply.give_back(server) # told to end; reaped later
        finally:
            supply.close()           # ends and reaps every server
    """

    def __init__(self, command: str, *, start_timeout: float | None = None) -> None:
        self.command = command
        self.start_timeout = start_timeout
        self._next: ServerProcess | None = None
        #: Servers given back, told to end, not yet reaped: (server, when told).
        self._ending: list[tuple[ServerProcess, float]] = []

    def _launch(self) -> ServerProcess:
        server = ServerProcess(self.command, start_timeout=self.start_timeout)
        try:
            return server.launch()
        except BaseException:
            server.close()
            raise

    def take(self) -> ServerProcess:
        """A server that accepts connections, for the caller to give back."""
        server, self._next = self._next or self._launch(), None
        try:
            server.ready()
            self._reap()
            self._next = self._launch()
        except BaseException:
            server.close()
            raise
        return server

    def give_back(self, server: ServerProcess) -> None:
        """End a server taken from the supply, without waiting for it to exit."""
        server.terminate()
        self._ending.append((server, time.monotonic()))

    def _reap(self) -> None:
        """Reap the given-back servers that have exited; kill those past their time."""
        for entry in list(self._ending):
            server, told = entry
            if server.exit_code() is None:
                if time.monotonic() - told < server.stop_timeout:
                    continue
                server.kill()
            server.close()
            self._ending.remove(entry)

    def close(self) -> None:
        """End every server: the one launched in advance and those given back."""
        servers = [server for server, _ in self._ending]
        if self._next is not None:
            servers.append(self._next)
        self._ending, self._next = [], None
        for server in servers:
            server.terminate()  # all at once: their stop_timeouts run side by side
        with contextlib.ExitStack() as closing:  # each one closed, whatever the others raise
            for server in servers:
                closing.callback(server.close)

    def __enter__(self) -> ServerSupply:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
