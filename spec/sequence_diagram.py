"""A counterexample program drawn as a sequence diagram (inline SVG).

Design note
-----------
A shrunk program (``c0 = state.connect()``, ``state.send(c0, Payload(b'ab'),
writes=2)``, ...) says what the clients did, not what the server answered.
So the diagram replays the program against the protocol's own model: each
client's sends, half-closes, resets and closes, and the echo and EOF a
conforming server owes it at each step (echo arrives at once for a reading
client; a flooding client gets it when it reads, drains or is torn down).
The violation then marks where this server departed from that: the echo
arrow whose byte range holds the first divergent byte (from the violation's
connection and offset), with the expected and received bytes there, or the
server's lane when no connection is to blame (a crash).

Program lines are read by `spec.program.parse` (with `ast`, never run); a
line that is not a step is drawn as a note with its text.  Every string
that reaches the SVG is escaped: program text and violations may contain
anything a server sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

from spec.model import CONTEXT, UPPER, ClientState, Transform
from spec.program import InvalidProgram, Payload, Step, parse

if TYPE_CHECKING:  # spec.matrix imports the targets and drivers: not needed to draw
    from spec.matrix import ViolationEvidence

SERVER = "server"
LANE_W = 200
ROW_H = 30
TOP = 46
LEFT = 20
MIN_WIDTH = 720  # room for a note's text however few the lanes
CHAR_W = 6.6  # monospace 11px
PREVIEW = 12  # bytes shown of a payload

COLOURS = {
    "data": "#1f5fa8",
    "echo": "#2e7d32",
    "control": "#555",
    "eof": "#7a4fa0",
    "reset": "#c62828",
    "fail": "#c62828",
}


@dataclass
class Event:
    """One row of the diagram: an arrow between lanes, or a note."""

    src: str | None
    dst: str | None
    label: str
    style: str = "data"
    #: For echo arrows: the client and the byte range of its echo stream.
    echo: tuple[str, int, int] | None = None
    failed: str = ""  # the divergence shown on this row


def parse_step(line: str) -> Step | None:
    """A program line as a `Step` (`spec.program.parse`); None if it is not one."""
    try:
        return parse(line.strip())
    except (InvalidProgram, RecursionError):  # not a step, or nested too deeply to be one
        return None


def size(n: int) -> str:
    """Bytes for a person: 3 B, 64 KiB, 4 MiB, 1.5 MiB."""
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} B"


def preview(data: bytes, total: int | None = None) -> str:
    """Up to PREVIEW bytes as a Python literal, then … when there is more."""
    total = len(data) if total is None else total
    shown = repr(bytes(data[:PREVIEW]))
    return shown + ("…" if total > min(len(data), PREVIEW) else "")


def events(program: list[str], transform: Transform = UPPER) -> tuple[list[str], list[Event]]:
    """The lanes (clients in order, then the server) and the rows of the diagram;
    the echo owed is `transform` of what was sent."""
    drawing = _Drawing(transform)
    for line in program:
        if not drawing.draw(parse_step(line)):
            drawing.note(line.strip() or line)
    return [*drawing.lanes, SERVER], drawing.rows


@dataclass
class _Lane:
    """One client's connection as a conforming server would serve it, by counts.

    Counts, not bytes: a model `Connection` holds every byte sent and owed, and
    a drawn program may flood megabytes (64 MiB drawn that way took 285 MiB).
    Its state is the model's `ClientState`, and `ended` means what
    `Connection.ended` means.
    """

    state: ClientState = ClientState.OPEN
    reading: bool = True
    owed: int = 0
    delivered: int = 0
    eof: bool = False
    #: What the next echo bytes start with, as far as the payloads' heads say.
    next_echo: bytes = b""

    @property
    def half_closed(self) -> bool:
        return self.state is ClientState.HALF_CLOSED

    @property
    def ended(self) -> bool:
        return self.state in (ClientState.CLOSED, ClientState.ABORTED) or (
            self.half_closed and self.eof
        )


class _Drawing:
    """A program's rows, fed what a conforming server would do: every byte sent
    owed back, delivered when its client reads, and the EOF once a half-closed
    client has had all its echo.

    One `rule_NAME` method per machine rule draws its step and returns True,
    or False for arguments it cannot draw (the line is shown as a note).
    """

    def __init__(self, transform: Transform) -> None:
        self.transform = transform
        self.lanes: dict[str, _Lane] = {}
        self.rows: list[Event] = []
        self.created = 0

    def draw(self, step: Step | None) -> bool:
        """Draw `step` by its rule's method; False if it is no step this can draw."""
        rule = getattr(self, f"rule_{step.rule}", None) if step is not None else None
        if step is None or rule is None:
            return False
        try:
            return bool(rule(step.client, *step.operands, **step.kwargs))
        except (TypeError, ValueError, OverflowError):  # arguments it cannot draw: a note
            return False

    # -- the conforming server -----------------------------------------------------------

    def lane(self, name: str) -> _Lane:
        return self.lanes.setdefault(name, _Lane())

    def deliver(self, name: str, n: int, why: str) -> None:
        c = self.lane(name)
        n = min(n, c.owed)
        if n <= 0:
            return
        head, c.next_echo = c.next_echo[:n], c.next_echo[n:]
        label = f"{why} {preview(head, n) if head else ''} ({size(n)})".replace("  ", " ")
        start = c.delivered
        self.rows.append(Event(SERVER, name, label, "echo", echo=(name, start, start + n)))
        c.delivered += n
        c.owed -= n

    def owe(self, name: str, payload: Payload) -> None:
        c = self.lane(name)
        if c.owed == len(c.next_echo):  # the head is known up to here: extend it
            c.next_echo += self.transform(payload.head)
        c.owed += payload.length
        if c.reading:
            self.deliver(name, c.owed, "echo")

    def eof_if_done(self, name: str) -> None:
        c = self.lane(name)
        if c.half_closed and not c.eof and not c.owed:
            self.rows.append(Event(SERVER, name, "EOF (FIN)", "eof"))
            c.eof = True

    def end(self, name: str, state: ClientState) -> None:
        if not self.lane(name).ended:
            self.lane(name).state = state

    def arrow(self, name: str, label: str, style: str) -> bool:
        self.rows.append(Event(name, SERVER, label, style))
        return True

    def note(self, text: str) -> bool:
        self.rows.append(Event(None, None, text, "control"))
        return True

    # -- the rules ---------------------------------------------------------------------

    def rule_connect(self, name: str | None) -> bool:
        if not name:
            return False
        self.created += 1
        self.lane(name)
        return self.arrow(name, "connect", "control")

    def rule_send(self, name: str | None, p: object = None, writes: object = 1) -> bool:
        if not name or not isinstance(p, Payload):
            return False
        split = f", {writes} writes" if isinstance(writes, int) and writes > 1 else ""
        self.arrow(name, f"{preview(p.head, p.length)} ({size(p.length)}{split})", "data")
        self.owe(name, p)
        return True

    def rule_flood(self, name: str | None, p: object = None) -> bool:
        if not name or not isinstance(p, Payload):
            return False
        self.lane(name).reading = False
        label = f"flood {preview(p.head, p.length)} (up to {size(p.length)}), not reading"
        self.arrow(name, label, "data")
        self.owe(name, p)
        return True

    def rule_flood_and_half_close(self, name: str | None, p: object = None) -> bool:
        return self.rule_flood(name, p) and self.rule_half_close(name)

    def rule_read(self, name: str | None, n: object = None) -> bool:
        if not name or not isinstance(n, int):
            return False
        self.deliver(name, n, f"read ≤{size(n)}:")
        return True

    def rule_drain(self, name: str | None) -> bool:
        if not name:
            return False
        self.lane(name).reading = True
        self.deliver(name, self.lane(name).owed, "drain:")
        return True

    def rule_half_close(self, name: str | None) -> bool:
        if not name:
            return False
        self.arrow(name, "FIN (half-close)", "eof")
        self.end(name, ClientState.HALF_CLOSED)
        self.eof_if_done(name)
        return True

    def rule_send_and_half_close(self, name: str | None, p: object = None) -> bool:
        if not name or not isinstance(p, Payload):
            return False
        label = f"{preview(p.head, p.length)} ({size(p.length)}) + FIN (half-close)"
        self.arrow(name, label, "eof")
        self.end(name, ClientState.HALF_CLOSED)
        self.owe(name, p)
        self.eof_if_done(name)
        return True

    def rule_send_and_abort(self, name: str | None, p: object = None) -> bool:
        return self._race(name, p, "RST at once (abort)", ClientState.ABORTED)

    def rule_send_and_close(self, name: str | None, p: object = None) -> bool:
        return self._race(name, p, "close at once, unread: RST", ClientState.CLOSED)

    def _race(self, name: str | None, p: object, end: str, state: ClientState) -> bool:
        """Sent and ended before the server read a byte: no echo can be delivered."""
        if not name or not isinstance(p, Payload):
            return False
        self.arrow(name, f"{preview(p.head, p.length)} ({size(p.length)}) + {end}", "reset")
        self.end(name, state)
        return True

    def rule_abort(self, name: str | None) -> bool:
        if not name:
            return False
        self.end(name, ClientState.ABORTED)
        return self.arrow(name, "RST (abort)", "reset")

    def rule_close(self, name: str | None) -> bool:
        if not name:
            return False
        unread = self.lane(name).owed
        self.end(name, ClientState.CLOSED)
        if unread:
            return self.arrow(name, f"close: RST, {size(unread)} unread", "reset")
        return self.arrow(name, "close (FIN)", "control")

    def rule_burst(self, _: str | None, n: object = None, p: object = None) -> bool:
        if not isinstance(n, int) or not isinstance(p, Payload) or not 0 <= n < 256:
            return False  # each client of a burst sends one more byte of value i
        for i in range(n):
            name = f"c{self.created}"
            self.created += 1
            data = p.head + bytes([i]) * (i + 1)
            self.arrow(name, f"connect, {preview(data)} ({size(len(data))}), FIN", "data")
            self.end(name, ClientState.HALF_CLOSED)
            self.owe(name, Payload(data))
            self.eof_if_done(name)
        return True

    def rule_connect_out_of_descriptors(self, _: str | None) -> bool:
        return self.note(
            "server out of descriptors: a client connects; it "
            "must be refused, or served once descriptors are free"
        )

    def rule_choose_scenario(self, _: str | None, scenario: object = "?") -> bool:
        return self.note(f"scenario: {scenario}'s programs")

    def rule_teardown(self, _: str | None) -> bool:
        self.note("end of program: every client reads what it is owed")
        for name, c in self.lanes.items():
            if not c.ended:
                self.deliver(name, c.owed, "echo")
                self.eof_if_done(name)
        return True


