"""A descriptor held in reserve for when accept() fails with EMFILE.

Out of descriptors, accept() fails and the pending connection stays queued,
so the listening socket stays readable and an event loop spins on it.  With
one spare descriptor the server can free it, accept the connection, close it
at once (the client sees a clean close instead of a hang) and take the spare
back: the classic remedy of libev and nginx.  Every server in impl/ uses it.
"""

from __future__ import annotations

import logging
import os
import socket


class SpareDescriptor:
    def __init__(self) -> None:
        #: The reserved descriptor; None once it could not be taken back.
        self.fd: int | None = os.open(os.devnull, os.O_RDONLY)

    def refuse(self, listener: socket.socket, log: logging.Logger) -> None:
        """Accept the pending connection on the spare descriptor and close it.

        Call it when accept() failed with EMFILE or ENFILE, with `listener`
        readable (a blocking listener would wait here for a connection)."""
        if self.fd is None:
            return
        os.close(self.fd)
        try:
            conn, client_address = listener.accept()
        except OSError:
            pass
        else:
            log.warning("out of file descriptors: refusing %s", client_address)
            conn.close()
        finally:
            try:
                self.fd = os.open(os.devnull, os.O_RDONLY)
            except OSError:
                self.fd = None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
