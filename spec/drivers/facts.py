"""What a driver saw, as facts: the judge (`spec.judge`) names the requirement.

A driver knows how the server ran (it died, it still holds a connection that
ended) but not which requirement that breaks: that mapping is the protocol's,
kept in one place with the plans.  So `Driver.crash`, `Driver.leaks` and
`Driver.close` report these, and no driver imports a requirement ID.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerDied:
    """The server is dead: its process exited or was killed, or its loop raised."""

    detail: str


@dataclass(frozen=True)
class StillHeld:
    """The server still holds what it should have let go: a connection that
    ended, or descriptors left open when it was closed."""

    detail: str
    #: The client whose connection is held (None: the server as a whole).
    connection: str | None = None
    #: Seen only after waiting for the server to come to rest.
    waited: bool = False


Fact = ServerDied | StillHeld
