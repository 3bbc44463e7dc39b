"""What is being checked: a steppable class (`--echo-impl`) or a command (`--echo-server-cmd`).

Every mistake a user can make naming a target becomes a `TargetError` with
one line that says what to do.

A run may check several targets.  Each has a `name` (used in test ids, the
matrix and the reports): from a targets file it is the name written there;
from the command line it is the program's or the module's name
(`node examples/echo_server.js {port}` is `echo_server`, `--echo-impl
impl.select_server:SelectEchoServer` is `select_server`), made unique with
`-2`, `-3`.  Names never come from splitting `NAME=COMMAND`: a command may
itself begin with `VAR=value`.
"""

from __future__ import annotations

import enum
import importlib
import math
import os
import re
import shlex
import sys
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from spec.drivers.base import Driver
from spec.drivers.inprocess import InProcessDriver
from spec.drivers.process import ProcessDriver
from spec.drivers.server_process import ServerSupply
from spec.model import TRANSFORMS, UPPER, Transform

#: Methods a class needs to be stepped in-process.
STEPPABLE = ("poll", "close")


class TargetError(Exception):
    """A target that cannot be used, with a message for the user."""


class TargetKind(enum.StrEnum):
    """How a target runs: its class stepped in this process, or its command as a process."""

    IMPL = "impl"
    CMD = "cmd"


@dataclass(frozen=True)
class Target:
    """What is checked: an `ImplTarget` (a class stepped in this process) or a
    `CommandTarget` (a command run as a process), one class per kind.

    ``Target(kind, spec)`` makes the one of that kind (`kind` a `TargetKind` or
    its value, "impl" or "cmd"); `spec` is what the user wrote.
    """

    kind: TargetKind
    spec: str
    #: What the matrix, the test ids and the reports call it (not part of its identity).
    name: str = field(default="", compare=False)
    #: Its own --echo-settle, from a targets file; None: the run's.
    settle: float | None = field(default=None, compare=False)
    #: What its echo must be of each byte (ECHO-1): its own from a targets file,
    #: else the run's --echo-transform; None: the default, upper.
    transform: Transform | None = None

    def __new__(cls, kind: TargetKind | str | None = None, *_: Any, **__: Any) -> Target:
        if cls is Target:  # the class of its kind (copies and unpickling name theirs)
            cls = _OF_KIND[TargetKind(str(kind))]
        return super().__new__(cls)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", TargetKind(self.kind))  # "impl", "cmd" or a TargetKind

    @property
    def echo(self) -> Transform:
        """The transform its echo is judged by."""
        return self.transform or UPPER

    @property
    def label(self) -> str:
        """How the target is shown in messages: the command, or ``--impl MODULE:CLASS``."""
        raise NotImplementedError

    def driver(self, settle: float, supply: ServerSupply | None = None) -> Driver:
        """A driver for one program; a command's servers come from `supply` if given."""
        raise NotImplementedError

    def command(self) -> str:
        """A shell command that runs this target as a server on {port}."""
        raise NotImplementedError

    def as_process(self) -> Target:
        """The same server as a process (measurements need one)."""
        raise NotImplementedError

    def default_name(self) -> str:
        """The program's or module's name: what a person would call the target."""
        raise NotImplementedError


@dataclass(frozen=True)
class ImplTarget(Target):
    """A steppable class, ``MODULE:CLASS`` (`--echo-impl`), stepped in this process."""

    @property
    def label(self) -> str:
        return f"--impl {self.spec}"

    def driver(self, settle: float, supply: ServerSupply | None = None) -> Driver:
        return InProcessDriver(load_impl(self.spec), target=self.spec)

    def command(self) -> str:
        return f"{shlex.quote(sys.executable)} -m spec.drivers.run_impl {self.spec} --port {{port}}"

    def as_process(self) -> Target:
        return CommandTarget(TargetKind.CMD, self.command(), transform=self.transform)

    def default_name(self) -> str:
        return _as_name(self.spec.partition(":")[0].rpartition(".")[2])


@dataclass(frozen=True)
class CommandTarget(Target):
    """A command with ``{port}`` (`--echo-server-cmd`), run as a process, in any language."""

    @property
    def label(self) -> str:
        return self.spec

    def driver(self, settle: float, supply: ServerSupply | None = None) -> Driver:
        return ProcessDriver(self.spec, settle=settle, target=self.spec, supply=supply)

    def command(self) -> str:
        return self.spec

    def as_process(self) -> Target:
        return self

    def default_name(self) -> str:
        words = shlex.split(self.spec)
        i = 0
        while i < len(words) and (
            _ENV_ASSIGNMENT.match(words[i])
            or _INTERPRETERS.fullmatch(Path(words[i]).name)
            or (words[i].startswith("-") and words[i] != "-m")
        ):
            i += 1
        if i + 1 < len(words) and words[i] == "-m":  # python -m package.module
            return _as_name(words[i + 1].rpartition(".")[2])
        if i > 0 and words[i - 1] in ("-c", "-e"):  # python -c CODE: named after the interpreter
            runner = [w for w in words[:i] if _INTERPRETERS.fullmatch(Path(w).name)]
            return _as_name(Path(runner[-1] if runner else words[0]).stem)
        word = words[i] if i < len(words) else words[0]
        return _as_name(Path(word).stem)


