"""TCP sockets as the kernel sees them, asked the way ss(8) asks: sock_diag netlink.

One dump returns every TCP socket of the caller's network namespace with its
state, its queues, the inode that descriptors refer to, and (for live
connections) the kernel's `tcp_info`: bytes sent, received, unacknowledged.
That is what the process driver needs to know, without a clock, whether bytes
are still moving between a client and the server, which socket of the server
belongs to which client, and whether any descriptor still holds it.

A dump walks the kernel's whole connection table, which every network
namespace shares (17 ms measured here, with thousands of TIME_WAIT entries
from earlier checks), as reading /proc/net/tcp does; a lookup by the
connection's two ends goes through the table's hash (a few microseconds in
the kernel).  So the drivers look connections up, all of one look in a
single request (`lookup_many`), and dump only the listeners, once.

Linux only.  `dump()` raises OSError where netlink is refused; callers treat
that as "the kernel cannot be asked" and say so.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import ipaddress
import socket
import struct
from collections.abc import Callable
from typing import NamedTuple


class TcpState(enum.IntEnum):
    ESTABLISHED = 1
    SYN_SENT = 2
    SYN_RECV = 3
    FIN_WAIT1 = 4
    FIN_WAIT2 = 5
    TIME_WAIT = 6
    CLOSE = 7
    CLOSE_WAIT = 8
    LAST_ACK = 9
    LISTEN = 10
    CLOSING = 11
    NEW_SYN_RECV = 12


ALL_STATES = frozenset(TcpState)
#: Every state but TIME_WAIT: a socket there is held by no descriptor.
LIVE_STATES = frozenset(TcpState) - {TcpState.TIME_WAIT}

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_INET_DIAG_INFO = 2
_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
# inet_diag_req_v2: family, protocol, extensions, pad, states; then inet_diag_sockid.
_REQUEST = struct.Struct("=BBBxI")
_SOCKID = struct.Struct("!HH16s16s")  # source port, destination port, addresses
_SOCKID_TAIL = struct.Struct("=III")  # interface, cookie[2]
# inet_diag_msg: family, state, timer, retransmits; sockid; expires, rqueue, wqueue, uid, inode.
_MESSAGE = struct.Struct("=BBBB")
_MESSAGE_TAIL = struct.Struct("=IIIII")
_MESSAGE_SIZE = _MESSAGE.size + _SOCKID.size + _SOCKID_TAIL.size + _MESSAGE_TAIL.size
_RTATTR = struct.Struct("=HH")
# struct tcp_info fields read here, at their fixed offsets (linux/tcp.h).
_TCPI_BYTES_RECEIVED, _TCPI_BYTES_SENT, _TCPI_BYTES_RETRANS = 128, 200, 208
_TCPI_NOTSENT = 144
#: The fields read, in one piece: unacked (24), bytes received (128), not sent
#: (144), bytes sent (200) and retransmitted (208).
_TCPI_READ = struct.Struct("=24xI100xQ8xI52xQQ")
assert _TCPI_READ.size == _TCPI_BYTES_RETRANS + 8


class TcpSocket(NamedTuple):
    """One TCP socket as sock_diag reports it (a tuple: made thousands of times a second)."""

    local: tuple[str, int]
    remote: tuple[str, int]
    state: TcpState
    #: Bytes received and not yet read by the owner (LISTEN: pending connections).
    rqueue: int
    #: Bytes written and not yet acknowledged by the peer (sent or not).
    wqueue: int
    #: The socket's inode, as /proc/PID/fd links name it; 0 if no descriptor refers to it.
    inode: int
    #: Segments sent and not yet acknowledged (tcp_info), None where not reported.
    unacked: int | None = None
    #: Distinct payload bytes handed to the network (sent minus retransmitted).
    bytes_out: int | None = None
    #: Payload bytes received in order.
    bytes_in: int | None = None
    #: Bytes written and not yet sent (held back by the peer's window).
    notsent: int | None = None
    #: The kernel timer armed on the socket (inet_diag's idiag_timer: `RETRANSMIT_TIMER`, ...).
    timer: int = 0

    @property
    def queues(self) -> tuple[TcpState, int, int]:
        return self.state, self.rqueue, self.wqueue


_NO_COOKIE = 0xFFFFFFFF

#: inet_diag's idiag_timer for the retransmission timer (also a loss probe's or a
#: reordering timeout's: each sends the unacknowledged segments again when it fires).
RETRANSMIT_TIMER = 1
#: inet_diag's idiag_timer for the zero-window probe timer (the persist timer):
#: when it fires the sender probes the receiver's window, and sends into it.
PROBE_TIMER = 4


def _request(
    family: int,
    states: frozenset[TcpState],
    info: bool,
    ends: tuple[tuple[str, int], tuple[str, int]] | None = None,
    sequence: int = 1,
) -> bytes:
    """A dump request, or with `ends` (local, remote) the lookup of one socket."""
    body = _body(family, states, info, ends)
    flags = _NLM_F_REQUEST | (_NLM_F_DUMP if ends is None else 0)
    header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), _SOCK_DIAG_BY_FAMILY, flags, sequence, 0)
    return header + body


@functools.lru_cache(maxsize=4096)
def _body(
    family: int,
    states: frozenset[TcpState],
    info: bool,
    ends: tuple[tuple[str, int], tuple[str, int]] | None,
) -> bytes:
    """A request's body (the same for every look at the same socket: made once)."""
    mask = sum(1 << s for s in states)
    extensions = 1 << (_INET_DIAG_INFO - 1) if info else 0
    if ends is None:
        sockid = _SOCKID.pack(0, 0, bytes(16), bytes(16)) + _SOCKID_TAIL.pack(0, 0, 0)
    else:
        (src, sport), (dst, dport) = ends
        sockid = _SOCKID.pack(
            sport, dport, _packed(family, src), _packed(family, dst)
        ) + _SOCKID_TAIL.pack(0, _NO_COOKIE, _NO_COOKIE)
    return _REQUEST.pack(family, socket.IPPROTO_TCP, extensions, mask) + sockid


