"""Which sockets listen on a TCP port: asked of the kernel the way ss(8) asks.

`ServerProcess` must know that the listener it reached on its port is its own
server's, not a stranger's that took the port first.  psutil answers by
reading /proc/net/tcp, the whole system's table: tens of milliseconds with a
few thousand TIME_WAIT entries, which a checker run leaves behind.  The
kernel's sock_diag netlink interface returns only the sockets in LISTEN
state, a handful, in well under a millisecond.  Linux only; elsewhere (or if
netlink is refused) `listening_inodes` returns None and the caller falls back
to psutil.
"""

from __future__ import annotations

import socket
import struct

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_TCPF_LISTEN = 1 << 10
_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
# inet_diag_req_v2: family, protocol, extensions, pad, states; then inet_diag_sockid.
_REQUEST = struct.Struct("=BBBxI")
_SOCKID = struct.Struct("!HH16s16s")
_SOCKID_TAIL = struct.Struct("=III")  # interface, cookie[2]
# inet_diag_msg: family, state, timer, retransmits; sockid; expires, rqueue, wqueue, uid, inode.
_MESSAGE = struct.Struct("=BBBB")
_MESSAGE_TAIL = struct.Struct("=IIIII")


def _request(family: int) -> bytes:
    body = (_REQUEST.pack(family, socket.IPPROTO_TCP, 0, _TCPF_LISTEN)
            + _SOCKID.pack(0, 0, bytes(16), bytes(16)) + _SOCKID_TAIL.pack(0, 0, 0))
    header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), _SOCK_DIAG_BY_FAMILY,
                            _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0)
    return header + body


def _listeners(family: int) -> list[tuple[int, int]]:
    """(port, inode) of every TCP socket of `family` in LISTEN state."""
    found = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(1.0)
        nl.send(_request(family))
        while True:
            data = nl.recv(65536)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, _, _, _ = _NLMSGHDR.unpack_from(data, offset)
                if kind == _NLMSG_DONE:
                    return found
                if kind == _NLMSG_ERROR or length < _NLMSGHDR.size:
                    raise OSError("sock_diag refused the request")
                body = offset + _NLMSGHDR.size
                port = _SOCKID.unpack_from(data, body + _MESSAGE.size)[0]
                tail = body + _MESSAGE.size + _SOCKID.size + _SOCKID_TAIL.size
                inode = _MESSAGE_TAIL.unpack_from(data, tail)[4]
                found.append((port, inode))
                offset += (length + 3) & ~3  # messages are 4-byte aligned


def listening_inodes(port: int) -> set[int] | None:
    """Inodes of the sockets listening on TCP `port` (IPv4 and IPv6); None if unknown."""
    try:
        return {inode for family in (socket.AF_INET, socket.AF_INET6)
                for p, inode in _listeners(family) if p == port}
    except (OSError, AttributeError, struct.error):  # not Linux, or netlink refused
        return None
