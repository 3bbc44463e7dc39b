"""Start a server command on a free port, watch it, and always end it.

    with ServerProcess("python -m impl.select_server --port {port}") as server:
        socket.create_connection(server.address)
        server.memory_rss(), server.num_fds(), server.connections()

Containment: the command runs as process 2 of a PID namespace of its own,
under an init (`pid_init.py`).  When that init ends, the kernel kills
everything in the namespace: forked children, daemons that left the session,
a server behind a launcher script.  The chain hangs on the checker: the
process it starts gets SIGKILL when the checker's thread that started it
dies (PR_SET_PDEATHSIG), the init when that process dies.  So a checker that
exits, is interrupted or is killed leaves nothing running.  Where PID
namespaces are not allowed, the command runs in its own session instead (a
process group kill, which a daemon escapes); `containment()` says which.

With a `network` (spec.drivers.network), the server runs in the checker's
private network namespace, and its port, its listener and every connection
to it live there.

Starting is bounded: the command must accept a TCP connection on
127.0.0.1:{port} within `start_timeout`, or `ServerStartError` says why, with
the tail of its stderr.  Errors a user can cause (no ``{port}`` in the
command, a program that does not exist, a command that exits at once or goes
into the background) become one-line `ServerStartError`s that say what to do.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import functools
import os
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil

from spec.drivers import threads, witness
from spec.drivers.base import HOST
from spec.drivers.network import PrivateNetwork
from spec.drivers.sock_diag import listening_inodes

_INIT = Path(__file__).with_name("pid_init.py")

#: prctl's option (linux/prctl.h); pid_init.py, a script that imports nothing
#: of this package, has its own.
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the checker's thread that started it dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _namespace_prefix(
    network: PrivateNetwork | None = None,
) -> tuple[tuple[str, ...] | None, Callable[[], None] | None]:
    """The argv that runs a command under its own init in a new PID namespace, if allowed,
    and what the command joins first (None: nothing).

    Where the checker may not make a PID namespace (not root), the command
    first joins the user namespace of the private network (the checker's user
    is root there): that of `network`, or, for a server on the host's network,
    that of the shared private network, if it was made in one.
    """
    if network is not None and network.in_user_namespace:
        return _prefix_for(network.enter_user_namespace), network.enter_user_namespace
    prefix = _prefix_for(None)
    if prefix is None and network is None:
        shared = PrivateNetwork.shared()
        if shared is not None and shared.in_user_namespace:
            prefix = _prefix_for(shared.enter_user_namespace)
            return prefix, shared.enter_user_namespace if prefix else None
    return prefix, None


@functools.cache
def _prefix_for(enter: Callable[[], None] | None) -> tuple[str, ...] | None:
    if not sys.platform.startswith("linux"):
        return None
    prefix = (sys.executable, "-I", "-S", str(_INIT))
    try:
        done = subprocess.run(
            [*prefix, "true"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
            preexec_fn=enter,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return prefix if done.returncode == 0 else None


def containment(network: PrivateNetwork | None = None) -> str:
    """How server processes (in `network`, if given) are contained here, for the report."""
    if _namespace_prefix(network)[0] is not None:
        return "PID namespace (everything the server starts ends with it)"
    return "process group (a server that leaves its session can outlive the checker)"


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


def free_port(network: PrivateNetwork | None = None) -> int:
    new_socket = network.socket if network else socket.socket
    with new_socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


class ServerProcess:
    """A server command on a free port, contained, always ended.

    About 370 lines: its life cycle (launch in a namespace or a process group,
    wait until it listens, stop the whole tree) and what is read of the
    running tree (exit status, stderr, descriptors, memory, CPU time) for the
    drivers and the measurements.
    """

    #: Seconds the command has to start accepting connections.
    start_timeout = 10.0
    #: Seconds between SIGTERM and SIGKILL when stopping.
    stop_timeout = 1.0
    #: Bytes of stderr kept for error messages.
    tail_bytes = 2000
    #: Seconds a command whose listener another session holds gets to show it exits.
    background_grace = 1.0
    #: Attempts with a fresh port when the command dies before listening
    #: (another process may have taken the free port in between).
    start_attempts = 3
    #: The soft descriptor limit (RLIMIT_NOFILE) the server starts with, at
    #: most the hard limit; None: the checker's own.
    descriptor_limit: int | None = None

    def __init__(
        self,
        command: str,
        *,
        start_timeout: float | None = None,
        network: PrivateNetwork | None = None,
        descriptor_limit: int | None = None,
    ) -> None:
        if "{port}" not in command:
            raise ServerStartError(
                f"the server command {command!r} has no '{{port}}' placeholder; write where the "
                "port goes, e.g. --echo-server-cmd 'python myserver.py --port {port}'"
            )
        self.command = command
        if start_timeout is not None:
            self.start_timeout = start_timeout
        #: The private network the server runs in; None: the host's.
        self.network = network
        if descriptor_limit is not None:
            self.descriptor_limit = descriptor_limit
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        #: Runs under its own init in a PID namespace (see the module's note).
        self.contained = False
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
        self.port = free_port(self.network)
        argv = shlex.split(self.command.replace("{port}", str(self.port)))
        program = shutil.which(argv[0]) if argv else None
        if program is None:
            problem = "permission denied" if argv and os.path.exists(argv[0]) else "no such program"
            raise ServerStartError(
                f"cannot run {argv[0] if argv else ''!r}: {problem} (check "
                f"the server command {self.command!r})"
            )
        prefix, enter = _namespace_prefix(self.network)
        self.contained = prefix is not None
        self._stderr.seek(0)
        self._stderr.truncate()
        network = self.network
        descriptor_limit = self.descriptor_limit

        def in_the_child() -> None:
            if network is not None:
                network.enter_in_child()
            elif enter is not None:
                enter()  # contained in the user namespace, on the host's network
            # After joining a user namespace: that changes the credentials,
            # which clears the parent-death signal.
            _die_with_parent()
            if descriptor_limit is not None:
                _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                soft = descriptor_limit
                if hard != resource.RLIM_INFINITY:
                    soft = min(soft, hard)
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

        try:
            self.process = subprocess.Popen(
                [*(prefix or ()), *argv],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
                start_new_session=True,
                preexec_fn=in_the_child,
            )
        except PermissionError:
            raise ServerStartError(f"cannot run {argv[0]!r}: permission denied") from None
        return self

    def ready(self) -> ServerProcess:
        """Wait until the launched command accepts connections.

        A command that exits before it listens is launched again on a fresh
        port (another process may have taken the free port in between), up to
        `start_attempts` times in all.
        """
        # In a private network nobody else can take the port: one attempt.
        attempts = 1 if self.network is not None else self.start_attempts
        for attempt in range(attempts):
            if attempt:
                self.launch()
            try:
                self._wait_until_listening()
                return self
            except ServerStartError:
                exited = self.exit_code() is not None
                self.stop()
                if not exited or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _wait_until_listening(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.exit_code() is not None:
                background = (
                    " (a server that goes into the background, daemonizes, is ended "
                    "with its command: run it in the foreground)"
                    if self.exit_code() == 0
                    else ""
                )
                raise ServerStartError(
                    f"the server command exited with {self.exit_description()} before it "
                    f"listened on {HOST}:{self.port}{background}{self._tail_note()}"
                )
            try:
                self.connect(timeout=0.5).close()
            except OSError:
                time.sleep(0.005)
                continue
            if self._listens():
                if self._command_running():
                    return
                self.wait_dead(self.start_timeout)  # its init ends with it: seen above
            # Another process took the port between free_port() and the
            # server's bind(): ours exits (EADDRINUSE) and is launched again.
            time.sleep(0.005)
        raise ServerStartError(
            f"the server command did not accept connections on {HOST}:{self.port} within "
            f"{self.start_timeout:g} s (does it listen on the port given for {{port}}, on "
            f"127.0.0.1?){self._tail_note()}"
        )

    def connect(self, timeout: float) -> socket.socket:
        """A plain blocking connection to the server, made in its network."""
        new_socket = self.network.socket if self.network else socket.socket
        sock = new_socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(self.address)
        except BaseException:
            sock.close()
            raise
        return sock

    def stop(self) -> None:
        """End everything: SIGTERM, then SIGKILL after stop_timeout.

        The leader is reaped only at the very end.  Until then it is at worst
        a zombie, and its PID, which is the group's ID, cannot be given to
        another process: killpg() can never reach a stranger's group, as
        PIDs come round (pid_max 32,768, servers with a thread per connection).
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
            info = os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
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
        if self.contained and code > 128:
            code = 128 - code  # the init reports a signal as 128 + N, as a shell does
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
        except (psutil.Error, OSError):  # exited, or /proc cannot be read here
            return []

    def _sum(self, measure: Callable[[psutil.Process], int]) -> int:
        total = 0
        for p in self.tree():
            with contextlib.suppress(psutil.Error, OSError):  # exited, or /proc unreadable
                total += measure(p)
        return total

    def num_fds(self) -> int:
        return self._sum(lambda p: p.num_fds())

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
            with contextlib.suppress(psutil.Error, OSError):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def _listens(self) -> bool:
        """Is it this server's tree that listens on the port (not a stranger's)?

        Where /proc cannot be read the listener's owner cannot be told: the
        accepted connection is taken as the server's (in a private network
        nobody else can listen there).
        """
        if witness.capabilities().proc is not None:
            return True
        listeners = listening_inodes(
            self.port, new_socket=self.network.socket if self.network else socket.socket
        )
        if listeners is None:  # no sock_diag: the server's own network's table in /proc
            listeners = {i for pid in self.pids() for i in witness.proc_listeners(pid, self.port)}
        return bool(listeners & self._socket_inodes())

    def _command_running(self) -> bool:
        """Does the command itself serve, rather than something it left in the background?

        Contained, the command is process 2 of its PID namespace (its init is
        1).  A server that daemonizes forks, starts a new session, forks
        again and exits: its daemon may listen a moment before the command
        has finished exiting.  So the listener must be held in the command's
        own session, or the command is given a moment to show it exits.
        """
        if not self.contained or witness.capabilities().proc is not None:
            return True  # (without /proc the sessions cannot be read: taken as serving)
        command, holders = None, []
        listeners = (
            listening_inodes(
                self.port, new_socket=self.network.socket if self.network else socket.socket
            )
            or set()
        )
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    status = dict(line.split(":", 1) for line in f if ":" in line)
                session = os.getsid(pid)
            except OSError:
                continue
            if status.get("NSpid", "").split()[-1:] == ["2"]:
                if status.get("State", "").strip().startswith(("Z", "X")):
                    return False
                command = session
            if listeners & socket_descriptors(pid).keys():
                holders.append(session)
        if command is None:
            return False
        return command in holders or not self.wait_dead(self.background_grace)

    def pids(self) -> list[int]:
        """Every process of the server's tree, read from /proc (empty once it has exited)."""
        if not self.alive:
            return []
        assert self.process is not None
        return threads.descendants(self.process.pid)

    def connections(self) -> Iterator[Any]:
        """TCP connections held by any process of the server's tree."""
        for p in self.tree():
            with contextlib.suppress(psutil.Error, OSError):
                yield from p.net_connections(kind="tcp")