def _packed(family: int, address: str) -> bytes:
    return socket.inet_pton(family, address).ljust(16, b"\0")


@functools.lru_cache(maxsize=1024)
def _address(family: int, raw: bytes) -> str:
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    address = ipaddress.IPv6Address(raw)
    return str(address.ipv4_mapped or address)  # a dual-stack socket's IPv4 peer


_STATES = {int(s): s for s in TcpState}


#: inet_diag_msg in one piece: family, state, timer, retransmits, the ports (big-endian,
#: as bytes), the addresses, interface, cookie[2], expires, rqueue, wqueue, uid, inode.
_WHOLE_MESSAGE = struct.Struct("=BBBB2s2s16s16sIIIIIIII")
assert _WHOLE_MESSAGE.size == _MESSAGE_SIZE


def _parse(data: bytes, offset: int, end: int) -> TcpSocket:
    (family, state, timer, _, sport, dport, src, dst, _, _, _, _, rqueue, wqueue, _, inode) = (
        _WHOLE_MESSAGE.unpack_from(data, offset)
    )
    unacked = bytes_out = bytes_in = notsent = None
    attr = offset + _MESSAGE_SIZE
    while attr + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(data, attr)
        if length < _RTATTR.size:
            break
        value = attr + _RTATTR.size
        size = length - _RTATTR.size
        if kind == _INET_DIAG_INFO and size >= _TCPI_BYTES_RETRANS + 8:
            unacked, bytes_in, notsent, sent, retrans = _TCPI_READ.unpack_from(data, value)
            bytes_out = sent - retrans
        attr += (length + 3) & ~3
    return TcpSocket(
        (_address(family, src), int.from_bytes(sport, "big")),
        (_address(family, dst), int.from_bytes(dport, "big")),
        _STATES[state],
        rqueue,
        wqueue,
        inode,
        unacked,
        bytes_out,
        bytes_in,
        notsent,
        timer,
    )


def open_netlink(new_socket: Callable[..., socket.socket] = socket.socket) -> socket.socket:
    """A sock_diag socket; `new_socket` decides which network namespace it asks."""
    nl = new_socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG)
    nl.settimeout(1.0)
    return nl


