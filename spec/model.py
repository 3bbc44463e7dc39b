"""A pure model of the echo protocol (its transform a parameter): no sockets, no clocks.

Design note
-----------
The transform is byte-wise, so at every moment a correct server's output on a
connection is a *prefix* of ``transform(sent)``, where ``sent`` is everything
the client has handed to its kernel.  The model therefore only needs, per
connection, the bytes sent, the bytes received, and a few facts the client
observed (it half-closed, it read EOF, it saw a reset).  `diagnose()` turns
those facts into the first `Violation`: the requirement it breaks, the byte
offset, and the expected and received bytes around it.  Every checker, in
every driver, reports through `diagnose()`, so a user reads one kind of
diagnosis everywhere.

What the model cannot know is *time*: whether the server has had long enough
to deliver.  The caller says so with ``settled=True`` (the in-process driver
after stepping the server to quiescence, the process driver after the settle
time), and only then does missing data count as lost.
"""

from __future__ import annotations

import codecs
import collections
import dataclasses
import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from spec.requirements import HALF_CLOSE, ISOLATION, STREAM, TRANSFORM

#: Bytes of context shown on each side of a divergence, and compared when
#: deciding how the received stream went wrong.
CONTEXT = 12
#: Fewest stray bytes that may be blamed on another connection (ECHO-3):
#: with many connections almost any single byte value occurs somewhere.
MIN_FOREIGN = 4


@dataclass(frozen=True)
class Transform:
    """What a server does to the bytes it echoes: a name (reports, replay) and a function.

    The function must be byte-wise (each byte maps to one byte, whatever its
    neighbours): the model relies on the echo so far being a prefix of the
    transform of what was sent.  Transforms are equal when their names are.
    """

    name: str
    function: Callable[[bytes], bytes] = field(compare=False, repr=False)

    def __call__(self, data: bytes) -> bytes:
        return bytes(self.function(bytes(data)))


#: The protocol's default: ASCII a-z to A-Z, every other byte unchanged.
UPPER = Transform("upper", bytes.upper)
#: A plain echo (RFC 862): every byte back unchanged.
IDENTITY = Transform("identity", bytes)
#: The transforms known by name (any other is MODULE:FUNC, `spec.targets.transform_named`).
TRANSFORMS = {t.name: t for t in (UPPER, IDENTITY)}


def transform(data: bytes, how: Transform = UPPER) -> bytes:
    """The echo `how` (by default: a-z to A-Z, every other byte unchanged) owes for `data`."""
    return how(data)


class ClientState(enum.Enum):
    OPEN = "open"
    HALF_CLOSED = "half-closed"  # the client shut down its sending side
    CLOSED = "closed"  # the client closed its socket in an orderly way
    ABORTED = "aborted"  # the client reset the connection (RST)


class Symptom(enum.Enum):
    """What a client saw, whatever requirement it breaks (`spec.causes` reads it)."""

    BYTES = "bytes that are not the echo"  # wrong, missing in the middle, extra, misplaced
    CLOSED = "an end the client did not ask for"  # EOF or a reset
    MISSING = "echo or EOF that never came"  # judged once the server had done all it would


