"""Hold a private network inside a user namespace, and make sockets in it for the checker.

    python _userns.py FD

For a user who is not root (spec/drivers/network.py).  This process makes a
user namespace in which that user is root, and a network namespace owned by
it; configures the network as the checker's private one (loopback up, fixed
TCP buffers, quickack); writes one line, ``ready 0|1`` (quickack), on the
socket `FD`; then, for every request ``(family, type, proto)`` read there,
makes such a socket inside and passes it back (SCM_RIGHTS).  A socket stays
in the network it was made in, wherever it is used.  It exits when the
checker's end of `FD` closes.

Why a process: unshare(CLONE_NEWUSER) needs a single-threaded caller, and
entering a network namespace owned by another user namespace (setns) needs
CAP_SYS_ADMIN in the caller's own namespace too, which a checker that is not
root lacks.  The server processes join by setns (user namespace first, then
network), between fork and exec, where they are single-threaded.
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
import sys
from pathlib import Path

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
REQUEST = struct.Struct("=iii")


def enter(uid: int, gid: int) -> None:
    """A new user namespace (the caller's user is root in it) with a new network namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"unshare(CLONE_NEWUSER | CLONE_NEWNET): {os.strerror(errno)}")
    for name, line in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(line)


def serve(channel: socket.socket) -> None:
    """Make the sockets asked for, until the checker closes its end."""
    while True:
        request = channel.recv(REQUEST.size)
        if len(request) < REQUEST.size:
            return
        try:
            made = socket.socket(*REQUEST.unpack(request))
        except OSError as e:
            channel.send(f"E{e.errno}".encode())
            continue
        with made:
            socket.send_fds(channel, [b"ok"], [made.fileno()])


def main(argv: list[str]) -> int:
    channel = socket.socket(fileno=int(argv[0]))
    try:
        enter(os.getuid(), os.getgid())
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
        from spec.drivers.network import PrivateNetwork

        PrivateNetwork._configure()
    except Exception as e:  # every refusal goes back to the checker, in words
        channel.sendall(f"refused {type(e).__name__}: {e}\n".encode())
        return 1
    channel.sendall(f"ready {int(PrivateNetwork.quickack)}\n".encode())
    serve(channel)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
