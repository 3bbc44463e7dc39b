"""A program: the steps a conformance machine took, one line each.

Design note
-----------
A program has one shape, `Step`, and one text form, its line::

    c0 = state.connect()
    state.send(c0, Payload(b'ab'), writes=2)

The machine writes each step it takes with `format_step`, from the rule's
signature, as Hypothesis' ``_repr_step`` does (a parameter with a default is
written as a keyword).  `parse` reads a line back into the same `Step`, with
`ast` and never by running it: a step is one ``state.<rule>(...)`` call, or
``cN = state.connect()``, and every argument a literal (an int, bytes, a
string, a client name, or ``Payload(bytes[, int])``).  What an argument may
be is said once, here: `BOUNDS`, `MAX_PATTERN` and `MAX_PAYLOAD_SIZE`.  The
machine's strategies are built from them (`integers`), and replay holds a
program to them.

What needs the machine (that the rule exists, the types of its arguments,
its preconditions) is `spec.replay`'s; the sequence diagram
(`spec.sequence_diagram`) draws a line that does not parse as a note.
"""

from __future__ import annotations

import ast
import functools
import inspect
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from spec.plans import PLANS
from spec.requirements import RESILIENCE

MiB = 1024 * 1024
PAYLOAD_BLOCK = 64 * 1024

#: The longest payload pattern the checker draws (and replay takes).
MAX_PATTERN = 64
#: The largest payload a replay sends (the checker's own stay at or below 4 MiB).
MAX_PAYLOAD_SIZE = 64 * MiB
#: The longest line replay reads (the checker's stay under 400 characters).
MAX_LINE = 1024
#: The scenarios the resilience machine plays (see spec/plans.py).
CRASH_SCENARIOS: tuple[str, ...] = PLANS[RESILIENCE].scenarios
#: The values the rules' int and str arguments may take, by parameter name:
#: the machine draws from these, and replay refuses anything else.
BOUNDS: dict[str, range | tuple[str, ...]] = {
    "writes": range(1, 4 + 1),
    "size": range(1, 64 * 1024 + 1),
    "n": range(2, 6 + 1),
    "scenario": CRASH_SCENARIOS,
    "seconds": range(1, 3600 + 1),
}

CLIENT_NAME = re.compile(r"c\d+")
SHAPE = "a step is one 'state.<rule>(...)' call, or 'cN = state.connect()', with literal arguments"


class InvalidProgram(ValueError):
    """A line of the program is not a step the machine can run."""


def integers(name: str) -> st.SearchStrategy[int]:
    """What the machine draws for the int parameter `name` (`BOUNDS`)."""
    values = BOUNDS[name]
    assert isinstance(values, range)
    return st.integers(values.start, values.stop - 1)