def mark_violation(rows: list[Event], violation: ViolationEvidence | None) -> None:
    """Mark the row where the server first departed from the model."""
    if not violation:
        return
    connection, offset = violation.get("connection"), violation.get("offset")
    where = None
    if connection:
        echoes = [(r, r.echo) for r in rows if r.echo and r.echo[0] == connection]
        if offset is not None:
            where = next((r for r, (_, start, end) in echoes if start <= offset < end), None)
        if where is None:
            to_client = [r for r in rows if connection in (r.src, r.dst)]
            where = to_client[-1] if to_client else None
    text = divergence(violation)
    summary = f"✗ {violation.get('requirement', '')}: {violation.get('summary', '')}"
    if where is not None:
        where.failed = text or summary
    rows.append(Event(None, None, summary, "fail", failed=text if where is None else ""))


def divergence(violation: ViolationEvidence) -> str:
    """'byte 3: expected b'A', received b'a'' from the violation's windows."""
    offset = violation.get("offset")
    expected = _hex(violation.get("expected_hex"))
    received = _hex(violation.get("received_hex"))
    if offset is None or expected is None:
        return ""
    # The model's windows start CONTEXT bytes before the divergence (or at it
    # when nothing was received there).
    start = max(0, offset - CONTEXT) if received else offset
    i = offset - start
    want = preview(expected[i : i + 4], len(expected) - i)
    got = (
        preview(received[i : i + 4], len(received) - i)
        if received and i < len(received)
        else "nothing"
    )
    return f"✗ first divergent byte at offset {offset}: expected {want}, received {got}"


