"""Replay a step program against a target, without Hypothesis' randomness.

Every failure the checker reports comes with a command like

    python -m spec.replay --impl impl.seed_upper_server:SeedUpperServer \\
        --expect ECHO-5 'c0 = state.connect()' 'state.abort(c0)'

Each argument is one line of the program, exactly as the report printed it;
the lines run in order against a fresh server, then the program's ending
(``state.teardown()``) if it is not among them.  `write_regression()` turns
the same program into a standalone pytest file (``pytest --echo-regressions=DIR``).

The lines are data, never executed as Python: each is parsed with `ast` and
must be one step, ``state.<rule>(<arguments>)`` or ``cN = state.connect()``,
where the rule is one of the machine's Hypothesis rules or initializers (or
``teardown``, last) and every argument is a literal: an int, bytes, a
string, a client name bound by an earlier line, or ``Payload(bytes[, int])``.
Arguments are held to what the checker draws, except that a payload may be
as large as `MAX_PAYLOAD_SIZE`.  The whole program is checked before the
server starts; a rule's precondition is checked when its turn comes.

Exit statuses (``--help`` lists them): 0 reproduced, 1 not reproduced (the
program passed, or broke another requirement first), 2 a usage error, 3 an
invalid program.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import inspect
import math
import re
import sys
import textwrap
import typing
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

from hypothesis.stateful import INITIALIZE_RULE_MARKER, RULE_MARKER

from spec.drivers.base import DEFAULT_SETTLE
from spec.drivers.clients import Client
from spec.machine import (
    CRASH_SCENARIOS,
    ConformanceFailure,
    EchoConformance,
    MiB,
    Payload,
    machine_for,
)
from spec.model import UPPER, Transform, Violation
from spec.plans import RULES
from spec.targets import Target, TargetError, impl, server_cmd, transform_named

#: Exit statuses of ``python -m spec.replay``.
REPRODUCED, NOT_REPRODUCED, USAGE_ERROR, INVALID_PROGRAM = 0, 1, 2, 3

#: The largest payload a replay sends (the checker's own stay at or below 4 MiB).
MAX_PAYLOAD_SIZE = 64 * MiB
#: The longest payload pattern the checker draws.
MAX_PATTERN = 64
#: The longest line replay reads (the checker's stay under 400 characters).
MAX_LINE = 1024
#: The values the rules' int and str arguments may take: what the checker draws
#: (tests/test_replay.py checks them against the strategies).
ARGUMENT_VALUES: dict[str, range | tuple[str, ...]] = {
    "writes": range(1, 4 + 1),
    "size": range(1, 64 * 1024 + 1),
    "n": range(2, 6 + 1),
    "scenario": CRASH_SCENARIOS,
    "seconds": range(1, 3600 + 1),
}
#: Steps the checker plays only in fixed programs of its own (never generated,
#: so not Hypothesis rules).
FIXED_PROGRAM_RULES = frozenset({"idle"})

_CLIENT_NAME = re.compile(r"c\d+")
_STEP = "a step is one 'state.<rule>(...)' call, or 'cN = state.connect()', with literal arguments"


class InvalidProgram(ValueError):
    """A line of the program is not a step the machine can run."""


@dataclass(frozen=True)
class _Ref:
    """A client name in a step's arguments, bound by an earlier line."""

    name: str


@dataclass(frozen=True)
class Step:
    """One validated line: call `rule` with these arguments, bind the result to `binds`."""

    line: str
    rule: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    binds: str | None = None


def run_program(
    target: Target,
    requirement: str,
    program: list[str],
    settle: float = DEFAULT_SETTLE,
    plan: str | None = None,
) -> Violation | None:
    """Run the lines; return the violation of `requirement` they produce, if any.

    `plan`: the requirement whose machine runs them (its rules, its program
    ending); by default `requirement`'s own.  A program that showed one
    requirement while the checker searched another runs under the other's.
    A violation of another requirement is raised as `ConformanceFailure`; a
    line that is not a valid step as `InvalidProgram` (before the server
    starts, except for a precondition that does not hold when its turn comes).
    """
    plan = plan or requirement
    machine_class = machine_for(plan)
    steps = parse_program(machine_class, program)
    try:
        machine = machine_class(target.driver(settle), plan, transform=target.echo)
        clients: dict[str, Client] = {}
        try:
            for number, step in enumerate(steps, 1):
                if step.rule == "teardown":
                    continue  # the `finally` ends every program
                function = getattr(machine_class, step.rule)
                _check_preconditions(machine, function, number, step)
                args = [clients[a.name] if isinstance(a, _Ref) else a for a in step.args]
                kwargs = {
                    k: clients[v.name] if isinstance(v, _Ref) else v for k, v in step.kwargs.items()
                }
                result = function(machine, *args, **kwargs)
                if step.binds:
                    clients[step.binds] = result
        finally:
            machine.teardown()
    except ConformanceFailure as failure:
        if failure.violation.requirement != requirement:
            raise  # the program broke another requirement first
        return failure.violation
    return None


