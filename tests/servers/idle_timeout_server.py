"""A select echo server that closes a connection idle for 5 s, a common server default."""

import select
import socket
import sys
import time

IDLE_TIMEOUT = 5.0

listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
last_active: dict[socket.socket, float] = {}
while True:
    readable, _, _ = select.select([listener, *last_active], [], [], 0.5)
    now = time.monotonic()
    for s in readable:
        if s is listener:
            conn, _ = listener.accept()
            last_active[conn] = now
            continue
        try:
            data = s.recv(65536)
        except OSError:
            data = b""
        if not data:
            s.close()
            del last_active[s]
            continue
        s.sendall(data.upper())
        last_active[s] = now
    for s, then in list(last_active.items()):
        if now - then > IDLE_TIMEOUT:
            s.close()
            del last_active[s]
