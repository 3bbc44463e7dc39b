"""The first process of a server's PID namespace: run the server command, then end.

    unshare --pid --fork --kill-child -- python -I -S _init.py COMMAND ARGS...

The first process of a PID namespace is its init: when it exits, the kernel
kills every other process in the namespace, daemons and grandchildren
included, which is how the checker makes sure nothing a server started
outlives it.  But an init is also shielded from signals it has no handler
for, so the server must not be it: this script is, with the server as its
child.  It passes the signals a user would send on to the server, reaps
orphans, and exits as soon as the server does, with the server's status
(128 + N for a server killed by signal N, as a shell reports it).

Standard library only, and as few imports as possible: it starts with every server.
"""

import os
import signal
import sys

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2)


def main(argv: list[str]) -> int:
    server = os.fork()
    if server == 0:
        for sig in FORWARDED:
            signal.signal(sig, signal.SIG_DFL)
        try:
            os.execvp(argv[0], argv)
        except OSError as e:
            os.write(2, f"cannot run {argv[0]!r}: {e.strerror}\n".encode())
        os._exit(127)

    def forward(signum: int, frame: object) -> None:
        try:  # noqa: SIM105 (no contextlib import: this starts with every server)
            os.kill(server, signum)
        except ProcessLookupError:  # it has just exited; the loop below sees it
            pass

    for sig in FORWARDED:
        signal.signal(sig, forward)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:  # pragma: no cover - the server is always a child
            return 0
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            continue
        if pid == server:
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else (
                128 + os.WTERMSIG(status))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
