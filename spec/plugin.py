"""The pytest11 entry point: the `--echo-*` options, inert until one of them is given.

Installed, this module is loaded by *every* pytest run in the environment,
whatever project it tests.  So at load it imports nothing of this package
but itself (no checker, no Hypothesis set-up, no global patch), and every
option it adds starts with ``--echo-``, a prefix no other plugin uses, so
that it can never collide with another plugin's options (as ``--html``
collided with pytest-html's and ``--strict`` with pytest's own).  Only
when a target is given (``--echo-server-cmd``, ``--echo-impl``,
``--echo-targets``, or their ini equivalents) does it import the checker
(`spec.pytest_plugin`) and take part in the run; ``--echo-list`` prints
the requirements and exits without running anything.

Each option has an ini equivalent (``echo_server_cmd``, ``echo_settle``,
...; the command line wins) and is validated when the command line is
parsed (argparse ``type=``, so a bad value is pytest's usage error before
anything runs); ini values are validated the same way at configure time.
The resolved values live in ``config.stash`` (`options`) and everything
this plugin set up is undone in ``pytest_unconfigure``.

There is deliberately no unprefixed alias (``--server-cmd``): pytest puts
every plugin's options into one argparse parser, so one other plugin with
the same generic name would stop *every* pytest run of the environment at
start, and nobody could fix that without uninstalling one of the two.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # imported when a value is given, never at load
    from spec.model import Transform

#: Mirrors of `spec.drivers.base.DEFAULT_SETTLE` and `spec.checker.DEFAULT_BUDGET`
#: (importing the checker here would load it in every pytest run;
#: tests/plugin/test_plugin_options.py keeps them equal).
DEFAULT_SETTLE = 2.0
DEFAULT_BUDGET = 60.0
CONFORMANCE_TESTS = Path(__file__).with_name("test_conformance.py")


# -- values, checked as they are parsed ---------------------------------------------------


def seconds(text: str) -> float:
    """A finite number of seconds greater than 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def command(text: str) -> tuple[str, str]:
    """A server command: not empty, with a '{port}' placeholder, parseable as words."""
    example = "e.g. --echo-server-cmd 'python myserver.py --port {port}'"
    if not text.strip():
        raise argparse.ArgumentTypeError(
            f"the command is empty: give one with '{{port}}', {example}"
        )
    if "{port}" not in text:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no '{{port}}' placeholder: write where the port goes, {example}"
        )
    try:
        shlex.split(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r} cannot be parsed as a command: {e}") from None
    return ("cmd", text)


def impl_class(text: str) -> tuple[str, str]:
    """MODULE:CLASS (imported at configure time, once sys.path is the run's)."""
    module, sep, name = text.strip().partition(":")
    if not sep or not module or not name:
        raise argparse.ArgumentTypeError(
            f"{text!r} should be MODULE:CLASS, e.g. --echo-impl impl.select_server:SelectEchoServer"
        )
    return ("impl", text.strip())