#: The class of each kind.
_OF_KIND: dict[TargetKind, type[Target]] = {
    TargetKind.IMPL: ImplTarget,
    TargetKind.CMD: CommandTarget,
}


def server_cmd(command: str, option: str = "--echo-server-cmd") -> Target:
    """A command target; `option` is what the messages call it (spec.replay's differs)."""
    if not command.strip():
        raise TargetError(
            f"{option} is empty: give a command with '{{port}}', e.g. "
            f"{option} 'python myserver.py --port {{port}}'"
        )
    if "{port}" not in command:
        raise TargetError(
            f"{option} {command!r} has no '{{port}}' placeholder: write where "
            f"the port goes, e.g. {option} 'python myserver.py --port {{port}}'"
        )
    try:
        argv = shlex.split(command)
    except ValueError as e:
        raise TargetError(f"{option} {command!r} cannot be parsed as a command: {e}") from None
    if not argv:
        raise TargetError(f"{option} is empty")
    return CommandTarget(TargetKind.CMD, command)


def impl(spec: str, option: str = "--echo-impl") -> Target:
    if not spec.strip():
        raise TargetError(
            f"{option} is empty: give MODULE:CLASS, e.g. "
            f"{option} impl.select_server:SelectEchoServer"
        )
    load_impl(spec, option)  # fail now, with a clear message, not in the middle of a test
    return ImplTarget(TargetKind.IMPL, spec)


def load_impl(spec: str, option: str = "--echo-impl") -> type:
    module_name, sep, class_name = spec.partition(":")
    if not sep or not module_name or not class_name:
        raise TargetError(
            f"{option} {spec!r} should be MODULE:CLASS, e.g. "
            f"{option} impl.select_server:SelectEchoServer"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise TargetError(
            f"{option} {spec!r}: cannot import module {module_name!r} ({e}); run "
            "pytest from the directory that contains it or put it on PYTHONPATH"
        ) from None
    cls: object = module
    for part in class_name.split("."):
        cls = getattr(cls, part, None)
        if cls is None:
            raise TargetError(f"{option} {spec!r}: module {module_name!r} has no {class_name!r}")
    missing = [m for m in STEPPABLE if not callable(getattr(cls, m, None))]
    if not isinstance(cls, type) or missing:
        raise TargetError(
            f"{option} {spec!r} is not a steppable server class (missing: "
            f"{', '.join(missing) or 'a class'}); it needs cls(host, port), .address, "
            ".poll(timeout) -> int and .close(). "
            "Check any server as a command instead."
        )
    return cls


#: What a MODULE:FUNC transform is tried on before the run: every byte value, then the odd ones.
PROBE = bytes(range(256)) + bytes(range(1, 256, 2))


def transform_named(text: str, option: str = "--echo-transform") -> Transform:
    """upper, identity, or MODULE:FUNC: a byte-wise function, imported and tried on `PROBE`.

    MODULE is imported as `python -m` would (the current directory first).
    Messages begin with the value; `option` is what their examples call the option.
    """
    name = text.strip()
    if name in TRANSFORMS:
        return TRANSFORMS[name]
    module_name, sep, attribute = name.partition(":")
    if not sep or not module_name or not attribute:
        raise TargetError(
            f"{text!r} should be upper, identity or MODULE:FUNC (a function from bytes to "
            f"bytes, byte by byte), e.g. {option} identity"
        )
    added = os.getcwd() not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise TargetError(
            f"{text!r}: cannot import module {module_name!r} ({e}); run from the directory "
            "that contains it or put it on PYTHONPATH"
        ) from None
    except Exception as e:
        raise TargetError(
            f"{text!r}: importing {module_name!r} raised {type(e).__name__}: {e}"
        ) from None
    finally:
        if added:
            sys.path.remove(os.getcwd())
    function: object = module
    for part in attribute.split("."):
        function = getattr(function, part, None)
        if function is None:
            raise TargetError(f"{text!r}: module {module_name!r} has no {attribute!r}")
    if not callable(function):
        raise TargetError(f"{text!r} is not a function (a {type(function).__name__})")
    return Transform(name, _probed(text, function))


def _probed(text: str, function: Callable[[bytes], object]) -> Callable[[bytes], bytes]:
    """`function`, once it mapped every byte value to one byte, byte by byte."""

    def call(data: bytes) -> bytes:
        try:
            out = function(data)
        except Exception as e:
            raise TargetError(
                f"{text!r} raised {type(e).__name__}: {e} on {_short(data)}"
            ) from None
        if not isinstance(out, bytes | bytearray):
            raise TargetError(
                f"{text!r} returned {type(out).__name__} for {_short(data)}: a transform "
                "returns bytes"
            )
        return bytes(out)

    whole = call(PROBE)
    if len(whole) != len(PROBE):
        raise TargetError(
            f"{text!r} returned {len(whole)} bytes for {len(PROBE)}: a transform maps "
            "each byte to one byte"
        )
    for i, b in enumerate(PROBE):
        alone = call(bytes([b]))
        if alone != whole[i : i + 1]:
            raise TargetError(
                f"{text!r} is not byte-wise: byte 0x{b:02x} becomes {alone!r} alone but "
                f"{whole[i : i + 1]!r} at offset {i} of a longer input; the checker needs "
                "each byte's echo to depend on that byte only"
            )
    return function  # type: ignore[return-value]


def _short(data: bytes) -> str:
    return repr(data) if len(data) <= 8 else f"a probe of every byte value ({len(data)} bytes)"


BUNDLED = {
    "reference": "impl.select_server:SelectEchoServer",
    "seed-echo": "impl.seed_echo_server:SeedEchoServer",
    "seed-upper": "impl.seed_upper_server:SeedUpperServer",
}


#: A target's name: what pytest's -k and the test ids can hold as one word.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ENV_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_INTERPRETERS = re.compile(
    r"(python[0-9.]*|pypy[0-9.]*|node|nodejs|deno|bun|ruby|perl|php|"
    r"sh|bash|dash|zsh|java|env|exec|nice|taskset|timeout|stdbuf)"
)