@dataclass(frozen=True)
class Payload:
    """Bytes to send: `pattern` itself, or `size` bytes that start with it.

    Large payloads are generated from the pattern (a seed), so Hypothesis
    draws and shrinks a few bytes and a size, never megabytes.
    """

    pattern: bytes
    size: int | None = None

    @property
    def length(self) -> int:
        """How many bytes `data()` is, without making them."""
        if self.size is None:
            return len(self.pattern)
        return max(self.size, len(self.pattern[: self.size]))

    @property
    def head(self) -> bytes:
        """The first bytes of `data()`: the pattern, as far as the payload goes."""
        return self.pattern[: self.length]

    def data(self) -> bytes:
        if self.size is None or self.size <= len(self.pattern):
            return self.pattern[: self.size]
        # Random bytes seeded by the pattern, made cheaply at megabytes: one
        # block repeated, each copy ending in its own 8-byte counter, so no
        # two 64 KiB stretches are alike and a reordered chunk is visible.
        block = random.Random(self.pattern).randbytes(PAYLOAD_BLOCK - 8)
        rest = self.size - len(self.pattern)
        copies = -(-rest // PAYLOAD_BLOCK)
        body = b"".join(block + i.to_bytes(8, "big") for i in range(copies))
        return self.pattern + body[:rest]

    def __repr__(self) -> str:
        if self.size is None:
            return f"Payload({self.pattern!r})"
        return f"Payload({self.pattern!r}, {self.size})"


@dataclass(frozen=True)
class Ref:
    """A client named in a step's arguments."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Step:
    """One line: call `rule` with these arguments; bind the client it returns to `binds`."""

    rule: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    binds: str | None = None
    #: The text it was read from (what a message quotes).
    line: str = ""

    @property
    def client(self) -> str | None:
        """The client the step acts on: its first argument, or the one it connects."""
        if self.args and isinstance(self.args[0], Ref):
            return self.args[0].name
        return self.binds

    @property
    def operands(self) -> tuple[Any, ...]:
        """The arguments after the client it acts on."""
        return self.args[1:] if self.args and isinstance(self.args[0], Ref) else self.args


# -- writing ---------------------------------------------------------------------------


def format_step(rule: Callable[..., Any], arguments: Mapping[str, Any], binds: str = "") -> str:
    """The line of a call of `rule` (a machine method) with `arguments` by name.

    Parameters are written in the signature's order; one with a default as
    ``name=value``.  A client is written as its name.
    """
    named = {p.name for p in _parameters(rule)}
    assert set(arguments) <= named, f"{rule.__name__} takes no {set(arguments) - named}"
    words = []
    for parameter in _parameters(rule):
        if parameter.name not in arguments:
            continue
        value = _literal(arguments[parameter.name])
        has_default = parameter.default is not inspect.Parameter.empty
        words.append(f"{parameter.name}={value}" if has_default else value)
    call = f"state.{rule.__name__}({', '.join(words)})"
    return f"{binds} = {call}" if binds else call


@functools.cache
def _parameters(rule: Callable[..., Any]) -> tuple[inspect.Parameter, ...]:
    return tuple(inspect.signature(rule).parameters.values())[1:]  # not self


def _literal(value: Any) -> str:
    name = getattr(value, "name", None)
    return name if isinstance(name, str) and CLIENT_NAME.fullmatch(name) else repr(value)


# -- reading ---------------------------------------------------------------------------


def parse(line: str) -> Step:
    """`line` as a `Step`, or `InvalidProgram` saying why it is not one.

    Only the shape and the literals are checked here (a payload against
    `MAX_PATTERN` and `MAX_PAYLOAD_SIZE`); whether the rule and its arguments
    fit a machine (`BOUNDS` among them) is replay's.
    """
    if len(line) > MAX_LINE:
        raise InvalidProgram(f"a step is at most {MAX_LINE} characters, this line has {len(line)}")
    try:
        tree = ast.parse(line, mode="exec")
    except SyntaxError as e:
        raise InvalidProgram(f"not valid Python ({e.msg}); {SHAPE}") from None
    if len(tree.body) != 1:
        raise InvalidProgram(
            f"not a step of a conformance program: give each step as its own argument; {SHAPE}"
        )
    statement = tree.body[0]
    binds = None
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
        target = statement.targets[0]
        if not (isinstance(target, ast.Name) and CLIENT_NAME.fullmatch(target.id)):
            raise InvalidProgram(
                f"not a step of a conformance program: only a client name "
                f"such as c0 can be assigned; {SHAPE}"
            )
        binds, call = target.id, statement.value
    elif isinstance(statement, ast.Expr):
        call = statement.value
    else:
        raise InvalidProgram(f"not a step of a conformance program; {SHAPE}")
    if not (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and isinstance(call.func.value, ast.Name)
        and call.func.value.id == "state"
    ):
        raise InvalidProgram(f"not a step of a conformance program; {SHAPE}")
    args = tuple(_argument(node) for node in call.args)
    kwargs = {}
    for keyword in call.keywords:
        if keyword.arg is None:
            raise InvalidProgram("**arguments are not literals; name each argument")
        kwargs[keyword.arg] = _argument(keyword.value)
    return Step(call.func.attr, args, kwargs, binds, line)


def _argument(node: ast.expr) -> Any:
    """The literal value of one argument (a `Ref` for a client name)."""
    if isinstance(node, ast.Name) and CLIENT_NAME.fullmatch(node.id):
        return Ref(node.id)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Payload":
        return _payload(node)
    value = _constant(node)
    if value is None:
        raise InvalidProgram(
            f"{clip(ast.unparse(node))} is not a literal: an argument is an "
            f"int, bytes, a string, a client name such as c0, or "
            f"Payload(b'...'[, size])"
        )
    return value


def _constant(node: ast.expr) -> int | bytes | str | None:
    """An int (possibly negative), bytes or str literal; None for anything else."""
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and type(node.operand.value) is int
    ):
        return -node.operand.value
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | bytes | str)
        and type(node.value) is not bool
    ):
        return node.value
    return None


def _payload(node: ast.Call) -> Payload:
    for a in [*node.args, *(k.value for k in node.keywords)]:
        if _constant(a) is None:
            raise InvalidProgram(
                f"{clip(ast.unparse(a))} is not a literal; write "
                f"Payload(b'pattern') or Payload(b'pattern', size) with the "
                f"size as a plain int"
            )
    if any(k.arg is None for k in node.keywords):
        raise InvalidProgram("Payload() takes no **arguments; write Payload(b'pattern', size)")
    values = [_constant(a) for a in node.args]
    named = {k.arg: _constant(k.value) for k in node.keywords if k.arg is not None}
    try:
        bound = inspect.signature(Payload).bind(*values, **named)
    except TypeError as e:
        raise InvalidProgram(
            f"Payload(): {e}; write Payload(b'pattern') or Payload(b'pattern', size)"
        ) from None
    pattern, size = bound.arguments["pattern"], bound.arguments.get("size")
    if type(pattern) is not bytes:
        raise InvalidProgram(f"a Payload pattern is bytes, like b'abc', not {clip(repr(pattern))}")
    if not 1 <= len(pattern) <= MAX_PATTERN:
        raise InvalidProgram(
            f"a Payload pattern is 1 to {MAX_PATTERN} bytes, not {len(pattern)}; "
            f"for more data give a size: Payload(b'ab', 100000)"
        )
    if size is not None:
        if type(size) is not int:
            raise InvalidProgram(f"a Payload size is an int, not {clip(repr(size))}")
        if not 1 <= size <= MAX_PAYLOAD_SIZE:
            raise InvalidProgram(
                f"Payload size {size} is out of range: replay sends 1 byte to "
                f"{MAX_PAYLOAD_SIZE // MiB} MiB ({MAX_PAYLOAD_SIZE} bytes)"
            )
    return Payload(pattern, size)


def clip(text: str, limit: int = 72) -> str:
    """`text` for a one-line message: control characters escaped, at most `limit` shown."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"