def transform(text: str) -> Transform:
    """upper, identity or MODULE:FUNC, imported and tried on every byte value now."""
    from spec.targets import TargetError, transform_named

    try:
        return transform_named(text)
    except TargetError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def path(text: str) -> str:
    """A path (whether it can be written is checked before the run, by the controller)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the path is empty")
    return text


def shard(text: str) -> tuple[int, int]:
    """K/N, 1 <= K <= N: this run checks part K of N (spec/shard.py)."""
    k, sep, n = text.partition("/")
    try:
        part, count = int(k), int(n)
    except ValueError:
        part = count = 0
    if not sep or not 1 <= part <= count:
        raise argparse.ArgumentTypeError(f"should be K/N with 1 <= K <= N, not {text!r}")
    return part, count


# -- the options --------------------------------------------------------------------------

#: option (without --echo-) -> (metavar, value type, help).  Each also has an ini
#: key: echo_ and its name with '_' for '-'.
_VALUED = {
    "targets": (
        "TOML",
        path,
        "check the targets listed in this TOML file: [[target]] tables with name, cmd or "
        "impl, and an optional settle; optional [points] and [gradescope] tables for "
        "--echo-gradescope (see examples/targets.toml)",
    ),
    "settle": (
        "SECONDS",
        seconds,
        "seconds a process server gets for anything awaited, a positive number "
        f"(default {DEFAULT_SETTLE:g}; a target's own settle in --echo-targets wins)",
    ),
    "transform": (
        "upper|identity|MODULE:FUNC",
        transform,
        "what the echo must be of each byte sent (ECHO-1): upper (the default: a-z to A-Z, "
        "every other byte unchanged), identity (a plain echo, RFC 862) or MODULE:FUNC, a "
        "function from bytes to bytes of the same length, byte by byte (a target's own "
        "transform in --echo-targets wins)",
    ),
    "budget": (
        "SECONDS",
        seconds,
        "seconds each requirement's generated programs (and their shrinking) may take in "
        f"all; the check then reports what it has (default {DEFAULT_BUDGET:g})",
    ),
    "report": (
        "PATH",
        path,
        "write the verdicts as JSON (see spec/matrix.py). Write path options as "
        "--echo-report=PATH: a separate PATH that exists would be taken by pytest as its rootdir",
    ),
    "html": (
        "PATH",
        path,
        "write one self-contained HTML page: the matrix, and per cell the diagnosis, the "
        "shrunk program as a sequence diagram, the replay command",
    ),
    "regressions": (
        "DIR",
        path,
        "write a standalone pytest file per failure into DIR (a directory; created)",
    ),
    "example-db": (
        "URL|DIR",
        path,
        "Hypothesis' example database to replay failures from and save them to: "
        "redis://HOST:PORT/N (shared between machines; needs the 'redis' extra) or a directory",
    ),
    "gradescope": (
        "PATH",
        path,
        "write Gradescope's results.json: one test per target and requirement, scored with "
        "the [points] table of --echo-targets (default 1 each), with its diagnosis and replay",
    ),
    "shard": (
        "K/N",
        shard,
        "check only the K-th of N parts of the (target, requirement) tests, split the same "
        "way on every machine; python -m spec.merge joins the parts' --echo-report files",
    ),
}
#: Ini paths taken relative to the ini file (as pytest's own are), not to where pytest runs.
_INI_FILE_RELATIVE = {
    "echo_targets",
    "echo_report",
    "echo_html",
    "echo_regressions",
    "echo_gradescope",
}
_FLAGS = {
    "strict": "SHOULD requirements count too: a failed SHOULD fails the run (not xfail)",
    "list": "print the requirements (ID, level, title, what checks each) and exit",
}


#: The targets given one by one: option (without --echo-) -> (metavar, type, help); each
#: also has a linelist ini key (echo_server_cmd, echo_impl).
_TARGET_OPTIONS = {
    "server-cmd": (
        "COMMAND",
        command,
        "check this server command, any language; '{port}' is replaced by a free port. "
        "Repeat for several targets; each is named after its program (echo_server, "
        "select_server-2); to choose names, use --echo-targets",
    ),
    "impl": (
        "MODULE:CLASS",
        impl_class,
        "check this steppable Python server class in-process (repeatable; named after its module)",
    ),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("echo-conformance", "echo server conformance (echo-conformance)")
    for name, (metavar, target, text) in _TARGET_OPTIONS.items():
        # All append to one list, so the targets keep the command line's order.
        group.addoption(
            f"--echo-{name}",
            action="append",
            dest="echo_cli_targets",
            default=[],
            type=target,
            metavar=metavar,
            help=text,
        )
        parser.addini(f"echo_{name.replace('-', '_')}", f"{text} (one a line)", type="linelist")
    for name, (metavar, kind, text) in _VALUED.items():
        group.addoption(f"--echo-{name}", metavar=metavar, type=kind, default=None, help=text)
        parser.addini(f"echo_{name.replace('-', '_')}", text, default="")
    for name, text in _FLAGS.items():
        group.addoption(f"--echo-{name}", action="store_true", default=False, help=text)
        if name != "list":
            parser.addini(f"echo_{name}", text, type="bool", default=False)


# -- the resolved options -----------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """What the run asked of this plugin: the command line, else the ini file."""

    #: ("cmd", COMMAND) or ("impl", MODULE:CLASS), in the order given.
    cli_targets: list[tuple[str, str]] = field(default_factory=list)
    targets: str | None = None
    #: None: each target's own, else DEFAULT_SETTLE.
    settle: float | None = None
    #: None: each target's own, else upper.
    transform: Transform | None = None
    budget: float = DEFAULT_BUDGET
    strict: bool = False
    report: str | None = None
    html: str | None = None
    regressions: str | None = None
    example_db: str | None = None
    gradescope: str | None = None
    #: (K, N): this run checks part K of N.
    shard: tuple[int, int] | None = None

    @property
    def active(self) -> bool:
        """Whether there is anything to check (else the plugin stays out of the run)."""
        return bool(self.cli_targets or self.targets)


OPTIONS = pytest.StashKey[Options]()


def options(config: pytest.Config) -> Options:
    """This run's options (the defaults if the plugin was never configured)."""
    return config.stash.get(OPTIONS, Options())