def _hex(value: str | None) -> bytes | None:
    if value is None:
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        return None


def svg(
    program: list[str], violation: ViolationEvidence | None = None, transform: Transform = UPPER
) -> str:
    """The diagram as an inline <svg> element."""
    lanes, rows = events(program, transform)
    mark_violation(rows, violation)
    x = {name: LEFT + LANE_W // 2 + i * LANE_W for i, name in enumerate(lanes)}
    width = max(MIN_WIDTH, LEFT * 2 + LANE_W * len(lanes))
    height = TOP + ROW_H * (len(rows) + 1) + sum(ROW_H for r in rows if r.failed)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="sequence" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'font-family="ui-monospace, Menlo, Consolas, monospace" font-size="11">',
        f"<title>sequence diagram: {len(program)} program steps</title>",
    ]
    for name in lanes:
        cx = x[name]
        fill = "#eee" if name == SERVER else "#fff"
        out.append(
            f'<rect x="{cx - 50}" y="8" width="100" height="24" rx="4" fill="{fill}" '
            f'stroke="#333"/><text x="{cx}" y="24" text-anchor="middle" '
            f'font-weight="bold">{escape(name)}</text>'
        )
        out.append(
            f'<line x1="{cx}" y1="32" x2="{cx}" y2="{height - 8}" stroke="#999" '
            'stroke-dasharray="4 3"/>'
        )
    y = TOP
    for row in rows:
        y += ROW_H
        colour = COLOURS.get(row.style, "#333")
        if row.src is None or row.dst is None:
            if row.style == "fail" and not row.failed and not _marked(rows):
                # Nothing to blame but the server (it crashed, it stopped accepting).
                out.append(_cross(x[SERVER], y - ROW_H + 10))
            out.append(_note(row.label, y, width, colour))
        else:
            out.append(
                _arrow(
                    x[row.src],
                    x[row.dst],
                    y,
                    row.label,
                    colour,
                    dashed=row.style in ("echo", "eof"),
                )
            )
        if row.failed:
            y += ROW_H
            target = x.get(row.dst or "", x[SERVER]) if row.src else x[SERVER]
            out.append(
                f'<circle cx="{target}" cy="{y - ROW_H + 2}" r="6" fill="none" '
                f'stroke="{COLOURS["fail"]}" stroke-width="2" class="divergence"/>'
            )
            out.append(_note(row.failed, y, width, COLOURS["fail"]))
    out.append("</svg>")
    return "\n".join(out)


