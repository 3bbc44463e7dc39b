"""A correct forking echo server whose children hold extra sockets (a socketpair).

Each connection gets a child process that relays through a socketpair to a
grandchild doing the transform, as `socat TCP-LISTEN,fork SYSTEM:'tr a-z A-Z'`
does with pipes: a per-connection process tree that owns several sockets.
"""

import os
import signal
import socket
import sys


def relay(conn: socket.socket) -> None:
    inner, outer = socket.socketpair()
    if os.fork() == 0:  # the transformer: uppercase whatever comes through the pair
        conn.close()
        outer.close()
        while data := inner.recv(65536):
            inner.sendall(data.upper())
        os._exit(0)
    inner.close()
    pending = True
    while True:
        import select

        readable, _, _ = select.select([conn, outer] if pending else [outer], [], [])
        if conn in readable:
            data = conn.recv(65536)
            if data:
                outer.sendall(data)
            else:
                outer.shutdown(socket.SHUT_WR)
                pending = False
        if outer in readable:
            data = outer.recv(65536)
            if not data:
                break
            conn.sendall(data)
    conn.close()
    os._exit(0)


def main() -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
    while True:
        conn, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            try:
                relay(conn)
            except OSError:
                os._exit(1)
        conn.close()


main()