def _resolve(config: pytest.Config) -> Options:
    def ini(name: str, kind):  # type: ignore[no-untyped-def]
        try:
            value = kind(text) if (text := config.getini(name)) else None
        except argparse.ArgumentTypeError as e:
            raise pytest.UsageError(f"ini option {name}: {e}") from None
        if kind is path and value is not None and name in _INI_FILE_RELATIVE:
            return str(Path(config.inipath.parent if config.inipath else ".") / value)
        return value

    cli_targets = list(config.getoption("echo_cli_targets"))
    if not cli_targets:
        ini_targets = [command(c) for c in config.getini("echo_server_cmd") or []] + [
            impl_class(i) for i in config.getini("echo_impl") or []
        ]
        cli_targets = ini_targets
    values = {}
    for name, (_, kind, _) in _VALUED.items():
        key = name.replace("-", "_")
        given = config.getoption(f"echo_{key}")
        values[key] = given if given is not None else ini(f"echo_{key}", kind)
    return Options(
        cli_targets=cli_targets,
        budget=values.pop("budget") or DEFAULT_BUDGET,
        strict=bool(config.getoption("echo_strict") or config.getini("echo_strict")),
        **values,
    )


def pytest_cmdline_main(config: pytest.Config) -> int | None:
    if not config.getoption("echo_list"):
        return None
    from spec.listing import requirement_lines

    for line in requirement_lines():
        sys.stdout.write(line + "\n")
    return 0


@pytest.hookimpl(trylast=True)  # after Hypothesis' plugin has loaded --hypothesis-profile
def pytest_configure(config: pytest.Config) -> None:
    try:
        resolved = _resolve(config)
    except argparse.ArgumentTypeError as e:  # an ini target
        raise pytest.UsageError(f"ini option echo_server_cmd/echo_impl: {e}") from None
    config.stash[OPTIONS] = resolved
    if not resolved.active:
        return
    from spec import pytest_plugin

    pytest_plugin.configure(config, resolved)
    if config.args_source is not pytest.Config.ArgsSource.ARGS:
        config.args = [str(CONFORMANCE_TESTS)]


def pytest_unconfigure(config: pytest.Config) -> None:
    if options(config).active and "spec.pytest_plugin" in sys.modules:
        sys.modules["spec.pytest_plugin"].unconfigure(config)
    if OPTIONS in config.stash:
        del config.stash[OPTIONS]
