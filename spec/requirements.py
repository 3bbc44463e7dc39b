"""The echo protocol's requirements, as data (the transform of ECHO-1 is a parameter).

This table is the one source for `spec/PROTOCOL.md`, the conformance tests
(one pytest test per entry) and the JSON report.  IDs never change meaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Level(StrEnum):
    MUST = "MUST"
    SHOULD = "SHOULD"


@dataclass(frozen=True)
class Requirement:
    id: str
    level: Level
    title: str
    text: str


#: Each requirement's ID by what it is about (the code names them so; reports print the ID).
TRANSFORM = "ECHO-1"
STREAM = "ECHO-2"
ISOLATION = "ECHO-3"
HALF_CLOSE = "ECHO-4"
RESILIENCE = "ECHO-5"
CLEANUP = "ECHO-6"
LIVENESS = "ECHO-7"
MEMORY = "ECHO-8"
IDLE = "ECHO-9"
CAPACITY = "ECHO-10"


REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement(
        TRANSFORM,
        Level.MUST,
        "Transform",
        "Every byte received comes back as the transform of it, a byte-wise parameter of the "
        "protocol: by default (upper) bytes.upper(), a-z become A-Z and every other value "
        "0x00-0xFF is unchanged; identity is a plain echo (no text decoding either way).",
    ),
    Requirement(
        STREAM,
        Level.MUST,
        "Stream integrity",
        "On each connection the bytes sent back are exactly the transform of the bytes "
        "received, in order: nothing lost, duplicated, inserted or reordered, however the "
        "client splits its writes and reads; the server does not close or reset a connection "
        "the client has not closed.",
    ),
    Requirement(
        ISOLATION,
        Level.MUST,
        "Isolation",
        "A connection receives only the echo of its own bytes.",
    ),
    Requirement(
        HALF_CLOSE,
        Level.MUST,
        "Half-close",
        "After the client shuts down its sending side, the server delivers every outstanding "
        "echo byte and then closes its side (the client reads EOF) within the settle time.",
    ),
    Requirement(
        RESILIENCE,
        Level.MUST,
        "Resilience",
        "A client's reset (RST) or an error on one connection affects no other connection "
        "and never stops the server accepting.",
    ),
    Requirement(
        CLEANUP,
        Level.MUST,
        "Cleanup",
        "Once a connection has ended (orderly or reset), within the settle time the server "
        "holds nothing for it: no socket (no CLOSE_WAIT, no leaked descriptor), no entry in "
        "its select lists (inputs, outputs), no message queue.",
    ),
    Requirement(
        LIVENESS,
        Level.MUST,
        "Liveness",
        "A client that sends without reading never delays another client's echo beyond the "
        "settle time.",
    ),
    Requirement(
        MEMORY,
        Level.SHOULD,
        "Bounded memory",
        "While a client sends without reading, the server stops reading from it once its "
        "unsent backlog passes a bound (backpressure): pushing 64 MiB grows the server's "
        "resident memory by less than 32 MiB.",
    ),
    Requirement(
        IDLE,
        Level.SHOULD,
        "Idle",
        "With connections open and no traffic, the server uses no CPU (no busy loop).",
    ),
    Requirement(
        CAPACITY,
        Level.SHOULD,
        "Capacity",
        "1,000 simultaneous connections are served correctly; beyond the server's own limit, "
        "extra connections are refused or closed cleanly while existing ones keep working.",
    ),
)

BY_ID: dict[str, Requirement] = {r.id: r for r in REQUIREMENTS}
IDS: tuple[str, ...] = tuple(BY_ID)


def requirement(req_id: str) -> Requirement:
    try:
        return BY_ID[req_id]
    except KeyError:
        raise KeyError(f"unknown requirement {req_id!r}; known: {', '.join(IDS)}") from None