def _marked(rows: list[Event]) -> bool:
    return any(r.failed and r.src is not None for r in rows)


def _cross(cx: int, cy: int) -> str:
    c = COLOURS["fail"]
    return (
        f'<g class="divergence" stroke="{c}" stroke-width="2.5"><line x1="{cx - 6}" '
        f'y1="{cy - 6}" x2="{cx + 6}" y2="{cy + 6}"/><line x1="{cx - 6}" y1="{cy + 6}" '
        f'x2="{cx + 6}" y2="{cy - 6}"/></g>'
    )


def _fit(text: str, pixels: float) -> str:
    chars = max(12, int(pixels / CHAR_W))
    return text if len(text) <= chars else text[: chars - 1] + "…"


def _arrow(x1: int, x2: int, y: int, label: str, colour: str, *, dashed: bool) -> str:
    direction = 1 if x2 > x1 else -1
    tip = x2 - direction * 2
    head = f"{tip},{y} {tip - direction * 8},{y - 4} {tip - direction * 8},{y + 4}"
    dash = ' stroke-dasharray="5 3"' if dashed else ""
    shown = _fit(label, max(abs(x2 - x1), LANE_W) - 10)
    return (
        f'<g class="step"><title>{escape(label)}</title>'
        f'<line x1="{x1}" y1="{y}" x2="{tip - direction * 6}" y2="{y}" stroke="{colour}" '
        f'stroke-width="1.5"{dash}/><polygon points="{head}" fill="{colour}"/>'
        f'<text x="{(x1 + x2) // 2}" y="{y - 5}" text-anchor="middle" fill="{colour}">'
        f"{escape(shown)}</text></g>"
    )


def _note(label: str, y: int, width: int, colour: str) -> str:
    shown = _fit(label, width - 2 * LEFT - 10)
    return (
        f'<g class="note"><title>{escape(label)}</title>'
        f'<text x="{LEFT}" y="{y - 4}" fill="{colour}" font-style="italic">'
        f"{escape(shown)}</text></g>"
    )