def dump(
    states: frozenset[TcpState] = LIVE_STATES,
    *,
    info: bool = False,
    netlink: socket.socket | None = None,
    new_socket: Callable[..., socket.socket] = socket.socket,
) -> list[TcpSocket]:
    """Every TCP socket (IPv4 and IPv6) in one of `states`.

    `info`: also ask for tcp_info (unacked, bytes in and out) of live connections.
    `netlink`: an open socket from `open_netlink()` to ask (kept open), else
    one is made with `new_socket` for this dump.
    """
    with contextlib.nullcontext(netlink) if netlink else open_netlink(new_socket) as nl:
        return [
            s
            for family in (socket.AF_INET, socket.AF_INET6)
            for s in _dump_family(nl, family, states, info)
        ]


def _dump_family(
    nl: socket.socket, family: int, states: frozenset[TcpState], info: bool
) -> list[TcpSocket]:
    found: list[TcpSocket] = []
    nl.send(_request(family, states, info))
    while True:
        data = nl.recv(1 << 16)
        offset = 0
        while offset + _NLMSGHDR.size <= len(data):
            length, kind, _, _, _ = _NLMSGHDR.unpack_from(data, offset)
            if kind == _NLMSG_DONE:
                return found
            if kind == _NLMSG_ERROR or length < _NLMSGHDR.size:
                raise OSError("sock_diag refused the request")
            found.append(_parse(data, offset + _NLMSGHDR.size, offset + length))
            offset += (length + 3) & ~3  # messages are 4-byte aligned


def lookup(
    netlink: socket.socket, local: tuple[str, int], remote: tuple[str, int], *, info: bool = True
) -> TcpSocket | None:
    """The IPv4 TCP socket with these ends, found by the kernel's hash (no table walk).

    A dump walks the system's whole connection table, shared by every
    namespace (milliseconds with thousands of TIME_WAIT entries); a lookup
    does not.  None if no such socket (or it has been closed and unhashed).
    """
    netlink.send(_request(socket.AF_INET, ALL_STATES, info, (local, remote)))
    data = netlink.recv(1 << 16)
    length, kind, _, _, _ = _NLMSGHDR.unpack_from(data, 0)
    if kind == _NLMSG_ERROR:
        return None
    found = _parse(data, _NLMSGHDR.size, length)
    # Without an established socket the kernel's lookup falls back to the listener.
    return found if found.remote[1] == remote[1] else None


#: Lookups sent in one request at most (their answers must fit the socket's buffer).
BATCH = 32


def lookup_many(
    netlink: socket.socket,
    ends: list[tuple[tuple[str, int], tuple[str, int]]],
    *,
    info: bool = True,
) -> list[TcpSocket | None]:
    """`lookup()` of each (local, remote) in `ends`, asked in one send() per `BATCH`.

    The kernel answers the lookups of one request in order, each with its
    socket or an error (no such socket), as separate messages carrying the
    request's sequence number; they are matched by it.  With `info`, the
    kernel takes each socket's lock to fill in tcp_info (`tcp_get_info`), so
    a packet being processed on that socket when it is asked (its wake-ups
    included) has been processed when the answer is made.
    """
    found: list[TcpSocket | None] = [None] * len(ends)
    states = ALL_STATES
    for start in range(0, len(ends), BATCH):
        chunk = ends[start : start + BATCH]
        netlink.send(
            b"".join(
                _request(socket.AF_INET, states, info, pair, sequence=start + i + 1)
                for i, pair in enumerate(chunk)
            )
        )
        waiting = len(chunk)
        while waiting:
            data = netlink.recv(1 << 16)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, _, sequence, _ = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    raise OSError("sock_diag sent a malformed answer")
                index = sequence - 1
                if not start <= index < start + len(chunk):
                    raise OSError("sock_diag answered a question not asked")
                waiting -= 1
                if kind != _NLMSG_ERROR:
                    s = _parse(data, offset + _NLMSGHDR.size, offset + length)
                    # Without an established socket the kernel's lookup falls back to the listener.
                    if s.remote[1] == ends[index][1][1]:
                        found[index] = s
                offset += (length + 3) & ~3
    return found


#: States in which a socket has sent, or queued, its FIN.
_FIN_SENT = frozenset(
    {
        TcpState.FIN_WAIT1,
        TcpState.FIN_WAIT2,
        TcpState.CLOSING,
        TcpState.LAST_ACK,
        TcpState.TIME_WAIT,
    }
)


