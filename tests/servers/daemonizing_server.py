"""A server that goes into the background: fork, setsid, fork; the command exits 0.

The daemon listens on the port and would echo forever; argv[2] is a marker
the tests look for among running processes.
"""

import os
import socket
import sys
import time

if os.fork():
    sys.exit(0)
os.setsid()
if os.fork():
    os._exit(0)
listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    conn, _ = listener.accept()
    conn.sendall(conn.recv(65536).upper())
    conn.close()
    time.sleep(0)
