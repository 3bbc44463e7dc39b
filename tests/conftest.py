"""The self-suite's fixtures: a stepping rig, the reference server (stepped, and as a
command), and a guard that no test leaves descriptors open behind it.

The rig and the command line are built in ``tests/harness.py``, imported as
``harness`` (see its docstring; this file makes sure ``tests/`` is on ``sys.path``
whatever the import mode).

A descriptor leak is not only untidy here: an xdist worker runs many tests, and
once its descriptors pile up, later tests' sockets get numbers at or past
FD_SETSIZE (1024), which select() servers refuse or crash on; the verdicts of
unrelated tests would then change.  So a test that leaves more than a few
descriptors open (after a garbage collection, for sockets only a reference cycle
keeps) fails itself, naming them.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from impl.select_server import SelectEchoServer
from spec.drivers.server_process import ServerProcess

# pytest's default (prepend) import mode has put tests/ on sys.path already; under
# --import-mode=importlib nothing does, and `from harness import ...` would fail.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from harness import REFERENCE_CMD, Rig

#: Descriptors a test may leave open (caches, lazily opened files).
SLACK = 8


def _open_descriptors() -> dict[int, str]:
    found: dict[int, str] = {}
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:  # not Linux: no guard
        return found
    for name in names:
        try:
            found[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
    return found


@pytest.fixture(autouse=True)
def _no_descriptor_leak() -> Iterator[None]:
    before = _open_descriptors()
    yield
    if len(_open_descriptors()) <= len(before) + SLACK:
        return
    gc.collect()
    left = {fd: what for fd, what in _open_descriptors().items() if before.get(fd) != what}
    if len(left) > SLACK:
        shown = ", ".join(f"{fd}: {what}" for fd, what in sorted(left.items())[:10])
        pytest.fail(f"the test left {len(left)} descriptors open: {shown}", pytrace=False)


@pytest.fixture
def rig() -> Iterator[Rig]:
    """Stepped servers and client sockets for one test, all closed when it ends."""
    r = Rig()
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def server(rig: Rig) -> SelectEchoServer:
    """The reference server, stepped in this process (test_alternatives.py and
    test_client.py have their own `server`)."""
    reference: SelectEchoServer = rig.server(SelectEchoServer)
    return reference


@pytest.fixture
def reference_process() -> Iterator[ServerProcess]:
    """The reference server run as a command (``python -m impl.select_server``), for this
    test alone, ended when it ends."""
    with ServerProcess(REFERENCE_CMD) as sp:
        yield sp
