"""What is being checked: a steppable class (`--impl`) or a command (`--server-cmd`).

Every mistake a user can make naming a target becomes a `TargetError` with
one line that says what to do.
"""

from __future__ import annotations

import importlib
import shlex
import sys
from dataclasses import dataclass

from spec.drivers.base import Driver
from spec.drivers.inprocess import InProcessDriver
from spec.drivers.process import ProcessDriver
from spec.drivers.server_process import ServerSupply

#: Methods a class needs to be stepped in-process.
STEPPABLE = ("poll", "close")


class TargetError(Exception):
    """A target that cannot be used, with a message for the user."""


@dataclass(frozen=True)
class Target:
    """`kind` is "impl" (in-process) or "cmd" (a process); `spec` is what the user wrote."""

    kind: str
    spec: str

    @property
    def label(self) -> str:
        return self.spec if self.kind == "cmd" else f"--impl {self.spec}"

    def driver(self, settle: float, supply: ServerSupply | None = None) -> Driver:
        """A driver for one program; a command's servers come from `supply` if given."""
        if self.kind == "impl":
            return InProcessDriver(load_impl(self.spec), target=self.spec)
        return ProcessDriver(self.spec, settle=settle, target=self.spec, supply=supply)

    def command(self) -> str:
        """A shell command that runs this target as a server on {port}."""
        if self.kind == "cmd":
            return self.spec
        return f"{shlex.quote(sys.executable)} -m spec.drivers.run_impl {self.spec} --port {{port}}"

    def as_process(self) -> Target:
        """The same server as a process (measurements need one)."""
        return Target("cmd", self.command()) if self.kind == "impl" else self


def server_cmd(command: str) -> Target:
    if "{port}" not in command:
        raise TargetError(f"--server-cmd {command!r} has no '{{port}}' placeholder: write where "
                          "the port goes, e.g. --server-cmd 'python myserver.py --port {port}'")
    try:
        argv = shlex.split(command)
    except ValueError as e:
        raise TargetError(f"--server-cmd {command!r} cannot be parsed as a command: {e}") from None
    if not argv:
        raise TargetError("--server-cmd is empty")
    return Target("cmd", command)


def impl(spec: str) -> Target:
    load_impl(spec)  # fail now, with a clear message, not in the middle of a test
    return Target("impl", spec)


def load_impl(spec: str) -> type:
    module_name, sep, class_name = spec.partition(":")
    if not sep or not module_name or not class_name:
        raise TargetError(f"--impl {spec!r} should be MODULE:CLASS, e.g. "
                          "--impl impl.select_server:SelectEchoServer")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise TargetError(f"--impl {spec!r}: cannot import module {module_name!r} ({e}); run "
                          "pytest from the directory that contains it or put it on PYTHONPATH"
                          ) from None
    cls = module
    for part in class_name.split("."):
        cls = getattr(cls, part, None)
        if cls is None:
            raise TargetError(f"--impl {spec!r}: module {module_name!r} has no {class_name!r}")
    missing = [m for m in STEPPABLE if not callable(getattr(cls, m, None))]
    if not isinstance(cls, type) or missing:
        raise TargetError(
            f"--impl {spec!r} is not a steppable server class (missing: "
            f"{', '.join(missing) or 'a class'}); it needs cls(host, port), .address, "
            ".poll(timeout) -> int and .close(). Check any server with --server-cmd instead.")
    return cls


BUNDLED = {
    "reference": "impl.select_server:SelectEchoServer",
    "seed-echo": "impl.seed_echo_server:SeedEchoServer",
    "seed-upper": "impl.seed_upper_server:SeedUpperServer",
}