#: States in which a socket still takes data from its peer.
_RECEIVING = frozenset({TcpState.ESTABLISHED, TcpState.FIN_WAIT1, TcpState.FIN_WAIT2})


def _read_empty(receiver: TcpSocket) -> bool:
    """The receiver takes data, and its owner has read everything that came."""
    return receiver.rqueue == 0 and receiver.state in _RECEIVING


def _fin_on_its_way(sender: TcpSocket, receiver: TcpSocket) -> bool:
    """The sender's FIN has left it (nothing queued ahead) and the receiver has not seen it."""
    return sender.state in _FIN_SENT and not sender.notsent and receiver.state in _RECEIVING


def _probed_into_room(sender: TcpSocket, receiver: TcpSocket) -> bool:
    """Bytes held back by a window the receiver has since emptied, a probe armed for them."""
    return sender.timer == PROBE_TIMER and bool(sender.notsent) and _read_empty(receiver)


def in_flight(client: TcpSocket | None, server: TcpSocket | None, *, acks: bool = True) -> bool:
    """Does the kernel still owe one end of a connection something the other end sent?

    A handshake the listener has not completed, data sent and not yet
    received, a FIN or a reset (the client's socket is gone) the other end
    has not yet seen: a loaded machine may defer that
    work to a kernel thread after send() returned.  `acks`: an unacknowledged
    segment counts too (where there are no delayed ACKs to wait out).
    Something held back by a closed window is not in flight: it waits for
    the receiver; unless the receiver's queue is empty (its owner has read
    it all) and the sender's zero-window probe is armed: the probe will find
    the window open and send, on the kernel's timer (`will_resend`).
    """
    if client is not None and server is not None:
        if server.state in (TcpState.SYN_RECV, TcpState.NEW_SYN_RECV):
            return True  # the handshake's last ACK has not reached the listener yet
        if acks and (client.unacked or server.unacked):
            return True
        if _fin_on_its_way(client, server) or _fin_on_its_way(server, client):
            return True
        if _probed_into_room(client, server) or _probed_into_room(server, client):
            return True
        return any(
            a.bytes_out is not None and b.bytes_in is not None and a.bytes_out > b.bytes_in
            for a, b in ((client, server), (server, client))
        )
    if client is None:  # the client reset and destroyed its end
        return server is not None and server.state is not TcpState.TIME_WAIT
    return client.state is TcpState.SYN_SENT or bool(acks and client.unacked)


def will_resend(sender: TcpSocket | None, receiver: TcpSocket | None) -> bool:
    """Will the kernel send `sender`'s queued bytes on a timer, and `receiver` take them?

    Two timers send by themselves, backed off exponentially (up to `RTO_MAX`)
    for as long as they found no room:

    - the retransmission timer: a receiver whose memory ran out before its
      window closed (many small segments, each with its own buffer overhead,
      while its owner did not read) drops segments it advertised room for,
      and the sender sends them again;
    - the zero-window probe timer: a sender facing a window too small to send
      into probes it, and does not always hear when its owner has read the
      receiver's queue empty (seen on the host's loopback with 64 KiB
      segments: megabytes held for seconds, then sent when the probe fired).

    Once the receiver's queue is empty (its owner reads again) the next firing
    lands: the bytes are late, not lost.  A receiver with unread bytes is not
    reading: what waits for it is not in flight.
    """
    return (
        sender is not None
        and receiver is not None
        and sender.timer in (RETRANSMIT_TIMER, PROBE_TIMER)
        and sender.wqueue > 0
        and _read_empty(receiver)
    )


#: Linux's TCP_RTO_MAX: the longest a backed-off retransmission timer runs (seconds).
RTO_MAX = 120.0


def listening_inodes(
    port: int, *, new_socket: Callable[..., socket.socket] = socket.socket
) -> set[int] | None:
    """Inodes of the sockets listening on TCP `port` (IPv4 and IPv6); None if unknown."""
    try:
        return {
            s.inode
            for s in dump(frozenset({TcpState.LISTEN}), new_socket=new_socket)
            if s.local[1] == port
        }
    except (OSError, AttributeError, struct.error, ValueError):  # not Linux, or refused
        return None