def default_name(target: Target) -> str:
    """The program's or module's name: what a person would call the target."""
    return target.default_name()


def _as_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-._")
    return name or "server"


def named(targets: Iterable[Target]) -> list[Target]:
    """The targets, each with a unique name: its own, or its default made unique."""
    targets = list(targets)
    taken = {t.name for t in targets if t.name}
    seen: set[str] = set()
    result = []
    for t in targets:
        if t.name:
            if t.name in seen:
                raise TargetError(f"two targets are named {t.name!r}; give each its own name")
            seen.add(t.name)
            result.append(t)
            continue
        base = default_name(t)
        name, n = base, 1
        while name in taken or name in seen:
            n += 1
            name = f"{base}-{n}"
        seen.add(name)
        result.append(replace(t, name=name))
    return result


def positive_seconds(value: object, what: str) -> float:
    """`value` as a finite number of seconds greater than 0, or a TargetError."""
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds <= 0:
        raise TargetError(f"{what} must be a positive number of seconds, not {value!r}")
    return seconds


def load_targets_file(path: str | Path) -> list[Target]:
    """The targets a TOML file lists, in order:

    [[target]]
    name = "reference"
    impl = "impl.select_server:SelectEchoServer"

    [[target]]
    name = "node"
    cmd = "node examples/echo_server.js {port}"
    settle = 3          # optional: this target's --echo-settle
    transform = "identity"  # optional: this target's --echo-transform
    """
    where = f"--echo-targets {path}"
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as e:
        raise TargetError(f"{where}: cannot read it ({e.strerror or e})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise TargetError(f"{where} is not valid TOML: {e}") from None
    extra = set(data) - {"target", "points", "gradescope"}  # those two: spec.gradescope
    entries = data.get("target")
    if extra or not isinstance(entries, list) or not entries:
        raise TargetError(
            f"{where} should hold [[target]] tables (name, cmd or impl, "
            "optional settle and transform), optional [points] and [gradescope] tables, "
            "and nothing else"
        )
    targets = []
    for i, entry in enumerate(entries, 1):
        targets.append(_file_target(entry, f"{where}, target {i}"))
    return targets


def _file_target(entry: object, where: str) -> Target:
    if not isinstance(entry, dict):
        raise TargetError(f"{where} is not a table")
    unknown = set(entry) - {"name", "cmd", "impl", "settle", "transform"}
    if unknown:
        raise TargetError(
            f"{where}: unknown key {sorted(unknown)[0]!r} "
            "(known: name, cmd, impl, settle, transform)"
        )
    name = entry.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise TargetError(f"{where}: name {name!r} should be letters, digits, '_', '.' or '-'")
    where = f"{where} ({name})"
    if ("cmd" in entry) == ("impl" in entry):
        raise TargetError(f"{where}: give cmd or impl (exactly one)")
    value = entry.get("cmd", entry.get("impl"))
    if not isinstance(value, str):
        raise TargetError(f"{where}: cmd/impl should be a string")
    settle = entry.get("settle")
    if settle is not None:
        settle = positive_seconds(settle, f"{where}: settle")
    how = entry.get("transform")
    try:
        target = server_cmd(value) if "cmd" in entry else impl(value)
    except TargetError as e:
        raise TargetError(f"{where}: {e}") from None
    if how is not None:
        try:
            if not isinstance(how, str):
                raise TargetError(f"{how!r} should be a string: upper, identity or MODULE:FUNC")
            how = transform_named(how, option="transform =")
        except TargetError as e:
            raise TargetError(f"{where}: transform {e}") from None
    return replace(target, name=name, settle=settle, transform=how)
