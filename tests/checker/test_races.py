"""Races real servers die in: a client that sends and resets (or closes) at once.

A classic C epoll server (`tests/servers/epoll_echo.c`), built three ways:
without `signal(SIGPIPE, SIG_IGN)` it dies of SIGPIPE at the second write
after a client's reset; with it, and every write error closing that
connection only, it is correct; taking ECONNRESET on a write for a fatal
error, it exits.  The checker must reject the first and third under ECHO-5,
with a short program, and pass the second.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys

import pytest
from harness import SERVERS
from hypothesis import Phase, settings

from spec import checker
from spec.causes import counterfactual
from spec.checker import check
from spec.drivers.base import DEFAULT_SETTLE as SETTLE
from spec.machine import CheckLog, ConformanceFailure
from spec.replay import run_program
from spec.targets import Target

SOURCE = SERVERS / "epoll_echo.c"
VARIANTS = {
    "sigpipe": [],
    "correct": ["-DIGNORE_SIGPIPE"],
    "exit-on-econnreset": ["-DIGNORE_SIGPIPE", "-DEXIT_ON_ECONNRESET"],
    "strlen": ["-DIGNORE_SIGPIPE", "-DSTRLEN_ECHO"],
}
RACE = ["c0 = state.connect()", "state.send_and_abort(c0, Payload(b'x', 65536))"]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Target]:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler (cc or gcc) to build tests/servers/epoll_echo.c")
    out = tmp_path_factory.mktemp("epoll")
    built = {}
    for name, flags in VARIANTS.items():
        binary = out / name
        subprocess.run([cc, "-O1", *flags, "-o", str(binary), str(SOURCE)], check=True, timeout=60)
        built[name] = Target("cmd", f"{binary} {{port}}", name=name)
    return built


@pytest.mark.parametrize(
    ("variant", "death"),
    [("sigpipe", "signal SIGPIPE"), ("exit-on-econnreset", "Connection reset by peer")],
)
@pytest.mark.parametrize("rule", ["send_and_abort", "send_and_close"])
def test_the_race_kills_what_it_should(
    servers: dict[str, Target], variant: str, death: str, rule: str
) -> None:
    program = ["c0 = state.connect()", f"state.{rule}(c0, Payload(b'x', 65536))"]
    violation = run_program(servers[variant], "ECHO-5", program)
    assert violation is not None and death in violation.describe(), violation


def test_the_correct_variant_survives_the_race(servers: dict[str, Target]) -> None:
    for rule in ("send_and_abort", "send_and_close"):
        program = ["c0 = state.connect()", f"state.{rule}(c0, Payload(b'x', 65536))"]
        assert run_program(servers["correct"], "ECHO-5", program) is None


def test_the_search_finds_sigpipe_in_few_steps(servers: dict[str, Target]) -> None:
    outcome = check(
        servers["sigpipe"],
        "ECHO-5",
        hypothesis_settings=settings(max_examples=40, database=None, derandomize=True),
        budget=60,
    )
    assert outcome.verdict == "fail", outcome.detail
    assert "SIGPIPE" in outcome.detail, outcome.detail
    assert len(outcome.program) <= 3, outcome.program


def test_the_correct_variant_passes_resilience(servers: dict[str, Target]) -> None:
    outcome = check(
        servers["correct"],
        "ECHO-5",
        hypothesis_settings=settings(
            max_examples=10,
            stateful_step_count=10,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
        ),
        budget=60,
    )
    assert outcome.verdict == "pass", outcome.detail


@pytest.mark.parametrize(
    "target",
    [
        Target("impl", "impl.select_server:SelectEchoServer"),
        Target("impl", "impl.selectors_server:SelectorsEchoServer"),
        Target("impl", "impl.select_server:SelectEchoServer").as_process(),
        Target("cmd", f"{shlex.quote(sys.executable)} -m impl.asyncio_server --port {{port}}"),
    ],
    ids=["select", "selectors", "select-process", "asyncio-process"],
)
def test_correct_designs_survive_the_race(target: Target) -> None:
    for rule in ("send_and_abort", "send_and_close"):
        program = ["c0 = state.connect()", f"state.{rule}(c0, Payload(b'x', 65536))"]
        assert run_program(target, "ECHO-5", program) is None


@pytest.mark.parametrize(
    ("program", "named"),
    [
        (
            [
                "c0 = state.connect()",
                "state.send(c0, Payload(b'ab\\x00cd'), writes=1)",
            ],
            "3 echo bytes never arrived",
        ),
        (
            [
                "c0 = state.connect()",
                f"state.send(c0, Payload(b'{'x' * 40}'), writes=1)",
                "state.send(c0, Payload(b'yz'), writes=1)",
            ],
            "38 bytes more than the echo of what was sent (a copy of earlier echo: duplicated)",
        ),
    ],
    ids=["after-a-nul", "stale-bytes"],
)
def test_an_echo_of_strlen_bytes_is_a_stream_fault(
    servers: dict[str, Target], program: list[str], named: str
) -> None:
    """Issue 20: a byte inserted into the stream was reported as ECHO-1, "byte
    0xaa came back as 0x02"; ECHO-1 is only a wrong transform of the byte at
    its own offset."""
    violation = run_program(servers["strlen"], "ECHO-2", program)
    assert violation is not None and violation.requirement == "ECHO-2", violation
    assert named in violation.summary, violation


def test_the_strlen_server_never_fails_the_transform(servers: dict[str, Target]) -> None:
    outcome = check(
        servers["strlen"],
        "ECHO-1",
        hypothesis_settings=settings(max_examples=30, database=None, derandomize=True),
        budget=20,
    )
    assert outcome.verdict != "fail", outcome.detail
    # Its one static buffer is every connection's: stale bytes are its own
    # (ECHO-2) or another connection's (ECHO-3), as the reads fall.
    found = {f.requirement for f in outcome.findings if f.verdict == "fail"}
    assert found & {"ECHO-2", "ECHO-3"}, outcome.findings


NUL_AND_HALF_CLOSE = ["c0 = state.connect()", "state.send_and_half_close(c0, Payload(b'\\x00'))"]


def test_a_stream_fault_seen_after_a_half_close_is_one_failure(
    servers: dict[str, Target],
) -> None:
    """Issue 20: a NUL byte ends this server's stream (strlen() is 0: "EOF").
    After a half-close, that is "closed with 1 echo byte undelivered", which
    the model names ECHO-4; the same program without the half-close shows it
    as ECHO-2 on the same connection, so it is one fault, ECHO-2's, and not
    a second failure that comes and goes with what the search happened to
    try first (docs/determinism.md, epoll-strlen)."""
    seen = run_program(servers["strlen"], "ECHO-4", NUL_AND_HALF_CLOSE)
    assert seen is not None and seen.requirement == "ECHO-4", seen
    test = counterfactual(NUL_AND_HALF_CLOSE, seen)
    assert test == (
        ["c0 = state.connect()", "state.send(c0, Payload(b'\\x00'), writes=1)"],
        "ECHO-2",
    )
    program, requirement = test
    again = run_program(servers["strlen"], requirement, program)
    assert again is not None and again.requirement == "ECHO-2" and again.connection == "c0"
    # A correct server is owed nothing by either program.
    assert run_program(servers["correct"], "ECHO-4", NUL_AND_HALF_CLOSE) is None

    # What the checker makes of that failure, as its search would have found it.
    log = CheckLog()
    failed = checker._failed(
        servers["strlen"],
        "ECHO-4",
        SETTLE,
        ConformanceFailure(seen, NUL_AND_HALF_CLOSE, "strlen"),
        log,
    )
    outcome = checker._test_attribution(servers["strlen"], "ECHO-4", SETTLE, failed, log)
    outcome.findings = checker._findings(servers["strlen"], "ECHO-4", SETTLE, log, None)
    outcome = checker._masked_only_by_a_verdict("ECHO-4", outcome, log)
    assert outcome.verdict == "not-run" and outcome.masked_by == "ECHO-2", outcome.detail
    assert "without its half-close (c0) too" in outcome.detail, outcome.detail
    assert [(f.requirement, f.verdict) for f in outcome.findings] == [("ECHO-2", "fail")]