# -- reading a program -------------------------------------------------------------------


def rules_of(machine_class: type[EchoConformance]) -> dict[str, Callable[..., Any]]:
    """The steps a program may call: the machine's public rules and initializers, and teardown."""
    found: dict[str, Callable[..., Any]] = {"teardown": machine_class.teardown}
    found.update({name: getattr(machine_class, name) for name in sorted(FIXED_PROGRAM_RULES)})
    for name in dir(machine_class):
        function: Callable[..., Any] | None = getattr(machine_class, name, None)
        if (
            function is not None
            and not name.startswith("_")
            and (hasattr(function, RULE_MARKER) or hasattr(function, INITIALIZE_RULE_MARKER))
        ):
            found[name] = function
    return found


def parse_program(machine_class: type[EchoConformance], program: list[str]) -> list[Step]:
    """Every line as a `Step`, or `InvalidProgram` naming the first line that is not one."""
    rules = rules_of(machine_class)
    bound: set[str] = set()
    steps: list[Step] = []
    for number, line in enumerate(program, 1):
        try:
            step = _parse_step(line, rules, bound)
            if steps and steps[-1].rule == "teardown":
                raise InvalidProgram("state.teardown() ends the program: it must be the last line")
            if _is_initializer(rules[step.rule]) and not all(
                _is_initializer(rules[s.rule]) for s in steps
            ):
                raise InvalidProgram(
                    f"state.{step.rule} is an initializer: it must come before every rule"
                )
        except RecursionError:
            raise InvalidProgram(
                f"line {number}, {_clip(line)}: nested too deeply to be a step; {_STEP}"
            ) from None
        except InvalidProgram as e:
            raise InvalidProgram(f"line {number}, {_clip(line)}: {e}") from None
        if step.binds:
            bound.add(step.binds)
        steps.append(step)
    return steps


def _is_initializer(function: Callable[..., Any]) -> bool:
    return hasattr(function, INITIALIZE_RULE_MARKER)


def _parse_step(line: str, rules: dict[str, Callable[..., Any]], bound: set[str]) -> Step:
    if len(line) > MAX_LINE:
        raise InvalidProgram(f"a step is at most {MAX_LINE} characters, this line has {len(line)}")
    try:
        tree = ast.parse(line, mode="exec")
    except SyntaxError as e:
        raise InvalidProgram(f"not valid Python ({e.msg}); {_STEP}") from None
    if len(tree.body) != 1:
        raise InvalidProgram(
            f"not a step of a conformance program: give each step as its own argument; {_STEP}"
        )
    statement = tree.body[0]
    binds = None
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
        target = statement.targets[0]
        if not (isinstance(target, ast.Name) and _CLIENT_NAME.fullmatch(target.id)):
            raise InvalidProgram(
                f"not a step of a conformance program: only a client name "
                f"such as c0 can be assigned; {_STEP}"
            )
        binds, call = target.id, statement.value
    elif isinstance(statement, ast.Expr):
        call = statement.value
    else:
        raise InvalidProgram(f"not a step of a conformance program; {_STEP}")
    if not (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and isinstance(call.func.value, ast.Name)
        and call.func.value.id == "state"
    ):
        raise InvalidProgram(f"not a step of a conformance program; {_STEP}")
    rule = call.func.attr
    if rule not in rules:
        raise InvalidProgram(
            f"state.{rule} is not a rule of this machine; its rules are {', '.join(sorted(rules))}"
        )
    args = tuple(_argument(node, bound) for node in call.args)
    kwargs = {}
    for keyword in call.keywords:
        if keyword.arg is None:
            raise InvalidProgram("**arguments are not literals; name each argument")
        kwargs[keyword.arg] = _argument(keyword.value, bound)
    function = rules[rule]
    _check_arguments(rule, function, args, kwargs)
    if binds and typing.get_type_hints(function).get("return") is not Client:
        raise InvalidProgram(
            f"state.{rule}() returns no client; only a rule that connects "
            f"one can be assigned to {binds}"
        )
    return Step(line, rule, args, kwargs, binds)