class ServerSupply:
    """Fresh servers, one per program, the next ones already starting.

    The process driver runs every program against a server of its own, so
    that no program meets what an earlier one left behind.  Starting one
    (fork, exec, the interpreter's imports, listen) takes 50-150 ms for a
    Python server, more than a whole program of steps against a running
    server.  So the supply keeps `ahead` servers launched: they start while
    programs run, and the oldest is listening by the time it is asked for.
    A server given back is killed at once and reaped at a later `take()`.
    The servers are as fresh as ever; only their start and their end are
    not waited for.

        supply = ServerSupply("./my_server --port {port}")
        try:
            server = supply.take()   # listening; another one is launched
            ...
            supply.give_back(server) # killed; reaped later
        finally:
            supply.close()           # ends and reaps every server
    """

    #: Servers launched in advance.
    ahead = 2

    def __init__(
        self,
        command: str,
        *,
        start_timeout: float | None = None,
        network: PrivateNetwork | None = None,
    ) -> None:
        self.command = command
        self.start_timeout = start_timeout
        self.network = network
        #: Launched, not yet handed out, oldest first.
        self._launched: collections.deque[ServerProcess] = collections.deque()
        #: Servers given back, killed, not yet reaped.
        self._ending: list[ServerProcess] = []

    def _launch(self) -> ServerProcess:
        server = ServerProcess(self.command, start_timeout=self.start_timeout, network=self.network)
        try:
            return server.launch()
        except BaseException:
            server.close()
            raise

    def take(self) -> ServerProcess:
        """A server that accepts connections, for the caller to give back."""
        server = self._launched.popleft() if self._launched else self._launch()
        try:
            server.ready()
            self._reap()
            while len(self._launched) < self.ahead:
                self._launched.append(self._launch())
        except BaseException:
            server.close()
            raise
        return server

    def give_back(self, server: ServerProcess) -> None:
        """End a server taken from the supply at once (SIGKILL), reaping it later."""
        server.kill()
        self._ending.append(server)

    def _reap(self) -> None:
        """Close the given-back servers that have exited."""
        for server in list(self._ending):
            if server.exit_code() is not None:
                server.close()
                self._ending.remove(server)

    def close(self) -> None:
        """End every server: those launched in advance and those given back."""
        servers = [*self._ending, *self._launched]
        self._ending, self._launched = [], collections.deque()
        for server in servers:
            server.kill()  # all at once, none of them is needed any more
        with contextlib.ExitStack() as closing:  # each one closed, whatever the others raise
            for server in servers:
                closing.callback(server.close)

    def __enter__(self) -> ServerSupply:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
