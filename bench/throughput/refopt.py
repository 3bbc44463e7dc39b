"""A proposal, measured but not adopted: the reference server sending echo straight away.

    python bench/throughput/refopt.py --port N
    python bench/throughput/run.py --quick --servers reference,refopt,uvloop,c

`impl.select_server` queues each echo and sends it in the *next* select round,
once select() has reported the socket writable.  Every round trip therefore
costs two select() calls, each building and scanning fd sets of every
connection, and `outputs` (a list) is searched and edited for every message:
``s not in self.outputs`` and ``self.outputs.remove(s)`` are O(connections),
which is what makes the reference fall behind at 1,000 connections.

This subclass changes one method: after ``recv`` it tries ``send`` at once,
and only what the socket does not take is queued and waits in `outputs`, as
before (so partial sends, backpressure, half-close and resets behave as in
the reference).  `outputs` then holds only the rare connection with a
backlog.  The lists, names and the rest of the loop are the reference's.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from impl import _cli
from impl.select_server import SelectEchoServer


class SendAtOnceEchoServer(SelectEchoServer):
    def _receive(self, s: socket.socket) -> None:
        try:
            data = s.recv(self.recv_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # reset, timeout, ...: this connection only
            self._close(s)
            return
        queue = self.message_queues[s]
        if not data:
            self.finished.add(s)
            self.inputs.remove(s)
            if not queue:
                self._close(s)
            return
        echo = data.upper()
        if queue:  # echo is already waiting (s is in outputs): keep the order
            queue += echo
            if len(queue) >= self.backlog_limit:
                self.inputs.remove(s)  # backpressure: read again once drained
            return
        try:
            sent = s.send(echo)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(s)
            return
        if sent == len(echo):
            return
        queue += echo[sent:]
        self.outputs.append(s)  # the queue was empty, so s was not in outputs
        if len(queue) >= self.backlog_limit:
            self.inputs.remove(s)  # backpressure: read again once drained


def main(argv: list[str] | None = None) -> int:
    return _cli.run(SendAtOnceEchoServer, description="The reference select() server, "
                    "sending echo at once after recv (a measured proposal).",
                    default_port=10000, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