@dataclass(frozen=True)
class Violation:
    """One broken requirement, located as precisely as the evidence allows."""

    requirement: str
    summary: str
    offset: int | None = None
    expected: bytes | None = None
    received: bytes | None = None
    connection: str | None = None
    #: Judged from something that did not happen within a wait (echo that never
    #: arrived, an EOF never sent, a socket still held), not from bytes seen:
    #: a replay that does not show it again leaves the verdict open.
    waited: bool = False
    #: What the client saw (None: not a connection's stream: a death, a leak, ...).
    kind: Symptom | None = None
    #: Attributed by its cause (`spec.causes`): the requirement the symptom
    #: alone names, the cause in words, and the program line of its step.
    symptom: str | None = None
    cause: str | None = None
    cause_step: int | None = None

    @property
    def headline(self) -> str:
        """The summary, after its cause where one was attributed."""
        return f"{self.cause}, {self.summary}" if self.cause else self.summary

    def unattributed(self) -> Violation:
        """The symptom under its own requirement, as if no cause were known."""
        if self.symptom is None:
            return self
        return dataclasses.replace(
            self, requirement=self.symptom, symptom=None, cause=None, cause_step=None
        )

    def describe(self) -> str:
        where = f" on {self.connection}" if self.connection else ""
        lines = [f"{self.requirement}: {self.headline}{where}"]
        if self.offset is not None:
            lines.append(f"  first divergent byte at offset {self.offset}")
        if self.expected is not None:
            lines.append(f"  expected: {_show(self.expected)}")
        if self.received is not None:
            lines.append(f"  received: {_show(self.received)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()


#: Bytes of a buffer a diagnosis shows; the `Violation` keeps them all.
SHOWN = 64


def _show(data: bytes) -> str:
    if not data:
        return "(nothing)"
    if len(data) <= SHOWN:
        return repr(bytes(data))
    return f"{bytes(data[:SHOWN])!r} … ({len(data)} bytes)"


def _byte(b: int) -> str:
    return f"0x{b:02x} ({bytes([b])!r})"


def diagnose(
    sent: bytes,
    received: bytes,
    *,
    eof: bool = False,
    reset: bool = False,
    half_closed: bool = False,
    settled: bool = False,
    others: Iterable[bytes] = (),
    transform: Transform = UPPER,
) -> Violation | None:
    """Return the first requirement broken on one connection, or None.

    sent:        the bytes the client handed to its kernel, in order.
    received:    the bytes it read back, in order.
    eof:         the client read EOF (the server closed its side).
    reset:       the client's socket failed with a reset it did not cause.
    half_closed: the client had shut down its sending side.
    settled:     the server has had all the time it is allowed, so outstanding
                 echo counts as lost and a missing EOF after half-close counts.
    others:      the expected echoes of the other connections, to recognise
                 bytes that belong to someone else (ECHO-3).
    transform:   what the server owes for each byte (ECHO-1); uppercase by default.
    """
    expected = transform(sent)
    v = _divergence(sent, expected, bytes(received), others)
    if v is not None:
        return dataclasses.replace(v, kind=Symptom.BYTES)
    missing = len(expected) - len(received)
    got = f"after {len(received)} of {len(expected)} echo bytes"
    if reset:
        if half_closed:
            return Violation(
                HALF_CLOSE,
                f"server reset the connection after half-close, {got}",
                offset=len(received),
                kind=Symptom.CLOSED,
            )
        return Violation(
            STREAM,
            f"server reset a connection the client had not closed, {got}",
            offset=len(received),
            kind=Symptom.CLOSED,
        )
    if eof and not half_closed:
        return Violation(
            STREAM,
            f"server closed a connection the client had not closed, {got}",
            offset=len(received),
            kind=Symptom.CLOSED,
        )
    if eof and missing:
        return Violation(
            HALF_CLOSE,
            f"server closed after half-close with {missing} echo bytes undelivered, {got}",
            offset=len(received),
            expected=expected[len(received) : len(received) + CONTEXT],
            received=b"",
            kind=Symptom.CLOSED,
        )
    if settled and missing:
        req = HALF_CLOSE if half_closed else STREAM
        why = "after half-close " if half_closed else ""
        return Violation(
            req,
            f"{missing} echo bytes {why}never arrived (the server had done all it would), {got}",
            offset=len(received),
            expected=expected[len(received) : len(received) + CONTEXT],
            received=b"",
            waited=True,
            kind=Symptom.MISSING,
        )
    if settled and half_closed and not eof:
        return Violation(
            HALF_CLOSE,
            f"no EOF after half-close (the server had done all it would), {got}",
            waited=True,
            kind=Symptom.MISSING,
        )
    return None


#: Bytes of the stream compared to decide that it realigns after a divergence.
ALIGN = CONTEXT
#: Most bytes an inserted or lost run may span and still be named as such.
MAX_SHIFT = 256
#: Most bytes a wrongly transformed byte may come back as (UTF-8 takes up to 4;
#: a replacement character 3).
MAX_WIDTH = 4
#: Bytes a client goes on reading after a divergence before the diagnosis is
#: final: enough to see where the stream realigns.
EVIDENCE = MAX_SHIFT + ALIGN


def _divergence(
    sent: bytes, expected: bytes, received: bytes, others: Iterable[bytes]
) -> Violation | None:
    """Compare contents: the first byte where `received` is not `expected`, named.

    The name comes from where the stream *realigns* (`_realigns`): the fewest
    bytes that, taken out of each stream at the divergence, make the next
    `ALIGN` bytes agree.  Only received bytes taken out: inserted (ECHO-2);
    only expected ones: lost (ECHO-2); one expected byte for one to
    `MAX_WIDTH` received: that byte's transform is wrong (ECHO-1, the only
    case ECHO-1 names: a wrong transform of the byte at its own offset).
    Streams that do not realign are reordered, another connection's, or
    decoded as text.
    """
    n = min(len(expected), len(received))
    if received[:n] == expected[:n]:
        if len(received) <= len(expected):
            return None
        i = len(expected)
    else:
        i = next(k for k in range(n) if received[k] != expected[k])
    lo = max(0, i - CONTEXT)
    exp_win, rcv_win = expected[lo : i + CONTEXT], received[lo : i + CONTEXT]
    snippet = received[i : i + CONTEXT]

    def violation(req: str, summary: str) -> Violation:
        return Violation(req, summary, offset=i, expected=exp_win, received=rcv_win)

    if snippet not in expected and any(
        snippet in o if len(snippet) >= MIN_FOREIGN else snippet == o for o in others
    ):
        return violation(
            ISOLATION, f"received {len(snippet)}+ bytes that belong to another connection's echo"
        )
    if i >= len(expected):
        extra = len(received) - len(expected)
        return violation(
            STREAM,
            f"received {extra} bytes more than the echo of what was sent "
            f"({_copy_or_not(received[i:], expected, i)})",
        )
    if received[i] == sent[i]:
        return violation(
            TRANSFORM,
            f"byte {_byte(sent[i])} came back untransformed; expected {_byte(expected[i])}",
        )
    replaced = _replacement_at(sent, received, i)
    if replaced is not None:
        return violation(
            TRANSFORM,
            f"byte {_byte(sent[replaced])} came back as U+FFFD {REPLACEMENT!r} (decoded as "
            f"text, it was not valid UTF-8); expected {_byte(expected[replaced])}",
        )
    shift = _realigns(expected, received, i)
    if shift is not None:
        req, summary = _shifted(sent, expected, received, i, *shift)
        return violation(req, summary)
    if collections.Counter(received[i:]) == collections.Counter(expected[i : len(received)]):
        # From the divergence on, the bytes received are those owed over the
        # same span, in another order: short chunks out of order, not a
        # transform error.  (Over a whole flood's megabytes any byte value is
        # owed somewhere, so the span is the received one, no more.)
        return violation(
            STREAM, "the echo holds the right bytes in the wrong order (reordered or duplicated)"
        )
    moved = _moved_from(snippet, expected, i)
    if moved is not None:
        return violation(
            STREAM,
            f"the echo of bytes {moved}-{moved + len(snippet) - 1} "
            f"arrived at offset {i} (reordered or duplicated)",
        )
    if _bytewise(sent, received, i):
        return violation(
            TRANSFORM,
            f"byte {_byte(sent[i])} came back as {_byte(received[i])}; "
            f"expected {_byte(expected[i])} (and the bytes after it are "
            "changed the same way, each at its own offset)",
        )
    # Non-ASCII bytes turned into something else that does not realign within
    # `ALIGN` bytes are what a server that decodes text does (U+FFFD,
    # case-mapped Latin-1, one after another): a transform error.
    if sent[i] >= 0x80:
        return violation(
            TRANSFORM,
            f"byte {_byte(sent[i])} came back as {_byte(received[i])}; "
            f"expected {_byte(expected[i])}",
        )
    return violation(
        STREAM,
        "echo diverges from the transform of what was sent (bytes lost, inserted or reordered)",
    )


#: U+FFFD REPLACEMENT CHARACTER in UTF-8: what a server that decodes bytes as
#: text with errors="replace" sends for each byte it could not decode.
REPLACEMENT = "\ufffd".encode()


def _replacement_at(sent: bytes, received: bytes, i: int) -> int | None:
    """Where a U+FFFD that covers offset `i` of `received` began, if it stands
    for a non-ASCII byte sent there (its first byte can equal the echo owed
    there, 0xef, and the rest then look inserted)."""
    for j in range(max(0, i - len(REPLACEMENT) + 1), i + 1):
        if received[j : j + len(REPLACEMENT)] == REPLACEMENT and j < len(sent) and sent[j] >= 0x80:
            return j
    return None


def _shifted(
    sent: bytes, expected: bytes, received: bytes, i: int, taken: int, lost: int
) -> tuple[str, str]:
    """The requirement and words for a divergence at `i` after which the streams
    realign once `taken` received and `lost` expected bytes are set aside."""
    if lost == 1 and taken == 1:
        return (
            TRANSFORM,
            f"byte {_byte(sent[i])} came back as {_byte(received[i])}; "
            f"expected {_byte(expected[i])}",
        )
    block, want = received[i : i + taken], expected[i : i + lost]
    if lost and taken > lost and want in block and not _utf8_so_far(received, i, i + taken):
        # The echo's own bytes, intact, among others no text decoder writes
        # (not UTF-8): bytes inserted around them, not a transform.
        return (
            STREAM,
            f"{taken - lost} bytes were inserted around the echo's {_show(want)}, "
            f"which came back as {bytes(block)!r}",
        )
    if lost == 1 and taken:
        return (
            TRANSFORM,
            f"byte {_byte(sent[i])} came back as {taken} bytes "
            f"{bytes(received[i : i + taken])!r}; expected {_byte(expected[i])}",
        )
    if not taken:
        if lost == 1:
            return (STREAM, f"byte {_byte(expected[i])} is missing from the echo (lost)")
        return (
            STREAM,
            f"{lost} bytes of the echo, {_show(expected[i : i + lost])}, "
            "are missing from it (lost)",
        )
    if not lost:
        run = received[i : i + taken]
        moved = _moved_from(run[:CONTEXT], expected, i)
        if moved is not None and moved > i:
            return (
                STREAM,
                f"the echo of bytes {moved}-{moved + taken - 1} "
                f"arrived early, at offset {i} (reordered)",
            )
        what = _copy_or_not(run, expected, i)
        if taken == 1:
            return (STREAM, f"byte {_byte(received[i])} was inserted into the echo ({what})")
        return (STREAM, f"{taken} bytes, {_show(run)}, were inserted into the echo ({what})")
    if _retransformed(sent, expected, received, i, taken, lost):
        more = "the bytes after it" if taken == lost else f"{lost} bytes as {taken}"
        return (
            TRANSFORM,
            f"byte {_byte(sent[i])} came back as {_byte(received[i])}; expected "
            f"{_byte(expected[i])} ({more} changed too, each where it was sent)",
        )
    return (
        STREAM,
        f"{lost} bytes of the echo came back as {taken} other bytes (bytes lost and inserted)",
    )


def _retransformed(
    sent: bytes, expected: bytes, received: bytes, i: int, taken: int, lost: int
) -> bool:
    """Is a block of `lost` echo bytes that came back as `taken` others, after
    which the streams realign, several wrong transforms rather than a stream fault?

    Yes when the echo's bytes were changed where they stand, not moved: the
    block is not the expected bytes in another order, nor (at `MIN_FOREIGN`
    bytes or more) echo that belongs elsewhere; and either it is as long as
    what it replaces (each byte at its own offset) or it replaces non-ASCII
    bytes (text decoding changes lengths only there: U+FFFD, ß as SS, ⱥ as Ⱥ).
    """
    block, want = received[i : i + taken], expected[i : i + lost]
    if collections.Counter(block) == collections.Counter(want):
        return False  # the same bytes, reordered
    if taken >= MIN_FOREIGN and _moved_from(block[:CONTEXT], expected, i) is not None:
        return False
    if taken == lost:
        return True
    shorter, longer = sorted((taken, lost))
    decoded = any(b >= 0x80 for b in sent[i : i + lost])
    return decoded and shorter > 0 and longer <= shorter * MAX_WIDTH


def _utf8_so_far(received: bytes, start: int, end: int) -> bool:
    """Is ``received[start:end]`` UTF-8 (the last character may go on), read from
    the start of the character `start` falls in?"""
    j = start
    while j > 0 and start - j < 3 and 0x80 <= received[j] < 0xC0:
        j -= 1  # back over continuation bytes, to the character's first byte
    try:
        codecs.getincrementaldecoder("utf-8")().decode(received[j:end], final=False)
    except UnicodeDecodeError:
        return False
    return True


def _realigns(expected: bytes, received: bytes, i: int) -> tuple[int, int] | None:
    """The fewest bytes (taken from `received`, lost from `expected`) after
    which the two streams, diverging at `i`, agree again.

    They agree when the next `ALIGN` bytes match, or when both streams end at
    the same place within them.  When the received stream ends sooner (its
    client has read no more), at least `MIN_FOREIGN` matching bytes will do,
    if no shift of the same cost fits fully.  When it goes on past the end of
    the echo (more bytes inserted later), bytes only inserted before the
    whole rest of the echo will do, if no shift of any cost fits fully (the
    cheapest such insertion): the first fault is named, the bytes past the
    echo are a later one.  Not a shift that loses echo bytes: the echo's last
    few bytes recur by chance in what a wrongly transformed stream goes on
    with (U+FFFD after U+FFFD), and a wrong transform (ECHO-1) would be
    named a stream fault.  None: no shift of up to `MAX_SHIFT`
    bytes explains the divergence.
    """
    overlong = None
    for cost in range(1, MAX_SHIFT + 1):
        weak = None
        for taken, lost in _shifts(cost):
            fit = _fit(expected, i + lost, received, i + taken)
            if fit == "full":
                return taken, lost
            if fit == "partial" and weak is None:
                weak = taken, lost
            # Bytes only inserted, or only lost before enough of the echo.
            if (
                fit == "overlong"
                and overlong is None
                and (not lost or (not taken and len(expected) - i - lost >= MIN_FOREIGN))
            ):
                overlong = taken, lost
        if weak is not None:
            return weak
    return overlong


def _shifts(cost: int) -> Iterable[tuple[int, int]]:
    """The (taken, lost) pairs of one cost: a byte transformed into several
    bytes first, then bytes inserted, bytes lost, and both."""
    if 2 <= cost <= MAX_WIDTH + 1:
        yield cost - 1, 1
    yield cost, 0
    yield 0, cost
    for taken in range(2, min(cost - 2, MAX_WIDTH) + 1):
        yield taken, cost - taken


def _fit(expected: bytes, e: int, received: bytes, r: int) -> str | None:
    """Do `expected` from `e` and `received` from `r` agree ("full"), agree as
    far as `received` goes ("partial"), agree until the echo ends but
    `received` goes on ("overlong"), or not (None)?"""
    want, got = expected[e : e + ALIGN], received[r : r + ALIGN]
    if len(want) < ALIGN:  # the echo ends: the received stream should end there too
        if got == want and len(received) - r == len(want):
            return "full"
        return "overlong" if want and got.startswith(want) else None
    if got == want:
        return "full"
    if MIN_FOREIGN <= len(got) < ALIGN and want.startswith(got):
        return "partial"
    return None


def _bytewise(sent: bytes, received: bytes, i: int) -> bool:
    """Is `received` from `i` on a byte-wise function of `sent`: as long, each
    byte at its own offset, and every sent value that occurs again coming
    back as the same value (at least once: evidence, not a vacuous match)?
    A server that uppercases, checked as a plain echo, is one."""
    if len(received) != len(sent) or len(sent) - i < MIN_FOREIGN:
        return False
    seen: dict[int, int] = {}
    repeated = False
    for k in range(i, len(sent)):
        image = seen.setdefault(sent[k], received[k])
        if image != received[k]:
            return False
        repeated |= len(seen) < k - i + 1
    return repeated


def _moved_from(snippet: bytes, expected: bytes, i: int) -> int | None:
    """Where else in the echo `snippet`, received at offset `i`, belongs, if anywhere.

    A run of received bytes that is the echo of bytes sent at another offset
    is a stream out of order (ECHO-2), not a wrong transform (ECHO-1), which
    is a byte that is not the transform of the byte at its own offset.
    """
    if len(snippet) < MIN_FOREIGN:
        return None
    found = expected.find(snippet)
    while found == i:
        found = expected.find(snippet, found + 1)
    return None if found < 0 else found


def _copy_or_not(run: bytes, echo: bytes, i: int) -> str:
    """Is a run inserted at offset `i` a copy of earlier echo, or no echo at all?"""
    if len(run) >= MIN_FOREIGN and run[:CONTEXT] in echo[: i + CONTEXT]:
        return "a copy of earlier echo: duplicated"
    if len(run) >= MIN_FOREIGN and not set(run) & set(echo):
        return "not the echo of any byte sent"
    return "duplicated or foreign"


@dataclass
class Connection:
    """What one client has sent and received, and what it has done.

    `record_received` checks each new chunk against the expected echo in
    O(chunk) and only falls back to `diagnose()` when something is wrong.
    """

    name: str
    sent: bytearray = field(default_factory=bytearray)
    expected: bytearray = field(default_factory=bytearray)
    received_count: int = 0
    state: ClientState = ClientState.OPEN
    eof: bool = False
    reset: bool = False
    #: The client is deliberately not reading (it floods).
    reading: bool = True
    #: The first divergence; once the stream has diverged it stays diagnosed.
    violation: Violation | None = None
    #: What the server owes for each byte sent (set before the first send).
    transform: Transform = UPPER
    #: After a divergence: the received count where its chunk began, the
    #: bytes received from there, and the count up to which they are kept.
    _diverged: int = field(default=0, init=False, repr=False)
    _evidence: bytearray = field(default_factory=bytearray, init=False, repr=False)
    _evidence_until: int = field(default=0, init=False, repr=False)

    @property
    def outstanding(self) -> int:
        """Echo bytes the server still owes this client."""
        return len(self.expected) - self.received_count

    @property
    def ended(self) -> bool:
        """Both directions are finished: the server must hold nothing for it."""
        return (
            self.reset
            or self.state in (ClientState.CLOSED, ClientState.ABORTED)
            or (self.state is ClientState.HALF_CLOSED and self.eof)
        )

    @property
    def half_closed(self) -> bool:
        return self.state is ClientState.HALF_CLOSED

    def record_sent(self, data: bytes) -> None:
        self.sent += data
        self.expected += self.transform(data)

    def record_received(
        self,
        data: bytes,
        others: Iterable[bytes] | Callable[[], Iterable[bytes]] = (),
    ) -> Violation | None:
        """Account for `data` read from the server; the first divergence, if any.

        `others` (or a function returning them, called only on a divergence)
        are the other connections' expected echoes, for ECHO-3.  After a
        divergence the client goes on reading while `gathering`: the
        diagnosis is made again with each chunk, so it names what the stream
        shows once the server is at rest, not where a read() happened to end.
        """
        n = self.received_count
        self.received_count += len(data)
        if self.violation is None:
            # A slice compares with memcmp; a memoryview would compare byte by byte.
            if self.expected[n : n + len(data)] == data:
                return None
            self._diverged = n
            self._evidence = bytearray()
            first = next(
                k for k in range(len(data)) if self.expected[n + k : n + k + 1] != data[k : k + 1]
            )
            self._evidence_until = n + first + EVIDENCE
        elif not self.gathering:
            return self.violation
        room = self._evidence_until - self._diverged - len(self._evidence)
        self._evidence += data[: max(0, room)]
        # The stream was a prefix of `expected` until the divergence, so
        # rebuild it and let diagnose() locate and classify it.
        received = bytes(self.expected[: self._diverged]) + self._evidence
        v = diagnose(
            bytes(self.sent),
            received,
            others=others() if callable(others) else others,
            transform=self.transform,
        )
        self.violation = (
            _on(v, self.name)
            if v
            else Violation(
                STREAM,
                "echo diverges from the transform of what was sent",
                offset=self._diverged,
                connection=self.name,
                kind=Symptom.BYTES,
            )
        )
        return self.violation

    @property
    def gathering(self) -> bool:
        """Diverged, and still reading the bytes after it that name the divergence."""
        return (
            self.violation is not None
            and self.violation.kind is Symptom.BYTES
            and self._diverged + len(self._evidence) < self._evidence_until
            and not (self.eof or self.reset)
        )

    def diagnose(self, *, settled: bool = False, others: Iterable[bytes] = ()) -> Violation | None:
        """The first violation on this connection so far (see `diagnose()`)."""
        if self.violation is not None:
            return self.violation
        v = diagnose(
            bytes(self.sent),
            bytes(self.expected[: self.received_count]),
            eof=self.eof,
            reset=self.reset,
            half_closed=self.half_closed,
            settled=settled,
            others=others,
            transform=self.transform,
        )
        return _on(v, self.name) if v else None


def _on(v: Violation, connection: str) -> Violation:
    return dataclasses.replace(v, connection=connection)
