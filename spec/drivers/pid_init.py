"""Run a server command in a PID namespace of its own, and end everything it started with it.

    python -I -S pid_init.py COMMAND ARGS...

Three processes, each passing on the signals a user would send and exiting
with its child's status (128 + N for a child killed by signal N, as a shell
reports it):

- this one, in the checker's namespace: the process the checker starts and
  signals.  It makes a new PID namespace for its children, and dies with
  the checker's thread that started it (PR_SET_PDEATHSIG, set by the checker);
- its child, process 1 of the new namespace: its init.  When an init exits,
  the kernel kills every other process of its namespace: forked children,
  daemons that left the session, a server behind a launcher script.  It dies
  with the first process (PR_SET_PDEATHSIG), and reaps orphans;
- its child, process 2: the server command itself.  An init is shielded from
  signals it has no handler for, so the server must not be one.

Each of them is a process group of its own, so a signal to the first one's
group reaches the server once, passed down, not three times.

Standard library only, and as few imports as possible: it starts with every server.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
CLONE_NEWPID = 0x20000000
PR_SET_PDEATHSIG = 1


def supervise(child: int) -> int:
    """Pass signals on to `child`, reap every child, return `child`'s status."""

    def forward(signum: int, frame: object) -> None:
        try:  # noqa: SIM105 (no contextlib import: this starts with every server)
            os.kill(child, signum)
        except ProcessLookupError:  # it has just exited; the loop below sees it
            pass

    for sig in FORWARDED:
        signal.signal(sig, forward)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:  # pragma: no cover - `child` is always a child
            return 0
        if pid == child:
            return (
                os.waitstatus_to_exitcode(status)
                if os.WIFEXITED(status)
                else (128 + os.WTERMSIG(status))
            )


def spawn(run: Callable[[], None]) -> int:
    """Fork; the child becomes a process group of its own and calls `run()` (never returns)."""
    child = os.fork()
    if child == 0:
        os.setpgid(0, 0)
        run()
    return child


#: Signals Python ignores at start-up; an ignored signal stays ignored across
#: exec, so they are restored (as `subprocess` does with `restore_signals`):
#: a C server that does not ignore SIGPIPE itself must die of it here as it
#: would anywhere.
PYTHON_IGNORES = tuple(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ") if hasattr(signal, name)
)


def server(argv: list[str]) -> None:
    for sig in (*FORWARDED, *PYTHON_IGNORES):
        signal.signal(sig, signal.SIG_DFL)
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        os.write(2, f"cannot run {argv[0]!r}: {e.strerror}\n".encode())
    os._exit(127)


def namespace_init(argv: list[str], parent_alive: int, inherited_write: int) -> None:
    """Process 1: die with the first process, run the server, reap orphans."""
    # The pipe's write end came with the fork: while this process holds it, the
    # read below never sees EOF, and a first process killed before the prctl
    # left this init (and its server) running forever.
    os.close(inherited_write)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # Its parent is outside the namespace (getppid() says 0), so ask a pipe
    # whose other end the parent holds: EOF means it died before the line above.
    os.set_blocking(parent_alive, False)
    try:
        if os.read(parent_alive, 1) == b"":
            os._exit(1)
    except BlockingIOError:
        pass
    os.close(parent_alive)
    os._exit(supervise(spawn(lambda: server(argv))))


def main(argv: list[str]) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWPID) != 0:
        os.write(2, f"cannot make a PID namespace: {os.strerror(ctypes.get_errno())}\n".encode())
        return 126
    alive_read, alive_write = os.pipe()  # open while this process lives; close-on-exec
    child = spawn(lambda: namespace_init(argv, alive_read, alive_write))
    os.close(alive_read)
    return supervise(child)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
