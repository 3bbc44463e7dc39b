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
import hashlib
import inspect
import math
import re
import sys
import textwrap
import typing
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from hypothesis.stateful import INITIALIZE_RULE_MARKER, RULE_MARKER

from spec.drivers.base import DEFAULT_SETTLE
from spec.drivers.clients import Client
from spec.machine import ConformanceFailure, EchoConformance, machine_for
from spec.model import UPPER, Transform, Violation
from spec.plans import RULES
from spec.program import (
    BOUNDS,
    MAX_PAYLOAD_SIZE,
    SHAPE,
    InvalidProgram,
    MiB,
    Payload,
    Ref,
    Step,
    clip,
    parse,
)
from spec.targets import Target, TargetError, impl, server_cmd, transform_named

#: Exit statuses of ``python -m spec.replay``.
REPRODUCED, NOT_REPRODUCED, USAGE_ERROR, INVALID_PROGRAM = 0, 1, 2, 3

#: Steps the checker plays only in fixed programs of its own (never generated,
#: so not Hypothesis rules).
FIXED_PROGRAM_RULES = frozenset({"idle"})
#: Re-exported: what a program may hold is `spec.program`'s.
__all__ = ["MAX_PAYLOAD_SIZE", "InvalidProgram", "parse_program", "run_program"]


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
                args = [clients[a.name] if isinstance(a, Ref) else a for a in step.args]
                kwargs = {
                    k: clients[v.name] if isinstance(v, Ref) else v for k, v in step.kwargs.items()
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
                f"line {number}, {clip(line)}: nested too deeply to be a step; {SHAPE}"
            ) from None
        except InvalidProgram as e:
            raise InvalidProgram(f"line {number}, {clip(line)}: {e}") from None
        if step.binds:
            bound.add(step.binds)
        steps.append(step)
    return steps


def _is_initializer(function: Callable[..., Any]) -> bool:
    return hasattr(function, INITIALIZE_RULE_MARKER)


def _parse_step(line: str, rules: dict[str, Callable[..., Any]], bound: set[str]) -> Step:
    step = parse(line)
    if step.rule not in rules:
        raise InvalidProgram(
            f"state.{step.rule} is not a rule of this machine; "
            f"its rules are {', '.join(sorted(rules))}"
        )
    for value in [*step.args, *step.kwargs.values()]:
        if isinstance(value, Ref) and value.name not in bound:
            raise InvalidProgram(
                f"{value.name} is not bound by an earlier line; "
                f"connect it first with '{value.name} = state.connect()'"
            )
    function = rules[step.rule]
    _check_arguments(step.rule, function, step.args, dict(step.kwargs))
    if step.binds and typing.get_type_hints(function).get("return") is not Client:
        raise InvalidProgram(
            f"state.{step.rule}() returns no client; only a rule that connects "
            f"one can be assigned to {step.binds}"
        )
    return step


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
        got = Client if isinstance(value, Ref) else type(value)
        if wanted is not None and got is not wanted:
            shown = value.name if isinstance(value, Ref) else clip(repr(value))
            raise InvalidProgram(f"argument {name} of state.{rule} is {_kind(wanted)}, not {shown}")
        allowed = BOUNDS.get(name)
        if allowed is not None and got in (int, str) and value not in allowed:
            raise InvalidProgram(
                f"argument {name} of state.{rule} is {_allowed(allowed)}, not {clip(repr(value))}"
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
    raise InvalidProgram(f"line {number}, {clip(step.line)}: {why}")


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

TARGET = Target({target.kind.value!r}, {target.spec!r}{how})
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
