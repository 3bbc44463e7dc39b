"""Replay a step program against a target, without Hypothesis' randomness.

Every failure the checker reports comes with a command like

    python -m spec.replay --impl impl.seed_upper_server:SeedUpperServer \\
        --expect ECHO-5 'c0 = state.connect()' 'state.abort(c0)'

Each argument is one line of the program, exactly as the report printed it;
the lines run in order against a fresh server, then the program's ending
(``state.teardown()``) if it is not among them.  Exit status 0 means the
expected violation happened again, 1 that it did not (or another did), 2 a
usage error.  `write_regression()` turns the same program into a standalone
pytest file (``--regressions DIR``).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import textwrap
from pathlib import Path

from spec.checker import DEFAULT_SETTLE
from spec.machine import ConformanceFailure, Payload, machine_for
from spec.model import Violation
from spec.targets import Target, TargetError, impl, server_cmd

_LINE = re.compile(r"^(?:c\d+ = )?state\.\w+\(.*\)$")


def run_program(target: Target, requirement: str, program: list[str],
                settle: float = DEFAULT_SETTLE) -> Violation | None:
    """Run the lines; return the violation of `requirement` they produce, if any.

    A violation of another requirement is raised as `ConformanceFailure`.
    """
    for line in program:
        if not _LINE.match(line):
            raise ValueError(f"not a step of a conformance program: {line!r}")
    try:
        machine = machine_for(requirement)(target.driver(settle), requirement)
        namespace = {"state": machine, "Payload": Payload}
        try:
            for line in program:
                if line != "state.teardown()":
                    exec(line, namespace)
        finally:
            machine.teardown()
    except ConformanceFailure as failure:
        if failure.violation.requirement != requirement:
            raise  # the program broke another requirement first
        return failure.violation
    return None


def write_regression(directory: Path, target: Target, requirement: str, program: list[str],
                     violation: Violation, settle: float = DEFAULT_SETTLE) -> Path:
    """A standalone pytest file that replays `program` and expects the same violation."""
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(f"{target.kind}|{target.spec}".encode()).hexdigest()[:10]
    req = requirement.lower().replace("-", "")
    path = directory / f"test_regression_{req}_{digest}.py"
    summary = textwrap.indent(violation.describe(), "#   ")
    steps = ",\n".join(f"    {line!r}" for line in program)
    path.write_text(f'''"""Regression: {requirement} on {target.label}.

Written by the conformance checker; replays the shrunk program without
Hypothesis.  It passes while the server still shows the violation, and fails
once the defect is fixed (then delete it, or keep it as a guard by flipping
the assertion).
"""
# The diagnosis when this file was written:
{summary}

from spec.replay import run_program
from spec.targets import Target

TARGET = Target({target.kind!r}, {target.spec!r})
PROGRAM = [
{steps},
]


def test_{re.sub(r"[^a-z0-9]+", "_", requirement.lower())}_still_violated():
    violation = run_program(TARGET, {requirement!r}, PROGRAM, settle={settle!r})
    assert violation is not None, "the program no longer shows {requirement}"
    assert violation.requirement == {requirement!r}
''')
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spec.replay",
        description="Replay a conformance step program against a server.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--impl", metavar="MODULE:CLASS", help="a steppable Python server class")
    which.add_argument("--server-cmd", metavar="COMMAND",
                       help="a command that starts the server on {port}")
    parser.add_argument("--expect", required=True, metavar="ECHO-N",
                        help="the requirement the program is expected to violate")
    parser.add_argument("--settle", type=float, default=DEFAULT_SETTLE,
                        help=f"seconds a process server gets (default {DEFAULT_SETTLE:g})")
    parser.add_argument("program", nargs="*",
                        help="the program's lines, one per argument (none: just start and end)")
    args = parser.parse_args(argv)
    try:
        target = impl(args.impl) if args.impl else server_cmd(args.server_cmd)
    except TargetError as e:
        parser.error(str(e))
    try:
        violation = run_program(target, args.expect, args.program, args.settle)
    except ValueError as e:
        parser.error(str(e))
    except ConformanceFailure as failure:
        print(f"a different violation happened first:\n{failure.violation.describe()}")
        return 1
    if violation is None:
        print(f"no violation: the program passed against {target.label}")
        return 1
    print(f"reproduced:\n{violation.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
