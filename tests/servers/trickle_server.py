"""The reference select server, but every send() writes at most 16 bytes: correct, and slow.

It echoes a 1 MiB flood in tens of thousands of select() rounds.  Usage:
python tests/servers/trickle_server.py --port PORT

With TRICKLE_WRITE=N and TRICKLE_PAUSE=S in its environment it writes N bytes
per send() and sleeps S seconds before each: slow by its own sleeps, which
the process driver must wait for (`tests/drivers/test_rest_timers.py`).
"""

import os
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from impl._cli import run
from impl.select_server import SelectEchoServer

WRITE = int(os.environ.get("TRICKLE_WRITE", "16"))
PAUSE = float(os.environ.get("TRICKLE_PAUSE", "0"))


class TrickleEchoServer(SelectEchoServer):
    def send(self, s: socket.socket, data: bytes | bytearray) -> int:
        if PAUSE:
            time.sleep(PAUSE)
        return s.send(data[:WRITE])


if __name__ == "__main__":
    raise SystemExit(
        run(
            TrickleEchoServer,
            description="a correct echo server that writes 16 bytes at a time",
            default_port=10000,
        )
    )