def _argument(node: ast.expr, bound: set[str]) -> Any:
    """The literal value of one argument (a `_Ref` for a client name)."""
    if isinstance(node, ast.Name) and _CLIENT_NAME.fullmatch(node.id):
        if node.id not in bound:
            raise InvalidProgram(
                f"{node.id} is not bound by an earlier line; "
                f"connect it first with '{node.id} = state.connect()'"
            )
        return _Ref(node.id)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Payload":
        return _payload(node)
    value = _constant(node)
    if value is None:
        raise InvalidProgram(
            f"{_clip(ast.unparse(node))} is not a literal: an argument is an "
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
                f"{_clip(ast.unparse(a))} is not a literal; write "
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
        raise InvalidProgram(f"a Payload pattern is bytes, like b'abc', not {_clip(repr(pattern))}")
    if not 1 <= len(pattern) <= MAX_PATTERN:
        raise InvalidProgram(
            f"a Payload pattern is 1 to {MAX_PATTERN} bytes, not {len(pattern)}; "
            f"for more data give a size: Payload(b'ab', 100000)"
        )
    if size is not None:
        if type(size) is not int:
            raise InvalidProgram(f"a Payload size is an int, not {_clip(repr(size))}")
        if not 1 <= size <= MAX_PAYLOAD_SIZE:
            raise InvalidProgram(
                f"Payload size {size} is out of range: replay sends 1 byte to "
                f"{MAX_PAYLOAD_SIZE // MiB} MiB ({MAX_PAYLOAD_SIZE} bytes)"
            )
    return Payload(pattern, size)


def _check_arguments(
    rule: str, function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """The right number, names, types and values of arguments for `rule`."""
    try:
        bound = inspect.signature(function).bind(None, *args, **kwargs)
    except TypeError as e:
        raise InvalidProgram(f"wrong arguments for state.{rule}: {e}") from None
    hints = typing.get_type_hints(function)
    for name, value in list(bound.arguments.items())[1:]:
        wanted = hints.get(name)
        got = Client if isinstance(value, _Ref) else type(value)
        if wanted is not None and got is not wanted:
            shown = value.name if isinstance(value, _Ref) else _clip(repr(value))
            raise InvalidProgram(f"argument {name} of state.{rule} is {_kind(wanted)}, not {shown}")
        allowed = ARGUMENT_VALUES.get(name)
        if allowed is not None and got in (int, str) and value not in allowed:
            raise InvalidProgram(
                f"argument {name} of state.{rule} is {_allowed(allowed)}, not {_clip(repr(value))}"
            )


def _kind(t: type) -> str:
    return {
        Client: "a client name such as c0",
        Payload: "a Payload(b'...'[, size])",
        int: "an int",
        str: "a string",
        bytes: "bytes",
    }.get(t, t.__name__)


def _allowed(values: range | tuple[str, ...]) -> str:
    if isinstance(values, range):
        return f"an int from {values.start} to {values.stop - 1}"
    return "one of " + ", ".join(map(repr, values))


def _check_preconditions(
    machine: EchoConformance, function: Callable[..., Any], number: int, step: Step
) -> None:
    if step.rule in FIXED_PROGRAM_RULES:
        return
    rule = getattr(function, RULE_MARKER, None) or getattr(function, INITIALIZE_RULE_MARKER)
    if all(p(machine) for p in rule.preconditions):
        return
    if step.rule not in machine.actions:
        why = (
            f"the {machine.requirement} machine does not run state.{step.rule} here; "
            f"it runs {', '.join(sorted(machine.actions))}"
        )
    else:
        why = (
            f"a precondition of state.{step.rule} is false at this point, so the checker "
            f"could not have run it here"
        )
    raise InvalidProgram(f"line {number}, {_clip(step.line)}: {why}")


def _clip(text: str, limit: int = 72) -> str:
    """`text` for a one-line message: control characters escaped, at most `limit` shown."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


# -- regressions -------------------------------------------------------------------------


def write_regression(
    directory: Path,
    target: Target,
    requirement: str,
    program: list[str],
    violation: Violation,
    settle: float = DEFAULT_SETTLE,
) -> Path:
    """A standalone pytest file that replays `program` and expects the same violation."""
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(f"{target.kind}|{target.spec}".encode()).hexdigest()[:10]
    req = requirement.lower().replace("-", "")
    path = directory / f"test_regression_{req}_{digest}.py"
    summary = textwrap.indent(violation.describe(), "#   ")
    steps = ",\n".join(f"    {line!r}" for line in program)
    how = "" if target.echo == UPPER else f", transform=transform_named({target.echo.name!r})"
    path.write_text(f'''"""Regression: {requirement} on {target.label}.

Written by the conformance checker; replays the shrunk program without
Hypothesis.  It passes while the server still shows the violation, and fails
once the defect is fixed (then delete it, or keep it as a guard by flipping
the assertion).
"""
# The diagnosis when this file was written:
{summary}

from spec.replay import run_program
from spec.targets import Target, transform_named

TARGET = Target({target.kind!r}, {target.spec!r}{how})
PROGRAM = [
{steps},
]


def test_{re.sub(r"[^a-z0-9]+", "_", requirement.lower())}_still_violated():
    violation = run_program(TARGET, {requirement!r}, PROGRAM, settle={settle!r})
    assert violation is not None, "the program no longer shows {requirement}"
    assert violation.requirement == {requirement!r}
''')
    return path


# -- the command -------------------------------------------------------------------------

_EPILOG = f"""\
exit status:
  {REPRODUCED}  reproduced: the program violated the expected requirement
  {NOT_REPRODUCED}  not reproduced: the program passed, or violated another requirement first
  {USAGE_ERROR}  usage error: a missing or invalid option (e.g. --settle nan, --expect ECHO-99)
  {INVALID_PROGRAM}  invalid program: a line is not a step (unknown rule or name, wrong
     arguments, a payload over {MAX_PAYLOAD_SIZE // MiB} MiB, not a literal, not valid Python)

example:
  python -m spec.replay --impl impl.seed_upper_server:SeedUpperServer \\
      --expect ECHO-5 'c0 = state.connect()' 'state.abort(c0)'
"""


class _Parser(argparse.ArgumentParser):
    """Usage errors on one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def _settle(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(f"give a finite number of seconds above 0, not {text}")
    return seconds


def _transform(text: str) -> Transform:
    try:
        return transform_named(text, option="--transform")
    except TargetError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _requirement(text: str) -> str:
    if text not in RULES:
        raise argparse.ArgumentTypeError(
            f"{text} is not a requirement the state machine checks; give one of {', '.join(RULES)}"
        )
    return text


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(
        prog="python -m spec.replay",
        description="Replay a conformance step program, as the checker printed it, against\n"
        "a server, and say whether it still violates the expected requirement.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--impl", metavar="MODULE:CLASS", help="a steppable Python server class")
    which.add_argument(
        "--server-cmd", metavar="COMMAND", help="a command that starts the server on {port}"
    )
    parser.add_argument(
        "--expect",
        required=True,
        metavar="ECHO-N",
        type=_requirement,
        help="the requirement the program is expected to violate",
    )
    parser.add_argument(
        "--plan",
        metavar="ECHO-N",
        type=_requirement,
        help="run the program under this requirement's plan (its rules and program ending); "
        "the checker gives it for a violation found while it searched another requirement "
        "(default: the --expect requirement's own)",
    )
    parser.add_argument(
        "--settle",
        type=_settle,
        default=DEFAULT_SETTLE,
        metavar="SECONDS",
        help=f"seconds a process server gets (default {DEFAULT_SETTLE:g})",
    )
    parser.add_argument(
        "--transform",
        type=_transform,
        default=UPPER,
        metavar="upper|identity|MODULE:FUNC",
        help="what the echo must be of each byte: upper (the default), identity (a plain "
        "echo) or a byte-wise function MODULE:FUNC (the checker prints the run's)",
    )
    parser.add_argument(
        "program",
        nargs="*",
        metavar="LINE",
        help="the program's lines, one per argument or several to an argument, one per "
        "line (none: just start and end)",
    )
    args = parser.parse_args(argv)
    program = [line for arg in args.program for line in arg.splitlines() if line.strip()]
    try:
        target = (
            impl(args.impl, "--impl") if args.impl else server_cmd(args.server_cmd, "--server-cmd")
        )
    except TargetError as e:
        parser.error(str(e))
    target = replace(target, transform=args.transform)
    try:
        violation = run_program(target, args.expect, program, args.settle, plan=args.plan)
    except InvalidProgram as e:
        print(f"{parser.prog}: invalid program: {e}", file=sys.stderr)
        return INVALID_PROGRAM
    except ConformanceFailure as failure:
        print(f"a different violation happened first:\n{failure.violation.describe()}")
        return NOT_REPRODUCED
    if violation is None:
        print(f"no violation: the program passed against {target.label}")
        return NOT_REPRODUCED
    print(f"reproduced:\n{violation.describe()}")
    return REPRODUCED


if __name__ == "__main__":
    sys.exit(main())
