"""The defect zoo: servers that each ship ONE classic select()-server bug.

Every defect is a small subclass of the reference `SelectEchoServer`
(`impl.select_server`), steppable like it, that overrides one of its hooks
(`transform`, `send`, `on_eof`, ...) with the bug, and whose docstring tells
the bug's story and the requirement(s) it breaks.  `DEFECTS` says, for each, the one
requirement ID under which the conformance checker must reject it;
``tests/checker/test_zoo.py`` asserts that it does, and ``python bench/killrate.py``
prints the kill-rate table.

    from impl.zoo import DEFECTS
    from spec.checker import check
    from spec.targets import Target
    d = DEFECTS["uncaught-reset"]
    check(Target("impl", d.target), d.requirement).verdict   # "fail"
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass


@dataclass(frozen=True)
class Defect:
    #: Short, stable name (kebab-case).
    name: str
    #: "module:Class", as ``--impl`` takes it.
    target: str
    #: The requirement ID the suite must reject it under.
    requirement: str
    #: One line: the bug, as it happens in real servers.
    story: str
    #: Other requirements it also breaks (informative).
    also: tuple[str, ...] = ()

    def load(self) -> type:
        module, _, cls = self.target.partition(":")
        loaded: type = getattr(importlib.import_module(module), cls)
        return loaded


def _defect(name: str, target: str, requirement: str, *also: str) -> Defect:
    module, _, cls = target.partition(":")
    doc = inspect.getdoc(getattr(importlib.import_module(module), cls)) or ""
    story = " ".join(doc.split("\n\n")[0].split())
    return Defect(name, target, requirement, story, tuple(also))


_Z = "impl.zoo."

DEFECTS: dict[str, Defect] = {
    d.name: d
    for d in (
        # ECHO-1: transform
        _defect("decode-replace", _Z + "transform:DecodeReplaceServer", "ECHO-1", "ECHO-2"),
        _defect("latin1-str-upper", _Z + "transform:Latin1UpperServer", "ECHO-1", "ECHO-2"),
        _defect("surrogateescape-upper", _Z + "transform:SurrogateEscapeUpperServer", "ECHO-1"),
        # ECHO-2: stream integrity
        _defect("ignore-send-result", _Z + "stream:IgnoreSendResultServer", "ECHO-2"),
        _defect("lifo-queue", _Z + "stream:LifoQueueServer", "ECHO-2"),
        _defect("eager-send", _Z + "stream:EagerSendServer", "ECHO-2"),
        _defect("close-after-reply", _Z + "stream:CloseAfterReplyServer", "ECHO-2"),
        _defect("eagain-drops-echo", _Z + "stream:EagainDropsEchoServer", "ECHO-2"),
        # ECHO-3: isolation
        _defect("shared-buffer", _Z + "isolation:SharedBufferServer", "ECHO-3", "ECHO-2", "ECHO-4"),
        _defect("last-accepted", _Z + "isolation:LastAcceptedServer", "ECHO-3", "ECHO-2"),
        # ECHO-4: half-close
        _defect("close-at-eof", _Z + "halfclose:CloseAtEofServer", "ECHO-4"),
        _defect(
            "close-only-after-flush", _Z + "halfclose:CloseOnlyAfterFlushServer", "ECHO-4", "ECHO-6"
        ),
        _defect("requeue-tail-at-eof", _Z + "halfclose:RequeueTailAtEofServer", "ECHO-4"),
        # ECHO-5: resilience
        _defect("uncaught-reset", _Z + "resilience:UncaughtResetServer", "ECHO-5"),
        _defect("uncaught-send-error", _Z + "resilience:UncaughtSendErrorServer", "ECHO-5"),
        _defect("peername-on-close", _Z + "resilience:PeerNameOnCloseServer", "ECHO-5"),
        _defect(
            "remove-twice-after-flush", _Z + "resilience:RemoveTwiceAfterFlushServer", "ECHO-5"
        ),
        _defect("close-all-on-error", _Z + "resilience:CloseAllOnErrorServer", "ECHO-5"),
        # ECHO-6: cleanup
        _defect("keeps-queue-entry", _Z + "cleanup:KeepsQueueEntryServer", "ECHO-6"),
        _defect("shutdown-without-close", _Z + "cleanup:ShutdownWithoutCloseServer", "ECHO-6"),
        _defect("dup-leak", _Z + "cleanup:DupLeakServer", "ECHO-6"),
        # ECHO-7: liveness
        _defect("blocking-connections", _Z + "liveness:BlockingConnectionsServer", "ECHO-7"),
        _defect("send-until-done", _Z + "liveness:SendUntilDoneServer", "ECHO-7"),
        _defect("sendall-echo", _Z + "liveness:SendallEchoServer", "ECHO-7"),
        # ECHO-8..10: measured against the server as a process
        _defect("no-backpressure", _Z + "resources:NoBackpressureServer", "ECHO-8"),
        _defect("zero-timeout-select", _Z + "resources:ZeroTimeoutServer", "ECHO-9"),
        _defect("stays-in-outputs", _Z + "resources:StaysInOutputsServer", "ECHO-9"),
        _defect(
            "no-fd-setsize-guard", _Z + "resources:NoFdSetSizeGuardServer", "ECHO-10", "ECHO-5"
        ),
        _defect("listen-backlog-1", _Z + "resources:ListenBacklogOneServer", "ECHO-10"),
        _defect("log-accept-errors", _Z + "resources:LogAcceptErrorsServer", "ECHO-10", "ECHO-9"),
    )
}

__all__ = ["DEFECTS", "Defect"]
