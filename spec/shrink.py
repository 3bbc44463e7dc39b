"""Shrink a step program by running it again, for violations Hypothesis did not shrink.

Hypothesis shrinks the violations of the requirement it searches for.  A
program that showed *another* requirement's violation is set aside from that
search (`spec.machine`), so Hypothesis never shrinks it; the checker shrinks
it here, with the replay as the test: greedy deletion, first of everything
but the step that showed the violation and its clients' steps, then of whole
clients (a client's connect and every step that names it), runs of steps and
single steps, until no deletion keeps the violation or the time is up.  Each candidate is a
fresh run against a fresh server, so the result is a program that reproduced
on its last run.

The search is over lines (`spec.replay` reads them), so it knows only what a
line says: which client it binds and which it names.
"""

from __future__ import annotations

import ast
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

TEARDOWN = "state.teardown()"


@dataclass(frozen=True)
class Shrunk:
    program: list[str]
    #: Runs made (each against a fresh server).
    runs: int
    #: False if the time ran out before no deletion was left to try.
    complete: bool


def shrink(
    program: Sequence[str],
    reproduces: Callable[[list[str]], bool],
    *,
    deadline: float | None = None,
) -> Shrunk:
    """The smallest program found that still `reproduces` (`program` itself if none is).

    `reproduces(lines)` runs the lines against a fresh server; it must return
    False for a program that is not valid.  `deadline`: time.monotonic() after
    which no new run starts.  The step that showed the violation (the last,
    unless the program ended in its teardown) is kept: a program whose own
    ending shows it instead says less than the one the checker saw.
    """
    best = [line for line in program if line.strip() != TEARDOWN]
    keep_last = bool(program) and program[-1].strip() != TEARDOWN
    runs = 0

    def expired() -> bool:
        return deadline is not None and time.monotonic() > deadline

    improved = True
    while improved:
        improved = False
        for candidate in _candidates(best):
            if keep_last and (not candidate or candidate[-1] != best[-1]):
                continue
            if expired():
                return Shrunk(best, runs, complete=False)
            runs += 1
            if reproduces(candidate):
                best, improved = candidate, True
                break
    renamed = renumber(best)
    if renamed != best and not expired():
        runs += 1
        if reproduces(renamed):
            best = renamed
    return Shrunk(best, runs, complete=True)


def _candidates(lines: list[str]) -> list[list[str]]:
    """Deletions to try, the likeliest to leave a short program first.

    First the last step with only what it needs (the clients it names,
    connected), then with everything its clients did: a crash or a lost echo
    is most often made by the steps of the client that shows it.  Then whole
    clients, then runs of steps (halves, quarters, ... as in delta debugging),
    then single steps.
    """
    out: list[list[str]] = []
    if lines:
        needed = _names(lines[-1]) | ({_binds(lines[-1])} - {None})
        out.append([line for line in lines[:-1] if _binds(line) in needed] + lines[-1:])
        out.append([line for line in lines if (_names(line) | {_binds(line)}) & needed])
    for name in [b for b in (_binds(line) for line in lines) if b]:
        out.append([line for line in lines if name not in _names(line) and _binds(line) != name])
    size = len(lines) // 2
    while size >= 2:
        for start in range(0, len(lines) - size + 1, size):
            block = lines[start : start + size]
            if not any(_binds(line) for line in block):
                out.append(lines[:start] + lines[start + size :])
        size //= 2
    for i, line in enumerate(lines):
        if _binds(line) is None:
            out.append(lines[:i] + lines[i + 1 :])
    unique: list[list[str]] = []
    for c in out:
        if c != lines and c not in unique:
            unique.append(c)
    return unique


def _parse(line: str) -> ast.stmt | None:
    try:
        body = ast.parse(line).body
    except SyntaxError:
        return None
    return body[0] if len(body) == 1 else None


def _binds(line: str) -> str | None:
    """The client a line binds (``c2 = state.connect()``), if any."""
    statement = _parse(line)
    if isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Name):
        return statement.targets[0].id
    return None


def _names(line: str) -> set[str]:
    """The client names a line's arguments use."""
    statement = _parse(line)
    if statement is None:
        return set()
    value = statement.value if isinstance(statement, ast.Assign | ast.Expr) else statement
    return {n.id for n in ast.walk(value) if isinstance(n, ast.Name) and n.id != "state"}


def renumber(lines: Sequence[str]) -> list[str]:
    """Client names as the machine gives them (c0, c1, ... in connect order, a
    burst's clients counted too), so the diagnosis and the program agree."""
    mapping: dict[str, str] = {}
    count = 0
    for line in lines:
        statement = _parse(line)
        bound = _binds(line)
        if bound is not None:
            mapping[bound] = f"c{count}"
            count += 1
        elif (
            isinstance(statement, ast.Expr)
            and isinstance(statement.value, ast.Call)
            and isinstance(statement.value.func, ast.Attribute)
            and statement.value.func.attr == "burst"
            and statement.value.args
            and isinstance(statement.value.args[0], ast.Constant)
            and isinstance(statement.value.args[0].value, int)
        ):
            count += statement.value.args[0].value
    if all(old == new for old, new in mapping.items()):
        return list(lines)
    return [_rename(line, mapping) for line in lines]


def _rename(line: str, mapping: dict[str, str]) -> str:
    tree = ast.parse(line)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in mapping:
            node.id = mapping[node.id]
    return ast.unparse(tree)
